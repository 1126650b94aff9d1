package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/secretbroker/secretbroker/service/state"
	"github.com/secretbroker/secretbroker/upstream/emulator"
	"github.com/secretbroker/secretbroker/upstream/pace/redistest"
)

// TestOpenStateWithRedis: with a Redis and no --state-dir the state is
// in Redis; with both, the file store wins and a warning says replicas do
// not share it.
func TestOpenStateWithRedis(t *testing.T) {
	// NewRedis does not contact Redis: nothing needs to listen here.
	rc := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	t.Cleanup(func() { _ = rc.Close() })
	tests := []struct {
		name      string
		dir       string
		rc        redis.UniversalClient
		wantRedis bool
		wantWarn  bool
	}{
		{"redis", "", rc, true, false},
		{"redis and --state-dir", filepath.Join(t.TempDir(), "s"), rc, false, true},
		{"--state-dir only", filepath.Join(t.TempDir(), "s"), nil, false, false},
		{"memory", "", nil, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			logger := slog.New(slog.NewTextHandler(&logs, nil))
			st, err := openState(t.Context(), Config{StateDir: tt.dir}, logger, tt.rc)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			if _, isRedis := st.(*state.Redis); isRedis != tt.wantRedis {
				t.Errorf("Redis store %v, want %v", isRedis, tt.wantRedis)
			}
			if _, isBolt := st.(*state.Bolt); isBolt != (tt.dir != "") {
				t.Errorf("file store %v, want %v", isBolt, tt.dir != "")
			}
			warned := strings.Contains(logs.String(), "level=WARN") && strings.Contains(logs.String(), "replicas do not share")
			if warned != tt.wantWarn {
				t.Errorf("warning %v, want %v; logs:\n%s", warned, tt.wantWarn, logs.String())
			}
		})
	}
}

// TestRedisStateSharedByReplicas: two brokers on one Redis and one GitHub
// (the emulator): the second answers the first's unchanged value with
// unchanged: true and no PUT, because the record is in Redis; the value
// never reaches Redis or the logs.
func TestRedisStateSharedByReplicas(t *testing.T) {
	const (
		token  = "ghp_PLANTEDredisTOKEN0123456789abcdefghij"
		value  = "PLANTED-redis-state-plaintext-Numbat-57"
		scope  = "repos/octo-org/hello-world/actions"
		secret = scope + "/secrets/SHARED_STATE"
	)
	srv := redistest.Start(t)
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
		"--upstream-url=" + hs.URL, "--upstream-token-file=" + tokenFile, "--upstream-write-interval=10ms",
		"--redis-url=redis://" + srv.Addr,
	}, envMap(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	puts := func() int { return emu.Count(emulator.RoutePutRepoSecret) }

	first := startBroker(t, cfg)
	code, m := first.do(t, http.MethodPut, "/v1/"+secret, `{"value":"`+value+`"}`)
	if code != http.StatusCreated || m["unchanged"] != false || puts() != 1 {
		t.Fatalf("first broker's PUT = %d %v, %d PUTs at GitHub", code, m, puts())
	}
	second := startBroker(t, cfg)
	code, m = second.do(t, http.MethodPut, "/v1/"+secret, `{"value":"`+value+`"}`)
	if code != http.StatusOK || m["unchanged"] != true || puts() != 1 {
		t.Fatalf("second broker's PUT of the same value = %d %v, %d PUTs at GitHub; want unchanged and still 1", code, m, puts())
	}
	code, m = second.do(t, http.MethodPut, "/v1/"+secret, `{"value":"`+value+`-changed"}`)
	if code != http.StatusOK || m["unchanged"] != false || puts() != 2 {
		t.Fatalf("second broker's PUT of a new value = %d %v, %d PUTs", code, m, puts())
	}
	code, m = first.do(t, http.MethodPut, "/v1/"+secret, `{"value":"`+value+`-changed"}`)
	if code != http.StatusOK || m["unchanged"] != true || puts() != 2 {
		t.Fatalf("first broker's PUT of the second's value = %d %v, %d PUTs; want unchanged", code, m, puts())
	}

	rc := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { _ = rc.Close() })
	ctx := context.Background()
	keys, err := rc.Keys(ctx, state.DefaultRedisPrefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	var dump strings.Builder
	for _, k := range keys {
		dump.WriteString(k + "\n")
		switch typ, _ := rc.Type(ctx, k).Result(); typ {
		case "hash":
			for f, v := range rc.HGetAll(ctx, k).Val() {
				dump.WriteString(f + "=" + v + "\n")
			}
		case "string":
			dump.WriteString(rc.Get(ctx, k).Val() + "\n")
		}
	}
	if !strings.Contains(dump.String(), "SHARED_STATE") {
		t.Fatalf("no record of the secret in Redis; keys %q", keys)
	}
	if strings.Contains(dump.String(), value) || strings.Contains(dump.String(), token) {
		t.Fatal("Redis holds the value or the token")
	}
	for _, b := range []*broker{first, second} {
		logs := b.logs.String()
		if strings.Contains(logs, value) || strings.Contains(logs, token) {
			t.Fatal("a planted value reached the logs")
		}
		if !strings.Contains(logs, "state store in Redis") {
			t.Errorf("no log line says the state is in Redis; logs:\n%s", logs)
		}
	}
}
