package main

import (
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/secretbroker/secretbroker/service/state"
	"github.com/secretbroker/secretbroker/upstream/emulator"
)

// stateBrokerConfig is a broker against emu's server at url, with its
// state under dir and the state key in keyFile.
func stateBrokerConfig(t *testing.T, url, tokenFile, dir, keyFile string) Config {
	t.Helper()
	cfg, err := loadConfig([]string{
		"--grpc-addr=127.0.0.1:0", "--http-addr=127.0.0.1:0", "--admin-addr=127.0.0.1:0", "--shutdown-timeout=5s",
		"--upstream-url=" + url, "--upstream-token-file=" + tokenFile, "--upstream-write-interval=10ms",
		"--state-dir=" + dir, "--state-hmac-key-file=" + keyFile,
	}, envMap(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestStateDirGateway drives the gateway: a second PUT of the same value
// is unchanged (no PUT reaches GitHub), also after a restart with the same
// --state-dir; a change behind the broker's back is drift, and
// secrets:detectDrift lists it and the unmanaged secret. No value reaches
// the logs or the state file.
func TestStateDirGateway(t *testing.T) {
	const (
		token  = "ghp_PLANTEDstateTOKEN0123456789abcdefghij"
		value  = "PLANTED-state-plaintext-Okapi-31"
		scope  = "repos/octo-org/hello-world/actions"
		secret = scope + "/secrets/STATEFUL"
	)
	emu := emulator.New(emulator.Options{Token: token})
	emu.SeedDemo()
	hs := httptest.NewServer(emu)
	t.Cleanup(hs.Close)
	tmp := t.TempDir()
	tokenFile := filepath.Join(tmp, "token")
	keyFile := filepath.Join(tmp, "state-key")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, []byte("0123456789abcdef0123456789abcdef-state"), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(tmp, "state")
	cfg := stateBrokerConfig(t, hs.URL, tokenFile, dir, keyFile)
	puts := func() int { return emu.Count(emulator.RoutePutRepoSecret) }

	b := startBroker(t, cfg)
	code, m := b.do(t, http.MethodPut, "/v1/"+secret, `{"value":"`+value+`"}`)
	if code != http.StatusCreated || m["unchanged"] != false || m["drift"] != false {
		t.Fatalf("first PUT = %d %v", code, m)
	}
	code, m = b.do(t, http.MethodPut, "/v1/"+secret, `{"value":"`+value+`"}`)
	if code != http.StatusOK || m["unchanged"] != true || puts() != 1 {
		t.Fatalf("second PUT = %d %v, %d PUTs at GitHub; want unchanged and 1", code, m, puts())
	}
	b.stop(t, 10*time.Second)
	for _, logs := range []string{b.logs.String()} {
		if strings.Contains(logs, value) || strings.Contains(logs, token) {
			t.Fatal("a planted value reached the logs")
		}
	}
	raw, err := os.ReadFile(filepath.Join(dir, state.BoltFileName))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), value) {
		t.Fatal("the state file holds the value")
	}

	b = startBroker(t, cfg)
	code, m = b.do(t, http.MethodPut, "/v1/"+secret, `{"value":"`+value+`"}`)
	if code != http.StatusOK || m["unchanged"] != true || puts() != 1 {
		t.Fatalf("PUT after a restart = %d %v, %d PUTs at GitHub; want unchanged and 1", code, m, puts())
	}
	if err := emu.Touch(scope, "STATEFUL", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	code, m = b.do(t, http.MethodGet, "/v1/"+scope+"/secrets:detectDrift", "")
	if code != http.StatusOK {
		t.Fatalf("detectDrift = %d %v", code, m)
	}
	drifted, _ := m["drifted"].([]any)
	unmanaged, _ := m["unmanaged"].([]any)
	if len(drifted) != 1 || field(field(drifted[0], "secret"), "name") != secret || len(unmanaged) != 0 {
		t.Errorf("detectDrift = %v, want %s drifted", m, secret)
	}
	code, m = b.do(t, http.MethodPut, "/v1/"+secret, `{"value":"`+value+`"}`)
	if code != http.StatusOK || m["drift"] != true || m["unchanged"] != false || puts() != 2 {
		t.Fatalf("PUT after a change behind the broker's back = %d %v, %d PUTs; want drift and 2", code, m, puts())
	}
	if strings.Contains(b.logs.String(), value) {
		t.Fatal("a planted value reached the logs")
	}
}

func TestOpenState(t *testing.T) {
	tmp := t.TempDir()
	short := filepath.Join(tmp, "short")
	good := filepath.Join(tmp, "good")
	if err := os.WriteFile(short, []byte("too-short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(good, []byte("0123456789abcdef0123456789abcdef"), 0o600); err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.DiscardHandler)
	tests := []struct {
		name     string
		dir, key string
		wantErr  error
		wantFile bool
	}{
		{"memory by default", "", "", nil, false},
		{"memory with a key", "", good, nil, false},
		{"file store", filepath.Join(tmp, "a"), "", nil, true},
		{"file store with a key", filepath.Join(tmp, "b"), good, nil, true},
		{"short key", filepath.Join(tmp, "c"), short, state.ErrBadKey, false},
		{"missing key file", "", filepath.Join(tmp, "none"), state.ErrBadKey, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := openState(t.Context(), Config{StateDir: tt.dir, StateHMACKeyFile: tt.key}, logger, nil)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("openState: %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				if strings.Contains(err.Error(), "0123456789abcdef") {
					t.Errorf("the error holds key bytes: %v", err)
				}
				return
			}
			defer st.Close()
			_, isBolt := st.(*state.Bolt)
			if isBolt != tt.wantFile {
				t.Errorf("file store %v, want %v", isBolt, tt.wantFile)
			}
			if _, err := st.Key(t.Context()); err != nil {
				t.Error(err)
			}
		})
	}
	cfg, err := loadConfig([]string{"--allow-unauthenticated", "--state-dir=/var/lib/sb", "--state-hmac-key-file=/etc/sb/key"}, envMap(map[string]string{"GITHUB_TOKEN": "x"}), io.Discard)
	if err != nil || cfg.StateDir != "/var/lib/sb" || cfg.StateHMACKeyFile != "/etc/sb/key" {
		t.Errorf("flags: %+v %v", cfg, err)
	}
	cfg, err = loadConfig([]string{"--allow-unauthenticated"}, envMap(map[string]string{"GITHUB_TOKEN": "x", "SECRETBROKER_STATE_DIR": "/srv/state"}), io.Discard)
	if err != nil || cfg.StateDir != "/srv/state" || cfg.StateHMACKeyFile != "" {
		t.Errorf("environment: %+v %v", cfg, err)
	}
}

// TestSyncGateway drives POST /v1/{parent}/secrets:sync on the dev broker:
// a dry run, the sync, a second sync that finds everything unchanged, a
// prune, and async (an operation, waited for through the gateway).
func TestSyncGateway(t *testing.T) {
	const value = "PLANTED-sync-plaintext-Tapir-77"
	b := startBroker(t, devConfig(t))
	const path = "/v1/repos/octo-org/hello-world/environments/prod%2Feu/secrets:sync"
	actions := func(m map[string]any) map[string]string {
		out := map[string]string{}
		results, _ := m["results"].([]any)
		for _, r := range results {
			name, _ := field(r, "name").(string)
			action, _ := field(r, "action").(string)
			c, _ := field(r, "code").(string)
			out[name[strings.LastIndex(name, "/")+1:]] = action + " " + c
		}
		return out
	}
	body := `{"secrets": {"GW_ONE": "` + value + `-1", "gw_two": "` + value + `-2"}, "owner": "gw"`
	code, m := b.do(t, http.MethodPost, path, body+`, "dry_run": true}`)
	if code != http.StatusOK || m["dry_run"] != true {
		t.Fatalf("dry run = %d %v", code, m)
	}
	want := map[string]string{"GW_ONE": "SYNC_ACTION_CREATE OK", "GW_TWO": "SYNC_ACTION_CREATE OK"}
	if got := actions(m); !mapsEqual(got, want) {
		t.Errorf("dry run plan %v, want %v", got, want)
	}
	code, m = b.do(t, http.MethodPost, path, body+`}`)
	if got := actions(m); code != http.StatusOK || !mapsEqual(got, want) {
		t.Fatalf("sync = %d %v", code, m)
	}
	code, m = b.do(t, http.MethodPost, path, body+`}`)
	want = map[string]string{"GW_ONE": "SYNC_ACTION_UNCHANGED OK", "GW_TWO": "SYNC_ACTION_UNCHANGED OK"}
	if got := actions(m); code != http.StatusOK || !mapsEqual(got, want) {
		t.Errorf("second sync = %d %v, want %v", code, m, want)
	}
	code, m = b.do(t, http.MethodPost, path, `{"secrets": {"GW_ONE": "`+value+`-1"}, "owner": "gw", "prune": true}`)
	want = map[string]string{"GW_ONE": "SYNC_ACTION_UNCHANGED OK", "GW_TWO": "SYNC_ACTION_DELETE OK"}
	if got := actions(m); code != http.StatusOK || !mapsEqual(got, want) {
		t.Errorf("prune = %d %v, want %v", code, m, want)
	}
	code, m = b.do(t, http.MethodPost, path, `{"secrets": {"GW_ONE": "`+value+`-1", "GW_THREE": "`+value+`-3"}, "owner": "gw", "async": true}`)
	op, _ := m["operation"].(map[string]any)
	name, _ := op["name"].(string)
	if rs, _ := m["results"].([]any); code != http.StatusOK || !strings.HasPrefix(name, "operations/") || len(rs) != 0 {
		t.Fatalf("async = %d %v, want an operation", code, m)
	}
	code, m = b.do(t, http.MethodPost, "/v1/"+name+":wait", `{"timeout": "20s"}`)
	want = map[string]string{"GW_ONE": "SYNC_ACTION_UNCHANGED OK", "GW_THREE": "SYNC_ACTION_CREATE OK"}
	results := map[string]any{"results": field(m["response"], "sync_results")}
	if got := actions(results); code != http.StatusOK || m["done"] != true || !mapsEqual(got, want) {
		t.Errorf("wait = %d %v, want done with %v", code, m, want)
	}
	if md := field(m, "metadata"); field(md, "written") != 1.0 || field(md, "unchanged") != 1.0 || field(md, "total") != 2.0 {
		t.Errorf("metadata %v", md)
	}
	if strings.Contains(b.logs.String(), value) {
		t.Fatal("a planted value reached the logs")
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestDevWithAStateStoreWarns: the emulator of --dev keeps its secrets in
// memory, so a state store that outlives it (--state-dir here) describes
// another GitHub after a restart (resumed operations wrote into an empty
// emulator): the broker says so at start. Without a store it does not.
func TestDevWithAStateStoreWarns(t *testing.T) {
	for _, tc := range []struct {
		name string
		dir  string
		want bool
	}{
		{"--dev --state-dir", t.TempDir(), true},
		{"--dev alone", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs syncBuffer
			st, err := openState(t.Context(), Config{Dev: true, StateDir: tc.dir}, slog.New(slog.NewTextHandler(&logs, nil)), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			if got := strings.Contains(logs.String(), "emulator keeps its secrets in memory"); got != tc.want {
				t.Errorf("warned %v, want %v:\n%s", got, tc.want, logs.String())
			}
		})
	}
}
