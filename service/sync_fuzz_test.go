package service

import (
	"context"
	"slices"
	"strings"
	"testing"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
)

// FuzzParseSync: parseSync never panics, accepts only valid names and
// non-empty values within GitHub's limit, and never quotes a value in its
// error.
func FuzzParseSync(f *testing.F) {
	f.Add(repoScope, "TOKEN", plantedSecret, "", "", "team-a")
	f.Add(orgScope, "token", plantedSecret, "private", "", "")
	f.Add(orgScope, "A", plantedSecret, "selected", "b", "")
	f.Add(stagingEnv, "GITHUB_X", plantedSecret, "", "", "")
	f.Add("repos/o/r/actions", "A/B", "", "all", "", "x\n")
	f.Add("orgs//actions", "", plantedSecret, "", "a", "")
	f.Add(orgScope, "A", plantedSecret, "Selected", "", "")
	f.Add(orgScope, "A", plantedSecret, "all", "a", "")
	f.Add(repoScope, "A", plantedSecret, "all", "", "")
	f.Add(repoScope, "A", plantedSecret, "", "B", "")
	f.Add("repos/o/r/environments/prod%2Feu", "_", plantedSecret, "", "", "")
	f.Add(repoScope, "A", plantedSecret, "", "", plantedSecret)
	f.Fuzz(func(t *testing.T, parent, name, value, visibility, name2, owner string) {
		req := &secretbrokerv1.SyncSecretsRequest{Parent: parent, Owner: owner, Visibility: visibility,
			Secrets: map[string]string{name: value}}
		if name2 != "" {
			req.Secrets[name2] = value
		}
		plan, desired, err := parseSync(context.Background(), req)
		if err != nil {
			distinct := len(value) >= 12 && !strings.Contains(parent+name+name2+owner+visibility, value)
			if distinct && strings.Contains(err.Error(), value) {
				t.Fatalf("the error quotes the value: %v", err)
			}
			return
		}
		if plan.owner == "" {
			t.Fatal("no owner")
		}
		// The plan is the request's: its parent's scope, its visibility
		// (an organization's only, one of GitHub's three), and every
		// secret it names, upper-cased, with its value.
		if scope, err := parseParent("parent", parent); err != nil || scope != plan.scope {
			t.Fatalf("parent %q planned as %+v (%v)", parent, plan.scope, err)
		}
		switch {
		case plan.scope.IsOrg() && !slices.Contains([]string{"all", "private", "selected"}, visibility),
			plan.scope.IsOrg() && plan.settings.Visibility != visibility,
			!plan.scope.IsOrg() && (visibility != "" || plan.settings.Visibility != ""):
			t.Fatalf("visibility %q for %q planned as %q", visibility, parent, plan.settings.Visibility)
		}
		if len(desired) != len(req.Secrets) {
			t.Fatalf("%d secrets planned for %d sent", len(desired), len(req.Secrets))
		}
		for n, v := range req.Secrets {
			if got, ok := desired[strings.ToUpper(n)]; !ok || string(got) != v {
				t.Fatalf("secret %q planned as %q (%v)", n, got, ok)
			}
		}
		for n, v := range desired {
			if got, err := checkSecretName("n", n); err != nil || got != n {
				t.Fatalf("accepted name %q (%v)", n, err)
			}
			if len(v) == 0 || len(v) > maxValueBytes {
				t.Fatalf("accepted a %d-byte value", len(v))
			}
		}
	})
}
