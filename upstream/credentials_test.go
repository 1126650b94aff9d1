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

// FuzzOwnerOf: any path gives an answer without panicking; every path
// the client builds for a scope (scopePath, secretPath, the repository
// lookup) names the scope's owner and repository, whatever bytes the names
// hold, so the credential that serves it is the owner's; an /orgs/ path
// never names a repository; and a path of no known shape names no owner.
func FuzzOwnerOf(f *testing.F) {
	for _, s := range []struct {
		a, b, env, name string
		org             bool
	}{
		{"octo-org", "", "", "TOKEN", true},
		{"octocat", "hello-world", "", "X", false},
		{"octocat", "hello-world", "prod/eu", "X", false},
		{"a/b", "c%2Fd", "..", "..", false},
		{"%", "%zz", "%2F", "/", true},
		{"..", ".", "?x=1", "#f", false},
		{"repos", "orgs", "environments", "secrets", false},
		{"ünï", "\xff\x00", " ", "+", false},
		{"", "r", "", "", false},
	} {
		f.Add(s.a, s.b, s.env, s.name, s.org)
	}
	c := &Client{}
	c.repoOwners.Store(int64(42), [2]string{"Octo-Org", "hello.world"})
	f.Fuzz(func(t *testing.T, a, b, env, name string, org bool) {
		for _, p := range []string{a, b, env, name, "/" + a, "/" + a + "/" + b} {
			owner, repo := c.ownerOf(p)
			segs := strings.Split(strings.TrimPrefix(p, "/"), "/")
			known := len(segs) >= 2 && (segs[0] == "orgs" || segs[0] == "repos" || segs[0] == "repositories")
			if !known && (owner != "" || repo != "") {
				t.Fatalf("ownerOf(%q) = %q, %q for a path of no known shape", p, owner, repo)
			}
			if segs[0] == "orgs" && repo != "" {
				t.Fatalf("ownerOf(%q) names repository %q", p, repo)
			}
		}
		s := Scope{App: Actions, Owner: a, Repo: b, Environment: env}
		if org {
			s = Scope{App: Agents, Org: a}
		}
		if validateScope(s) != nil || validSegment("secret name", name) != nil {
			return
		}
		wantOwner, wantRepo := s.Owner, s.Repo
		if org {
			wantOwner = s.Org
		}
		paths := []string{
			"/" + s.Path(),
			"/" + s.Path() + "/secrets/public-key",
			"/" + s.Path() + "/secrets/" + url.PathEscape(name),
		}
		if org {
			paths = append(paths, "/"+s.Path()+"/secrets/"+url.PathEscape(name)+"/repositories/1")
		} else {
			paths = append(paths, "/repos/"+url.PathEscape(s.Owner)+"/"+url.PathEscape(s.Repo))
		}
		for _, p := range paths {
			if owner, repo := c.ownerOf(p); owner != wantOwner || repo != wantRepo {
				t.Fatalf("ownerOf(%q) = %q, %q; want %q, %q", p, owner, repo, wantOwner, wantRepo)
			}
		}
		// A legacy environment path names the owner the client resolved
		// the id to, whatever the environment.
		if !org && s.IsEnvironment() {
			p := "/repositories/42/environments/" + url.PathEscape(env) + "/secrets/" + url.PathEscape(name)
			if owner, repo := c.ownerOf(p); owner != "Octo-Org" || repo != "hello.world" {
				t.Fatalf("ownerOf(%q) = %q, %q", p, owner, repo)
			}
		}
	})
}
