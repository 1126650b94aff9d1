package seedconformance

import (
	"context"
	"fmt"
	"slices"
	"testing"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
)

// TestPaging lists 250 secrets with page sizes that change from page to
// page (0 is the default, GitHub pages are at most 100) from a GitHub that
// sends no Link header: every secret once, in GitHub's order. A dry-run
// sync and DetectDrift over the same 250 read every page too.
func TestPaging(t *testing.T) {
	run(t, setup{}, func(t *testing.T, e *env) {
		ctx := context.Background()
		parent, key := "repos/octo-org/hello-world/actions", repoScope("hello-world", "actions")
		want := map[string]string{}
		for i := range 250 {
			want[fmt.Sprintf("S%03d", i)] = "v"
		}
		if _, err := e.srv.SyncSecrets(ctx, &secretbrokerv1.SyncSecretsRequest{Parent: parent, Secrets: want, Owner: "o"}); err != nil {
			t.Fatal(err)
		}
		if got := len(e.gh.names(key)); got != 250 {
			t.Fatalf("GitHub holds %d secrets, want 250", got)
		}

		var listed []string
		sizes := []int32{7, 50, 100, 30, 0, 100, 13}
		for i, tok := 0, ""; i == 0 || tok != ""; i++ {
			l, err := e.srv.ListSecrets(ctx, &secretbrokerv1.ListSecretsRequest{Parent: parent, PageSize: sizes[i%len(sizes)], PageToken: tok})
			if err != nil {
				t.Fatalf("page %d: %v", i+1, err)
			}
			if l.GetTotalCount() != 250 {
				t.Errorf("page %d: total_count %d", i+1, l.GetTotalCount())
			}
			for _, s := range l.GetSecrets() {
				listed = append(listed, s.GetName())
			}
			tok = l.GetNextPageToken()
		}
		var github []string
		for _, n := range e.gh.names(key) {
			github = append(github, parent+"/secrets/"+n)
		}
		if !slices.Equal(listed, github) {
			t.Errorf("listed %d secrets:\n%v\nwant GitHub's %d:\n%v", len(listed), listed, len(github), github)
		}

		sy, err := e.srv.SyncSecrets(ctx, &secretbrokerv1.SyncSecretsRequest{Parent: parent, Secrets: want, Owner: "o", DryRun: true})
		if err != nil {
			t.Fatal(err)
		}
		unchanged := 0
		for _, r := range sy.GetResults() {
			if r.GetAction() == secretbrokerv1.SyncAction_SYNC_ACTION_UNCHANGED {
				unchanged++
			}
		}
		if unchanged != 250 || len(sy.GetResults()) != 250 {
			t.Errorf("dry run: %d of %d unchanged, want 250 of 250", unchanged, len(sy.GetResults()))
		}
		d, err := e.srv.DetectDrift(ctx, &secretbrokerv1.DetectDriftRequest{Parent: parent})
		if err != nil || len(d.GetDrifted())+len(d.GetMissing())+len(d.GetUnmanaged()) != 0 {
			t.Errorf("DetectDrift = %v, %v", d, err)
		}
	})
}
