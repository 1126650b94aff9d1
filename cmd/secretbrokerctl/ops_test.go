package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestOps lists the operation a sync ran, shows it with its items'
// results, and cancels it (done already: it stays done); an unknown name
// is NOT_FOUND, exit 1.
func TestOps(t *testing.T) {
	b := startBroker(t, brokerOpts{auth: true})
	env := b.env()
	wantCode(t, ctl(t, env, "", "sync", "--from-env-file", writeFile(t, "a.env", []byte("OPS_ONE="+plantedValue+"\nOPS_TWO=two-value\n")), repoScope), exitOK)

	r := ctl(t, env, "", "ops", "-o", "json")
	wantCode(t, r, exitOK)
	var list struct {
		Operations []struct {
			Name string `json:"name"`
			Done bool   `json:"done"`
		} `json:"operations"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil {
		t.Fatalf("ops -o json: %v\n%s", err, r.stdout)
	}
	if len(list.Operations) != 1 || !strings.HasPrefix(list.Operations[0].Name, "operations/") || !list.Operations[0].Done {
		t.Fatalf("ops -o json: %s", r.stdout)
	}
	name := list.Operations[0].Name

	r = ctl(t, env, "", "ops")
	wantCode(t, r, exitOK)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "OPERATION") {
		t.Fatalf("ops:\n%s", r.stdout)
	}
	if f := strings.Fields(lines[1]); len(f) < 9 || f[0] != name || f[1] != "SyncSecrets" || f[2] != "done" || f[3] != "2/2" ||
		strings.Join(f[4:9], " ") != "2 0 0 0 0" {
		t.Errorf("ops row %q", lines[1])
	}
	r = ctl(t, env, "", "ops", "--not-done")
	wantCode(t, r, exitOK)
	if strings.Contains(r.stdout, name) {
		t.Errorf("ops --not-done lists a done operation:\n%s", r.stdout)
	}

	r = ctl(t, env, "", "op", name)
	wantCode(t, r, exitOK)
	wantContains(t, "op", r.stdout, "NAME", name, "KIND", "SyncSecrets", "STATE", "done", "2/2 (2 written, 0 deleted, 0 unchanged, 0 failed; 0 foreign left alone)",
		"SECRET", repoScope+"/secrets/OPS_ONE", repoScope+"/secrets/OPS_TWO", "create")

	r = ctl(t, env, "", "cancel", name)
	wantCode(t, r, exitOK)
	wantContains(t, "cancel", r.stdout, "STATE", "done")

	r = ctl(t, env, "", "op", "operations/nope")
	wantCode(t, r, exitFail)
	wantContains(t, "stderr", r.stderr, "NOT_FOUND")
}
