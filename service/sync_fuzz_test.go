package service

import (
	"context"
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
