package upstream

import (
	"net/url"
	"strings"
	"testing"
)

// ownerOf reads the owner (and repository) a request path is about, for
// the credential that serves it.
func TestOwnerOf(t *testing.T) {
	c := &Client{}
	c.repoOwners.Store(int64(1296269), [2]string{"octo-org", "hello-world"})
	for _, tc := range []struct{ path, owner, repo string }{
		{"/orgs/octo-org/actions/secrets", "octo-org", ""},
		{"/orgs/octo%2Dorg/actions/secrets/public-key", "octo-org", ""},
		{"/repos/octocat/hello-world/actions/secrets/X", "octocat", "hello-world"},
		{"/repos/octocat/hello-world", "octocat", "hello-world"},
		{"/repos/octocat/prod%2Feu/environments", "octocat", "prod/eu"},
		{"/repositories/1296269/environments/prod/secrets", "octo-org", "hello-world"},
		{"/repositories/42/environments/prod/secrets", "", ""},
		{"/repositories/x/environments", "", ""},
		{"/rate_limit", "", ""},
		{"/app", "", ""},
		{"/orgs", "", ""},
		{"/repos/only-owner", "", ""},
		{"/orgs/bad%zz/actions", "", ""},
	} {
		owner, repo := c.ownerOf(tc.path)
		if owner != tc.owner || repo != tc.repo {
			t.Errorf("ownerOf(%q) = %q, %q; want %q, %q", tc.path, owner, repo, tc.owner, tc.repo)
		}
	}
}

// FuzzOwnerOf: any path gives an answer without panicking, and an
// organization path gives back the organization it was built from.
func FuzzOwnerOf(f *testing.F) {
	for _, s := range []string{"octo-org", "a/b", "%", "", "..", "repos", "ünï"} {
		f.Add(s)
	}
	c := &Client{}
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = c.ownerOf(s)
		_, _ = c.ownerOf("/repos/" + s)
		_, _ = c.ownerOf("/repositories/" + s)
		if s == "" || strings.Contains(s, "/") {
			return
		}
		owner, repo := c.ownerOf("/orgs/" + url.PathEscape(s) + "/actions/secrets")
		if owner != s || repo != "" {
			t.Errorf("ownerOf(/orgs/%s/...) = %q, %q", url.PathEscape(s), owner, repo)
		}
	})
}
