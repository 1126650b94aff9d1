package main

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/secretbroker/secretbroker/upstream/emulator"
)

// A broker that starts while its Redis is unreachable, even one replica
// (--expected-replicas 1), has no picture of what the replicas used: it
// takes the budget as spent by them, in flight, until InFlightLease and
// the window have passed (3 minutes; redisstate's down, README "Redis
// unreachable"), so its credential check is not sent and it is not ready.
// /readyz says why: the budget the check's error names, and that Redis is
// unreachable.
func TestReadyzStartWithRedisUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close() // nothing listens there: unreachable

	emu := emulator.New(emulator.Options{Token: testToken})
	hs := httptest.NewServer(emu)
	t.Cleanup(hs.Close)
	cfg, err := loadConfig([]string{
		"--grpc-addr=127.0.0.1:0", "--http-addr=127.0.0.1:0", "--admin-addr=127.0.0.1:0",
		"--upstream-url=" + hs.URL, "--shutdown-timeout=5s", "--allow-unauthenticated",
		"--redis-url=redis://" + closed, "--expected-replicas=1",
	}, envMap(map[string]string{"GITHUB_TOKEN": testToken}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	b := startBroker(t, cfg)
	if !b.logs.waitFor("GitHub credential not verified", 1, 30*time.Second) {
		t.Fatalf("no credential check failure logged:\n%s", b.logs)
	}
	code, body := b.adminGet(t, "/readyz")
	for _, want := range []string{
		"the GitHub credential is not verified yet: ",
		"points a minute, shared by the replicas, is spent; the budget allows it in ",
		"; pacing state for token: Redis unreachable since ",
	} {
		if code != http.StatusServiceUnavailable || !strings.Contains(body, want) {
			t.Errorf("GET /readyz = %d %q, want 503 with %q", code, body, want)
		}
	}
	if n := emu.Count(emulator.RouteGetRateLimit); n != 0 {
		t.Errorf("GitHub saw %d credential checks, want none before the local budget allows one", n)
	}
	b.stop(t, 10*time.Second)
}
