package service

import (
	"net/url"
	"regexp"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/secretbroker/secretbroker/upstream"
)

func TestParseParent(t *testing.T) {
	tests := []struct {
		in      string
		want    upstream.Scope
		wantErr string
	}{
		{in: "orgs/acme/actions", want: upstream.Scope{App: upstream.Actions, Org: "acme"}},
		{in: "orgs/acme/agents", want: upstream.Scope{App: upstream.Agents, Org: "acme"}},
		{in: "repos/acme/api.v2/actions", want: upstream.Scope{App: upstream.Actions, Owner: "acme", Repo: "api.v2"}},
		{in: "repos/acme/api/agents", want: upstream.Scope{App: upstream.Agents, Owner: "acme", Repo: "api"}},
		{in: "repos/octo-org/hello-world/environments/prod%2Feu", want: upstream.Scope{App: upstream.Actions, Owner: "octo-org", Repo: "hello-world", Environment: "prod/eu"}},
		{in: "repos/o/r/environments/my%20env", want: upstream.Scope{App: upstream.Actions, Owner: "o", Repo: "r", Environment: "my env"}},
		{in: "repos/o/r/environments/prod%252Feu", want: upstream.Scope{App: upstream.Actions, Owner: "o", Repo: "r", Environment: "prod%2Feu"}},
		{in: "", wantErr: "parent: is required"},
		{in: "orgs/acme", wantErr: "is not a scope"},
		{in: "orgs/acme/packages", wantErr: `app "packages" is not "actions" or "agents"`},
		{in: "orgs//actions", wantErr: "organization name must be 1 to 39"},
		{in: "orgs/ac me/actions", wantErr: "may hold only letters, digits and hyphens"},
		// An Enterprise Managed User's login holds "_"; an organization's
		// never does.
		{in: "repos/mona_octo/api/actions", want: upstream.Scope{App: upstream.Actions, Owner: "mona_octo", Repo: "api"}},
		{in: "orgs/octo_org/actions", wantErr: "may hold only letters, digits and hyphens"},
		{in: "repos/mona octo/api/actions", wantErr: `may hold only letters, digits, hyphens and "_"`},
		{in: "repos/acme/../actions", wantErr: "repository name must be"},
		{in: "repos/acme/a$b/actions", wantErr: "repository name \"a$b\""},
		{in: "repos/acme/hello.git/actions", wantErr: "without the .git extension"},
		{in: "repos/acme/hello.GIT/environments/prod", wantErr: "without the .git extension"},
		{in: "repos/acme/.git/actions", wantErr: "without the .git extension"},
		// An environment name's "/" left unescaped: the hint names the
		// escaped environment, never another one ("prod").
		{in: "repos/acme/api/environments/prod/eu", wantErr: `for the environment "prod/eu", use "repos/acme/api/environments/prod%2Feu"`},
		{in: "repos/acme/api/environments/a/b/c", wantErr: `use "repos/acme/api/environments/a%2Fb%2Fc"`},
		{in: "repos/acme/api/environments/prod/agents", wantErr: `environments hold Actions secrets only, with no app segment (GitHub has no agent environment secrets): use "repos/acme/api/environments/prod"; or, for the environment "prod/agents", "repos/acme/api/environments/prod%2Fagents"`},
		{in: "repos/acme/api/environments/%zz", wantErr: "not validly URL-escaped"},
		{in: "repos/acme/api/environments/", wantErr: "environment name must be 1 to 255"},
		{in: "repos/acme/api/environments/a%0Ab", wantErr: "control characters"},
		{in: "users/acme/actions", wantErr: "is not a scope"},
		{in: "orgs/acme/actions/", wantErr: "is not a scope"},
		// Dot segments, raw and escaped, in every segment.
		{in: "repos/o/r/environments/.", wantErr: `must not be "." or ".."`},
		{in: "repos/o/r/environments/..", wantErr: `must not be "." or ".."`},
		{in: "repos/o/r/environments/%2e%2e", wantErr: `must not be "." or ".."`},
		{in: "repos/o/r/environments/%2E%2E", wantErr: `must not be "." or ".."`},
		{in: "repos/o/r/environments/%2E", wantErr: `must not be "." or ".."`},
		{in: "repos/o/r/environments/%2e", wantErr: `must not be "." or ".."`},
		{in: "repos/o/r/environments/.%2e", wantErr: `must not be "." or ".."`},
		{in: "repos/o/r/environments/a%2F..%2Fb", wantErr: `between slashes`},
		{in: "repos/o/r/environments/..%2Fprod", wantErr: `between slashes`},
		{in: "repos/o/r/environments/prod%2F.", wantErr: `between slashes`},
		{in: "repos/o/r/environments/a/../b", wantErr: "is not a scope"},
		{in: "repos/o/./actions", wantErr: "repository name must be"},
		{in: "repos/o/%2e%2e/actions", wantErr: `repository name "%2e%2e"`},
		{in: "repos/../r/actions", wantErr: "owner name"},
		{in: "repos/%2e%2e/r/actions", wantErr: "owner name"},
		{in: "orgs/../actions", wantErr: "organization name"},
		{in: "orgs/./actions", wantErr: "organization name"},
		{in: "orgs/acme/..", wantErr: `app ".."`},
		{in: "orgs/a%2Fb/actions", wantErr: "organization name"},
		{in: "repos/o/a%2Fb/actions", wantErr: "repository name"},
		// Control and format characters, invalid UTF-8.
		{in: "orgs/ac\x00me/actions", wantErr: "control character U+0000 at byte 7"},
		{in: "repos/o/r/environments/a\x00b", wantErr: "control character U+0000"},
		{in: "repos/o/r/environments/a%00b", wantErr: "control characters (it holds U+0000)"},
		{in: "repos/o/r/environments/a%7Fb", wantErr: "control characters (it holds U+007F)"},
		{in: "repos/o/r/environments/a%C2%85b", wantErr: "control characters (it holds U+0085)"},
		{in: "repos/o/r/environments/prod%0D%0AX-Evil:%201", wantErr: "control characters"},
		{in: "repos/o/r/environments/\x1b[31mprod", wantErr: "control character U+001B"},
		{in: "repos/o/r/environments/%FF", wantErr: "must be valid UTF-8 once unescaped"},
		{in: "repos/o/r/environments/%C0%AE%C0%AE", wantErr: "must be valid UTF-8 once unescaped"},
		{in: "repos/o/r/environments/\xff", wantErr: "is not valid UTF-8"},
		{in: "repos/o/r/environments/prod%E2%80%AE", wantErr: "Unicode format characters (category Cf"},
		{in: "repos/o/r/environments/prod\u202e", wantErr: "it holds U+202E"},
		{in: "repos/o/r/environments/pr\u200bod", wantErr: "it holds U+200B"},
		{in: "repos/o/r/environments/pr%E2%80%8Cod", wantErr: "it holds U+200C"},
		{in: "repos/o/r/environments/pr%E2%80%8Dod", wantErr: "it holds U+200D"},
		{in: "repos/o/r/environments/pr%E2%81%A0od", wantErr: "it holds U+2060"},
		{in: "repos/o/r/environments/%EF%BB%BFprod", wantErr: "it holds U+FEFF"},
		{in: "repos/o/r/environments/%E2%81%A6prod", wantErr: "it holds U+2066"},
		// Emoji are names; a sequence joined by U+200D (ZWJ) is refused at
		// its joiner, named: the seeds say nothing of either, and a ZWJ
		// is refused wherever it stands (README).
		{in: "repos/o/r/environments/%F0%9F%9A%80", want: upstream.Scope{App: upstream.Actions, Owner: "o", Repo: "r", Environment: "🚀"}},
		{in: "repos/o/r/environments/%E2%9D%A4%EF%B8%8F", want: upstream.Scope{App: upstream.Actions, Owner: "o", Repo: "r", Environment: "❤️"}},
		{in: "repos/o/r/environments/%F0%9F%91%8D%F0%9F%8F%BD", want: upstream.Scope{App: upstream.Actions, Owner: "o", Repo: "r", Environment: "👍🏽"}},
		{in: "repos/o/r/environments/%F0%9F%91%A9%E2%80%8D%F0%9F%92%BB", wantErr: "it holds U+200D"},
		{in: "repos/o/r/environments/👩‍💻", wantErr: "it holds U+200D"},
		// Lengths.
		{in: "repos/o/r/environments/" + strings.Repeat("e", 255), want: upstream.Scope{App: upstream.Actions, Owner: "o", Repo: "r", Environment: strings.Repeat("e", 255)}},
		{in: "repos/o/r/environments/" + strings.Repeat("e", 256), wantErr: "environment name must be 1 to 255"},
		{in: "repos/o/r/environments/" + strings.Repeat("é", 256), wantErr: "environment name must be 1 to 255 characters"},
		// GitHub counts characters: 255 of 4 bytes each (escaped, 3,060 bytes) is a name.
		{in: "repos/o/r/environments/" + strings.Repeat("%F0%9F%9A%80", 255), want: upstream.Scope{App: upstream.Actions, Owner: "o", Repo: "r", Environment: strings.Repeat("🚀", 255)}},
		{in: "repos/o/r/environments/" + strings.Repeat("é", 130), want: upstream.Scope{App: upstream.Actions, Owner: "o", Repo: "r", Environment: strings.Repeat("é", 130)}}, // 260 bytes
		{in: "orgs/" + strings.Repeat("a", 4100) + "/actions", wantErr: "is 4113 bytes; a resource name is at most 4096 bytes"},
		// The longest parent formats to 925 bytes, under the limit.
		{in: "repos/" + strings.Repeat("o", 39) + "/" + strings.Repeat("r", 100) + "/environments/" + strings.Repeat("!", 255), want: upstream.Scope{App: upstream.Actions, Owner: strings.Repeat("o", 39), Repo: strings.Repeat("r", 100), Environment: strings.Repeat("!", 255)}},
		// Not dot segments: legitimate names.
		{in: "repos/o/r/environments/...", want: upstream.Scope{App: upstream.Actions, Owner: "o", Repo: "r", Environment: "..."}},
		{in: "repos/o/r/environments/%252e%252e", want: upstream.Scope{App: upstream.Actions, Owner: "o", Repo: "r", Environment: "%2e%2e"}},
		{in: "repos/o/r/environments/%252F", want: upstream.Scope{App: upstream.Actions, Owner: "o", Repo: "r", Environment: "%2F"}},
		{in: "repos/o/r/environments/caf%C3%A9", want: upstream.Scope{App: upstream.Actions, Owner: "o", Repo: "r", Environment: "café"}},
		{in: "repos/o/r/environments/release..1", want: upstream.Scope{App: upstream.Actions, Owner: "o", Repo: "r", Environment: "release..1"}},
	}
	for _, tt := range tests {
		t.Run(tt.in[:min(len(tt.in), 80)], func(t *testing.T) {
			got, err := parseParent("parent", tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseParent(%q) error = %v, want it to contain %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseParent(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Fatalf("parseParent(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
			// The resource name round-trips through the scope's REST path.
			if back, err := parseParent("parent", scopeName(got)); err != nil || back != got {
				t.Fatalf("round trip of %q via %q = %+v, %v", tt.in, scopeName(got), back, err)
			}
		})
	}
}

func TestEnvironmentEscapedOnce(t *testing.T) {
	s, err := parseParent("parent", "repos/octo-org/hello-world/environments/prod%2Feu")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.Path(), "repos/octo-org/hello-world/environments/prod%2Feu"; got != want {
		t.Fatalf("Path() = %q, want %q", got, want)
	}
}

func TestParseSecretName(t *testing.T) {
	tests := []struct {
		in       string
		wantName string
		wantErr  string
	}{
		{in: "orgs/acme/actions/secrets/deploy_token", wantName: "DEPLOY_TOKEN"},
		{in: "repos/acme/api/agents/secrets/_X1", wantName: "_X1"},
		{in: "repos/o/r/environments/prod%2Feu/secrets/DB", wantName: "DB"},
		{in: "orgs/acme/actions/secrets/", wantErr: "secret name is required"},
		{in: "orgs/acme/actions/secrets/1ABC", wantErr: "must not start with a digit"},
		{in: "orgs/acme/actions/secrets/github_token", wantErr: "must not start with GITHUB_"},
		{in: "orgs/acme/actions/secrets/GitHub_X", wantErr: "must not start with GITHUB_"},
		{in: "orgs/acme/actions/secrets/A-B", wantErr: "may hold only letters, digits and \"_\""},
		{in: "orgs/acme/actions/secrets/ÄB", wantErr: "may hold only letters"},
		{in: "orgs/acme/actions/TOKEN", wantErr: "is not a secret"},
		{in: "orgs/acme/actions/secrets/A/B", wantErr: "may hold only letters"},
		{in: "orgs/acme/actions/secrets/..", wantErr: "may hold only letters"},
		{in: "orgs/acme/actions/secrets/.", wantErr: "may hold only letters"},
		{in: "orgs/acme/actions/secrets/%2e%2e", wantErr: "may hold only letters"},
		{in: "orgs/acme/actions/secrets/a/../b", wantErr: "may hold only letters"},
		{in: "orgs/acme/actions/secrets/A%2FB", wantErr: "may hold only letters"},
		{in: "orgs/acme/actions/secrets/A\x00B", wantErr: "control character U+0000 at byte 27"},
		{in: "orgs/acme/actions/secrets/A\tB", wantErr: "control character U+0009"},
		{in: "orgs/acme/actions/secrets/A\x7fB", wantErr: "control character U+007F"},
		{in: "orgs/acme/actions/secrets/A\xffB", wantErr: "is not valid UTF-8"},
		{in: "orgs/acme/actions/secrets/" + strings.Repeat("S", 255), wantName: strings.Repeat("S", 255)},
		{in: "orgs/acme/actions/secrets/" + strings.Repeat("S", 256), wantErr: "secret name is 256 characters; the limit is 255"},
		{in: "orgs/acme/actions/secrets/" + strings.Repeat("S", 5000), wantErr: "a resource name is at most 4096 bytes"},
		{in: "repos/o/r/environments/%2e%2e/secrets/X", wantErr: `must not be "." or ".."`},
		{in: "repos/o/r/environments/%E2%80%AE/secrets/X", wantErr: "category Cf"},
		// The longest names GitHub's limits allow, sent unescaped (about
		// 1,400 bytes) and escaped (3,484 bytes).
		{in: "repos/" + strings.Repeat("o", 39) + "/" + strings.Repeat("r", 100) + "/environments/" + strings.Repeat("🚀", 255) + "/secrets/" + strings.Repeat("S", 255), wantName: strings.Repeat("S", 255)},
		{in: "repos/" + strings.Repeat("o", 39) + "/" + strings.Repeat("r", 100) + "/environments/" + strings.Repeat("%F0%9F%9A%80", 255) + "/secrets/" + strings.Repeat("S", 255), wantName: strings.Repeat("S", 255)},
	}
	for _, tt := range tests {
		t.Run(tt.in[:min(len(tt.in), 80)], func(t *testing.T) {
			scope, name, err := parseSecretName("name", tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
				}
				if !strings.HasPrefix(err.Error(), "name: ") {
					t.Fatalf("error %q does not name the field", err)
				}
				return
			}
			if err != nil || name != tt.wantName {
				t.Fatalf("parseSecretName(%q) = %q, %v; want %q", tt.in, name, err, tt.wantName)
			}
			// The broker never hands back a name it would refuse.
			formatted := secretResourceName(scope, name)
			if _, again, err := parseSecretName("name", formatted); err != nil || again != name || len(formatted) > maxResourceNameLen {
				t.Fatalf("formatted back to %d bytes, which parses to %q, %v", len(formatted), again, err)
			}
		})
	}
}

// GitHub's rules for names, as FuzzParseSecretName checks them.
var (
	fuzzSecretName = regexp.MustCompile(`^[A-Z_][A-Z0-9_]{0,254}$`)
	fuzzLogin      = regexp.MustCompile(`^[A-Za-z0-9_-]{1,39}$`)
	fuzzRepo       = regexp.MustCompile(`^[A-Za-z0-9._-]{1,100}$`)
)

func FuzzParseSecretName(f *testing.F) {
	for _, s := range []string{
		"orgs/acme/actions/secrets/TOKEN",
		"repos/o/r/environments/prod%2Feu/secrets/X",
		"repos/o/r/agents/secrets/A_1",
		"repos/o/r/environments/%/secrets/X",
		"orgs/a/actions/secrets/secrets/secrets/X",
		"repos/o/r/environments/%2e%2e/secrets/X",
		"repos/o/r/environments/%2E/secrets/X",
		"repos/o/r/environments/a%2F..%2Fb/secrets/X",
		"repos/o/r/environments/%252F/secrets/X",
		"repos/o/r/environments/%E2%80%AE/secrets/X",
		"repos/o/r/environments/\u200d/secrets/X",
		"repos/o/r/environments/%00/secrets/X",
		"repos/o/r/environments/\xff/secrets/X",
		"repos/o/r/environments/%C3%A9t%C3%A9/secrets/X",
		"repos/o/r/environments/a b!/secrets/X",
		"orgs/acme/actions/secrets/" + strings.Repeat("S", 256),
		"orgs/acme/actions/secrets/github_token",
		"orgs/acme/actions/secrets/1A",
		"orgs/ac_me/actions/secrets/A",
		"repos/o_1/r.git/actions/secrets/A",
		"repos/o/r.GIT/agents/secrets/A",
		"repos/o/.../actions/secrets/A",
		"repos/o/r/environments/prod/agents/secrets/A",
		"repos/o/r/environments/prod%2F..%2Feu/secrets/A",
		"repos/" + strings.Repeat("o", 40) + "/r/actions/secrets/A",
		"orgs/acme/actions/secrets/A%5F",
		"orgs/acme/actions/secrets/K",
		"repos/" + strings.Repeat("o", 39) + "/" + strings.Repeat("r", 100) + "/environments/" + strings.Repeat("!", 201) + "/secrets/" + strings.Repeat("S", 255),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		scope, name, err := parseSecretName("name", in)
		if err != nil {
			if len(in) > maxResourceNameLen && !strings.Contains(err.Error(), "at most 4096 bytes") {
				t.Fatalf("%d bytes refused for another reason first: %v", len(in), err)
			}
			return
		}
		// Whatever parses formats back to a name that parses to the same.
		formatted := secretResourceName(scope, name)
		scope2, name2, err := parseSecretName("name", formatted)
		if err != nil || scope2 != scope || name2 != name {
			t.Fatalf("%q parsed to %+v %q, which reparsed to %+v %q, %v", in, scope, name, scope2, name2, err)
		}
		// Formatting is canonical: a second round trip is the identity.
		if again := secretResourceName(scope2, name2); again != formatted {
			t.Fatalf("%q formats to %q, then to %q", in, formatted, again)
		}
		if name != strings.ToUpper(name) || len(name) > maxSecretNameLen {
			t.Fatalf("name %q is not upper-cased or is too long", name)
		}
		// GitHub's rules, written apart from the parser: the name, the
		// logins and the repository; and one of the three shapes.
		if !fuzzSecretName.MatchString(name) || strings.HasPrefix(name, "GITHUB_") {
			t.Fatalf("%q: accepted secret name %q", in, name)
		}
		switch {
		case scope.Org != "":
			if !fuzzLogin.MatchString(scope.Org) || strings.Contains(scope.Org, "_") || scope.Owner+scope.Repo+scope.Environment != "" ||
				(scope.App != upstream.Actions && scope.App != upstream.Agents) {
				t.Fatalf("%q: accepted organization scope %+v", in, scope)
			}
		case !fuzzLogin.MatchString(scope.Owner) || !fuzzRepo.MatchString(scope.Repo) || scope.Repo == "." || scope.Repo == ".." ||
			strings.HasSuffix(strings.ToLower(scope.Repo), ".git"):
			t.Fatalf("%q: accepted repository %q/%q", in, scope.Owner, scope.Repo)
		case scope.Environment != "" && scope.App != upstream.Actions,
			scope.Environment == "" && scope.App != upstream.Actions && scope.App != upstream.Agents:
			t.Fatalf("%q: accepted scope %+v", in, scope)
		}
		if len(in) > maxResourceNameLen || len(formatted) > maxResourceNameLen {
			t.Fatalf("accepted a name of %d bytes formatting to %d", len(in), len(formatted))
		}
		for _, seg := range []string{scope.Org, scope.Owner, scope.Repo, string(scope.App), name} {
			if seg == "." || seg == ".." || strings.ContainsAny(seg, "/%") {
				t.Fatalf("%q: segment %q is a dot segment or holds / or %%", in, seg)
			}
		}
		if env := scope.Environment; env != "" {
			if env == "." || env == ".." || !utf8.ValidString(env) {
				t.Fatalf("%q: accepted environment %q", in, env)
			}
			for _, part := range strings.Split(env, "/") {
				if part == "." || part == ".." {
					t.Fatalf("%q: environment %q holds a dot segment", in, env)
				}
			}
			for _, r := range env {
				if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
					t.Fatalf("%q: environment %q holds %U", in, env, r)
				}
			}
		}
	})
}

