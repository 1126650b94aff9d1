package seedconformance

import (
	"context"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/code"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
)

// The seeds say organization, owner and repository names are "not case
// sensitive" but say nothing of the kind of environment_name ("The name of
// the environment. The name must be URL encoded."): the fake keeps "Prod"
// and "prod" apart, as a GitHub built from the seeds may. The emulator
// folds them on purpose, as GitHub's docs (not its REST reference) say
// GitHub does; the broker must be right against both.

// TestEnvironmentSpellingUnchanged is a regression test: a put was judged
// unchanged by the record of a write under another spelling of its
// environment (one record serves every spelling), so the broker answered
// unchanged while environment "Prod" held another value, and sent nothing.
// A put is now judged unchanged only under the spelling its record was
// written with.
func TestEnvironmentSpellingUnchanged(t *testing.T) {
	run(t, setup{differs: "the emulator's Prod is its prod: the second put updates (204), not creates (201)"}, func(t *testing.T, e *env) {
		const upper, lower = "repos/octo-org/hello-world/environments/Prod/secrets/TOKEN", "repos/octo-org/hello-world/environments/prod/secrets/TOKEN"
		e.put(t, upper, "value-one", "")
		e.put(t, lower, "value-two", "")
		for i, c := range []struct {
			name, env string
			unchanged bool
		}{
			{upper, "Prod", false}, // the record is prod's
			{upper, "Prod", true},
			{lower, "prod", false}, // the record is Prod's
		} {
			n := e.gh.mark()
			r := e.put(t, c.name, "value-two", "")
			if r.GetUnchanged() != c.unchanged {
				t.Errorf("put #%d of value-two to %s: unchanged = %v, want %v", i+1, c.env, r.GetUnchanged(), c.unchanged)
			}
			wantWrites := 1
			if c.unchanged {
				wantWrites = 0
			}
			if w := writes(e.gh.requests(n)); len(w) != wantWrites {
				t.Errorf("put #%d to %s wrote %v", i+1, c.env, w)
			}
			e.holds(t, envScope("hello-world", c.env), "TOKEN", "value-two", "")
		}
	})
}

// TestEnvironmentSpellingOwner records what the broker does, as its README
// documents ("A secret has one record whatever the case of its
// organization, owner, repository and environment names"), where
// environments differ by case only: another owner's sync of "stage" is
// refused as a conflict with the owner of "Stage" (FAILED_PRECONDITION;
// force takes it over), and writes nothing, although this GitHub holds no
// such secret in "stage". The refusal is safe; it is kept visible here
// because the seeds do not say environment names ignore case.
func TestEnvironmentSpellingOwner(t *testing.T) {
	run(t, setup{}, func(t *testing.T, e *env) {
		ctx := context.Background()
		const repo = "repos/octo-org/hello-world/environments/"
		if _, err := e.srv.SyncSecrets(ctx, &secretbrokerv1.SyncSecretsRequest{Parent: repo + "Stage", Owner: "team-a", Secrets: map[string]string{"K": "a"}}); err != nil {
			t.Fatal(err)
		}
		n := e.gh.mark()
		sy, err := e.srv.SyncSecrets(ctx, &secretbrokerv1.SyncSecretsRequest{Parent: repo + "stage", Owner: "team-b", Secrets: map[string]string{"K": "b"}})
		if err != nil {
			t.Fatal(err)
		}
		if rs := sy.GetResults(); len(rs) != 1 || rs[0].GetAction() != secretbrokerv1.SyncAction_SYNC_ACTION_CONFLICT ||
			rs[0].GetCode() != code.Code_FAILED_PRECONDITION || rs[0].GetRecordedOwner() != "team-a" {
			t.Errorf("team-b's sync of stage: %v, want a conflict with team-a", rs)
		}
		if w := writes(e.gh.requests(n)); len(w) != 0 {
			t.Errorf("the refused sync wrote %v", w)
		}
		// The emulator folds the case of environment names on purpose, as
		// GitHub's docs (not the seeds) say GitHub does: its "stage" is
		// "Stage", which holds team-a's K.
		if _, ok := e.gh.secret(envScope("hello-world", "stage"), "K"); ok && !e.emulator() {
			t.Error("GitHub holds K in stage")
		}
		e.holds(t, envScope("hello-world", "Stage"), "K", "a", "")
	})
}
