package seedconformance

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
)

// scopeCase is one scope: the broker's parent and the fake's scope key.
type scopeCase struct {
	name        string
	parent, key string
	visibility  string // what an organization secret is created with; "" elsewhere
}

func scopeCases() []scopeCase {
	return []scopeCase{
		{name: "repo actions", parent: "repos/octo-org/hello-world/actions", key: repoScope("hello-world", "actions")},
		{name: "repo agents", parent: "repos/octo-org/hello-world/agents", key: repoScope("hello-world", "agents")},
		{name: "environment", parent: "repos/octo-org/hello-world/environments/prod%2Feu", key: envScope("hello-world", "prod/eu")},
		{name: "org actions", parent: "orgs/octo-org/actions", key: orgScope("actions"), visibility: "private"},
		{name: "org agents", parent: "orgs/octo-org/agents", key: orgScope("agents"), visibility: "private"},
	}
}

// holds fails t unless the fake holds the secret with value (and, for an
// organization secret, visibility).
func (e *env) holds(t *testing.T, key, name, value, visibility string) {
	t.Helper()
	s, ok := e.gh.secret(key, name)
	switch {
	case !ok:
		t.Fatalf("GitHub has no %s in %s", name, key)
	case s.value != value || s.visibility != visibility:
		t.Fatalf("GitHub holds %s = %q (visibility %q), want %q (visibility %q)", name, s.value, s.visibility, value, visibility)
	}
}

// TestScopeLifecycle runs every scope through create, an unchanged put,
// an update without visibility (an organization secret keeps its own),
// get, list, drift (none, then a change made at GitHub), a batch, a sync
// with prune and a delete, against a GitHub that answers with and without
// a Date header.
func TestScopeLifecycle(t *testing.T) {
	for _, sc := range scopeCases() {
		for _, noDate := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/noDate=%v", sc.name, noDate), func(t *testing.T) {
				run(t, setup{noDate: noDate}, func(t *testing.T, e *env) { lifecycle(t, e, sc) })
			})
		}
	}
}

// lifecycle runs sc's steps on e, inside the bubble e was built in
// (newEnv): its sleeps are fake time.
func lifecycle(t *testing.T, e *env, sc scopeCase) {
	inBubble(t) // its sleep is the bubble's fake time
	ctx := context.Background()
	name := sc.parent + "/secrets/A_ONE"

	if r := e.put(t, name, "v1", sc.visibility); !r.GetCreated() || r.GetUnchanged() {
		t.Fatalf("create: %v", r)
	}
	e.holds(t, sc.key, "A_ONE", "v1", sc.visibility)

	n := e.gh.mark()
	if r := e.put(t, name, "v1", sc.visibility); !r.GetUnchanged() {
		t.Errorf("the same put again: %v, want unchanged", r)
	}
	if w := writes(e.gh.requests(n)); len(w) != 0 {
		t.Errorf("an unchanged put wrote: %v", w)
	}

	if r := e.put(t, name, "v2", ""); r.GetCreated() || r.GetUnchanged() {
		t.Errorf("update: %v, want an update", r)
	}
	e.holds(t, sc.key, "A_ONE", "v2", sc.visibility)

	got, err := e.srv.GetSecret(ctx, &secretbrokerv1.GetSecretRequest{Name: name})
	if err != nil || got.GetName() != name || got.GetVisibility() != sc.visibility {
		t.Errorf("GetSecret = %v, %v", got, err)
	}
	l, err := e.srv.ListSecrets(ctx, &secretbrokerv1.ListSecretsRequest{Parent: sc.parent})
	if err != nil || l.GetTotalCount() != 1 || len(l.GetSecrets()) != 1 || l.GetSecrets()[0].GetName() != name {
		t.Errorf("ListSecrets = %v, %v", l, err)
	}

	drift := func() *secretbrokerv1.DetectDriftResponse {
		t.Helper()
		d, err := e.srv.DetectDrift(ctx, &secretbrokerv1.DetectDriftRequest{Parent: sc.parent})
		if err != nil {
			t.Fatalf("DetectDrift: %v", err)
		}
		return d
	}
	if d := drift(); len(d.GetDrifted())+len(d.GetUnmanaged())+len(d.GetMissing()) != 0 {
		t.Errorf("DetectDrift after the broker's writes: %v", d)
	}
	time.Sleep(2 * time.Second) // GitHub's updated_at has a resolution of a second
	e.gh.changeBehindBack(sc.key, "A_ONE", "changed at GitHub")
	if d := drift(); len(d.GetDrifted()) != 1 || d.GetDrifted()[0].GetSecret().GetName() != name {
		t.Errorf("DetectDrift after a change at GitHub: %v", d)
	}
	if r := e.put(t, name, "v2", ""); !r.GetDrift() || r.GetUnchanged() {
		t.Errorf("put after a change at GitHub: %v, want drift", r)
	}
	e.holds(t, sc.key, "A_ONE", "v2", sc.visibility)

	batch := &secretbrokerv1.BatchPutSecretsRequest{Requests: []*secretbrokerv1.PutSecretRequest{putReq(sc.parent+"/secrets/C_THREE", "c", sc.visibility)}}
	for i, want := range []string{"created", "unchanged"} {
		b, err := e.srv.BatchPutSecrets(ctx, batch)
		if err != nil || len(b.GetResults()) != 1 {
			t.Fatalf("BatchPutSecrets #%d: %v, %v", i+1, b, err)
		}
		if r := b.GetResults()[0]; r.GetCreated() != (want == "created") || r.GetUnchanged() != (want == "unchanged") {
			t.Errorf("BatchPutSecrets #%d: %v, want %s", i+1, r, want)
		}
	}
	e.holds(t, sc.key, "C_THREE", "c", sc.visibility)

	// The puts had no caller identity: their owner is "anonymous".
	sy, err := e.srv.SyncSecrets(ctx, &secretbrokerv1.SyncSecretsRequest{Parent: sc.parent, Secrets: map[string]string{"B_TWO": "x"},
		Prune: true, Owner: "anonymous", Visibility: sc.visibility})
	if err != nil {
		t.Fatalf("SyncSecrets: %v", err)
	}
	var actions []string
	for _, r := range sy.GetResults() {
		actions = append(actions, r.GetName()+" "+r.GetAction().String()+" "+r.GetCode().String())
	}
	if want := []string{
		sc.parent + "/secrets/A_ONE SYNC_ACTION_DELETE OK",
		sc.parent + "/secrets/B_TWO SYNC_ACTION_CREATE OK",
		sc.parent + "/secrets/C_THREE SYNC_ACTION_DELETE OK",
	}; !slices.Equal(actions, want) {
		t.Errorf("SyncSecrets results:\n%q\nwant\n%q", actions, want)
	}
	if got := e.gh.names(sc.key); !slices.Equal(got, []string{"B_TWO"}) {
		t.Errorf("GitHub holds %v after the sync, want [B_TWO]", got)
	}
	e.holds(t, sc.key, "B_TWO", "x", sc.visibility)

	if _, err := e.srv.DeleteSecret(ctx, &secretbrokerv1.DeleteSecretRequest{Name: sc.parent + "/secrets/B_TWO"}); err != nil {
		t.Fatalf("DeleteSecret: %v", err)
	}
	if got := e.gh.names(sc.key); len(got) != 0 {
		t.Errorf("GitHub holds %v after the delete", got)
	}
}