// The characters the rules name are what Go's tables say they are: a
// check that cannot fail for want of a table entry.
func TestFormatCharactersAreCf(t *testing.T) {
	for _, r := range []rune{0x202A, 0x202B, 0x202C, 0x202D, 0x202E, 0x2066, 0x2067, 0x2068, 0x2069, 0x200B, 0x200C, 0x200D, 0x200E, 0x200F, 0x2060, 0xFEFF, 0x00AD} {
		if !unicode.Is(unicode.Cf, r) {
			t.Errorf("%U is not in category Cf", r)
		}
		if _, err := parseParent("parent", "repos/o/r/environments/a"+url.PathEscape(string(r))+"b"); err == nil || !strings.Contains(err.Error(), "category Cf") {
			t.Errorf("environment with %U: %v", r, err)
		}
	}
}

// parseEnvironment holds its own rules whoever calls it, the whole-name
// checks of parseParent aside.
func TestParseEnvironmentDirect(t *testing.T) {
	tests := []struct {
		seg, want, wantErr string
	}{
		{seg: "prod%2Feu", want: "prod/eu"},
		{seg: "%252F", want: "%2F"},
		{seg: "\xff", wantErr: "environment segment is not valid UTF-8"},
		{seg: "a\x00b", wantErr: "control characters (it holds U+0000)"},
		{seg: "%2e%2E", wantErr: `must not be "." or ".."`},
		{seg: "x%2F.", wantErr: "between slashes"},
		{seg: "a\u2060b", wantErr: "it holds U+2060"},
	}
	for _, tt := range tests {
		got, err := parseEnvironment("parent", tt.seg)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseEnvironment(%q) = %q, %v; want an error containing %q", tt.seg, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("parseEnvironment(%q) = %q, %v; want %q", tt.seg, got, err, tt.want)
		}
	}
}
