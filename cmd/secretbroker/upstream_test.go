package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/secretbroker/secretbroker/upstream/emulator"
)

// TestRunAgainstGitHub runs the broker as in production, pointed by
// --upstream-url at a GitHub (the emulator, on loopback) that demands the
// token from --upstream-token-file, and follows one JSON call all the way.
func TestRunAgainstGitHub(t *testing.T) {
	const (
		token   = "ghp_PLANTEDcmdTOKEN0123456789abcdefghijk"
		value   = "PLANTED-cmd-plaintext-Quokka-99"
		traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	)
	emu := emulator.New(emulator.Options{Token: token})
	emu.SeedDemo()
	hs := httptest.NewServer(emu)
	t.Cleanup(hs.Close)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig([]string{
		"--grpc-addr=127.0.0.1:0", "--http-addr=127.0.0.1:0", "--admin-addr=127.0.0.1:0", "--shutdown-timeout=5s",
		"--upstream-url=" + hs.URL, "--upstream-token-file=" + tokenFile, "--log-level=debug",
	}, envMap(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	b := startBroker(t, cfg)

	req, err := http.NewRequest(http.MethodPut, "http://"+b.httpAddr+"/v1/repos/octo-org/hello-world/environments/prod%2Feu/secrets/TRACED",
		strings.NewReader(`{"value":"`+value+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	resp, err := b.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT = %d, want 201", resp.StatusCode)
	}
	if got, err := emu.Open("repos/octo-org/hello-world/environments/prod%2Feu", "TRACED"); err != nil || string(got) != value {
		t.Fatalf("GitHub holds a value that does not open to the one sent (%v)", err)
	}

	// One trace runs from the caller through gateway, gRPC and service to
	// GitHub, on the key fetch (made once for every waiter) and on the PUT.
	for _, route := range []string{emulator.RouteGetEnvPublicKey, emulator.RoutePutEnvSecret} {
		tp := emu.LastRequestHeader(route).Get("Traceparent")
		if !strings.Contains(tp, traceID) {
			t.Errorf("%s reached GitHub with traceparent %q, want trace %s", route, tp, traceID)
		}
	}
	b.stop(t, 10*time.Second)
	logs := b.logs.String()
	if !strings.Contains(logs, traceID) {
		t.Errorf("the caller's trace id is not in the broker's logs")
	}
	for _, planted := range []string{token, value} {
		if strings.Contains(logs, planted) {
			t.Errorf("planted value %q reached the broker's logs", planted[:12])
		}
	}
}
