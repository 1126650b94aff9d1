package main

import (
	"fmt"
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

// TestOperationsGateway drives operations through the gateway and across a
// restart on the same --state-dir: an async batch is accepted, shows its
// progress (GET and :wait), is listed by GET /v1/operations; the broker
// stops mid-operation; a new broker on the same state directory resumes
// it, and every secret is written exactly once at the emulator. A missing
// operation is 404; no value reaches the logs.
func TestOperationsGateway(t *testing.T) {
	const (
		token = "ghp_PLANTEDopsTOKEN0123456789abcdefghijklm"
		value = "PLANTED-ops-plaintext-Ibex-52"
		scope = "repos/octo-org/hello-world/actions"
		items = 10
	)
	emu := emulator.New(emulator.Options{Token: token})
	emu.SeedDemo()
	hs := httptest.NewServer(emu)
	t.Cleanup(hs.Close)
	tmp := t.TempDir()
	tokenFile := filepath.Join(tmp, "token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Writes 300 ms apart: the batch takes about 3 s, long enough to stop
	// the broker in the middle of it (progress is recorded at least every
	// second).
	cfg, err := loadConfig([]string{
		"--grpc-addr=127.0.0.1:0", "--http-addr=127.0.0.1:0", "--admin-addr=127.0.0.1:0", "--shutdown-timeout=5s",
		"--upstream-url=" + hs.URL, "--upstream-token-file=" + tokenFile, "--upstream-write-interval=300ms",
		"--state-dir=" + filepath.Join(tmp, "state"),
	}, envMap(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	puts := func() int { return emu.Count(emulator.RoutePutRepoSecret) }
	var reqs []string
	for i := range items {
		reqs = append(reqs, fmt.Sprintf(`{"name": "%s/secrets/OPS_%02d", "value": "%s-%d"}`, scope, i, value, i))
	}

	b := startBroker(t, cfg)
	code, m := b.do(t, http.MethodPost, "/v1/secrets:batchPut", `{"async": true, "requests": [`+strings.Join(reqs, ",")+`]}`)
	name, _ := field(m["operation"], "name").(string)
	if code != http.StatusOK || !strings.HasPrefix(name, "operations/") {
		t.Fatalf("async batch = %d %v", code, m)
	}
	code, m = b.do(t, http.MethodPost, "/v1/"+name+":wait", `{"timeout": "1.5s"}`)
	written, _ := field(field(m, "metadata"), "written").(float64)
	if code != http.StatusOK || m["done"] != false || written < 1 {
		t.Fatalf("wait 1.5 s = %d %v; want some items written, not done", code, m)
	}
	code, m = b.do(t, http.MethodGet, "/v1/"+name, "")
	if code != http.StatusOK || field(field(m, "metadata"), "total") != float64(items) || field(field(m, "metadata"), "kind") != "BatchPutSecrets" {
		t.Errorf("GET %s = %d %v", name, code, m)
	}
	code, m = b.do(t, http.MethodGet, "/v1/operations", "")
	if ops, _ := m["operations"].([]any); code != http.StatusOK || len(ops) != 1 || field(ops[0], "name") != name {
		t.Errorf("GET /v1/operations = %d %v", code, m)
	}
	if code, m = b.do(t, http.MethodGet, "/v1/operations/0123abcd", ""); code != http.StatusNotFound {
		t.Errorf("GET a missing operation = %d %v, want 404", code, m)
	}
	b.stop(t, 10*time.Second)
	stopped := puts()
	if stopped >= items {
		t.Fatalf("%d PUTs by the first broker: the operation finished before the stop", stopped)
	}
	logs := b.logs.String()

	b = startBroker(t, cfg)
	code, m = b.do(t, http.MethodPost, "/v1/"+name+":wait", `{"timeout": "20s"}`)
	if code != http.StatusOK || m["done"] != true || m["error"] != nil || field(field(m, "metadata"), "written") != float64(items) {
		t.Fatalf("wait after the restart = %d %v; want done, %d written", code, m, items)
	}
	results, _ := field(m["response"], "batch_put_results").([]any)
	if len(results) != items {
		t.Errorf("%d results, want %d", len(results), items)
	}
	if puts() != items {
		t.Errorf("%d PUTs in all (%d before the restart), want %d: each secret once", puts(), stopped, items)
	}
	for i := range items {
		got, err := emu.Open(scope, fmt.Sprintf("OPS_%02d", i))
		if err != nil || string(got) != fmt.Sprintf("%s-%d", value, i) {
			t.Errorf("OPS_%02d at the emulator: %v", i, err)
		}
	}
	if code, m = b.do(t, http.MethodPost, "/v1/"+name+":cancel", `{}`); code != http.StatusOK || m["done"] != true || m["error"] != nil {
		t.Errorf("cancel of a done operation = %d %v; want it unchanged", code, m)
	}
	if !strings.Contains(b.logs.String(), `"msg":"operations resumed"`) {
		t.Error("the second broker did not log the resumed operation")
	}
	b.stop(t, 10*time.Second)
	for _, l := range []string{logs, b.logs.String()} {
		if strings.Contains(l, value) || strings.Contains(l, token) {
			t.Fatal("a planted value reached the logs")
		}
	}
}
