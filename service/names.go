package service

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/secretbroker/secretbroker/upstream"
)

// Resource names mirror GitHub's REST paths:
//
//	orgs/{org}/{app}
//	repos/{owner}/{repo}/{app}
//	repos/{owner}/{repo}/environments/{environment}
//	{parent}/secrets/{SECRET_NAME}
//
// where {app} is "actions" or "agents" and {environment} is URL-escaped
// exactly once ("prod/eu" is "prod%2Feu").

// maxEnvironmentLen is GitHub's limit on environment names, in
// characters.
const maxEnvironmentLen = 255

// maxSecretNameLen bounds a secret name. GitHub publishes no limit; 255
// characters is far beyond any real name and keeps paths short.
const maxSecretNameLen = 255

// maxResourceNameLen bounds a resource name as sent: a longer name is
// refused before any other parsing. Every name that parses formats back
// (with the environment escaped once) within it, the longest being
// 3,484 bytes: "repos/", a 39-byte owner, a 100-byte repository,
// "/environments/", 255 characters of up to 4 bytes each escaped to
// 3,060, "/secrets/" and a 255-byte secret name.
const maxResourceNameLen = 4096

// checkResourceName applies the rules every resource name meets before it
// is split: at most maxResourceNameLen bytes, valid UTF-8, and no control
// characters (NUL, C0, DEL, C1). The message does not quote the name: it
// may be long, or not printable.
func checkResourceName(field, s string) error {
	if len(s) > maxResourceNameLen {
		return invalidArg(field, "is %d bytes; a resource name is at most %d bytes", len(s), maxResourceNameLen)
	}
	if !utf8.ValidString(s) {
		return invalidArg(field, "is not valid UTF-8")
	}
	if i := strings.IndexFunc(s, unicode.IsControl); i >= 0 {
		r, _ := utf8.DecodeRuneInString(s[i:])
		return invalidArg(field, "holds control character %U at byte %d; names may not hold control characters", r, i)
	}
	return nil
}

// parseParent parses a scope resource name. field names the request field
// for error messages.
//
// A parent that parses formats back to at most 3,219 bytes ("repos/", a
// 39-byte owner, a 100-byte repository, "/environments/" and 255
// characters escaped to at most 3,060).
func parseParent(field, s string) (upstream.Scope, error) {
	if err := checkResourceName(field, s); err != nil {
		return upstream.Scope{}, err
	}
	segs := strings.Split(s, "/")
	bad := func(format string, args ...any) (upstream.Scope, error) {
		return upstream.Scope{}, invalidArg(field, format, args...)
	}
	if s == "" {
		return bad("is required (for example %q)", "orgs/acme/actions")
	}
	switch {
	case segs[0] == "orgs" && len(segs) == 3:
		app, err := parseApp(field, segs[2])
		if err != nil {
			return upstream.Scope{}, err
		}
		if err := checkAccount(field, "organization", segs[1], false); err != nil {
			return upstream.Scope{}, err
		}
		return upstream.Scope{App: app, Org: segs[1]}, nil
	case segs[0] == "repos" && len(segs) == 4:
		app, err := parseApp(field, segs[3])
		if err != nil {
			return upstream.Scope{}, err
		}
		if err := checkRepo(field, segs[1], segs[2]); err != nil {
			return upstream.Scope{}, err
		}
		return upstream.Scope{App: app, Owner: segs[1], Repo: segs[2]}, nil
	case segs[0] == "repos" && len(segs) == 5 && segs[3] == "environments":
		if err := checkRepo(field, segs[1], segs[2]); err != nil {
			return upstream.Scope{}, err
		}
		env, err := parseEnvironment(field, segs[4])
		if err != nil {
			return upstream.Scope{}, err
		}
		return upstream.Scope{App: upstream.Actions, Owner: segs[1], Repo: segs[2], Environment: env}, nil
	case segs[0] == "repos" && len(segs) > 5 && segs[3] == "environments" && !slices.ContainsFunc(segs[4:], dotOrEmpty):
		escaped := strings.Join(segs[:4], "/") + "/" + strings.Join(segs[4:], "%2F")
		if len(segs) == 6 && (segs[5] == "actions" || segs[5] == "agents") {
			return bad("%q: environments hold Actions secrets only, with no app segment (GitHub has no agent environment secrets): use %q; or, for the environment %q, %q",
				s, strings.Join(segs[:5], "/"), strings.Join(segs[4:], "/"), escaped)
		}
		return bad("%q: an environment name holding \"/\" is escaped once in a resource name: for the environment %q, use %q",
			s, strings.Join(segs[4:], "/"), escaped)
	}
	return bad("%q is not a scope: want orgs/{org}/{app}, repos/{owner}/{repo}/{app} or repos/{owner}/{repo}/environments/{environment}, with app \"actions\" or \"agents\"", s)
}

// dotOrEmpty reports whether a path segment is "", "." or "..": a path
// with one is not an environment name whose "/" was left unescaped.
func dotOrEmpty(seg string) bool { return seg == "" || seg == "." || seg == ".." }

// parseSecretName parses "{parent}/secrets/{SECRET_NAME}" and returns the
// scope and the secret name, upper-cased as GitHub stores it.
func parseSecretName(field, s string) (upstream.Scope, string, error) {
	if err := checkResourceName(field, s); err != nil {
		return upstream.Scope{}, "", err
	}
	i := strings.LastIndex(s, "/secrets/")
	if i < 0 {
		return upstream.Scope{}, "", invalidArg(field, "%q is not a secret: want {parent}/secrets/{SECRET_NAME}, for example %q", s, "orgs/acme/actions/secrets/DEPLOY_TOKEN")
	}
	scope, err := parseParent(field, s[:i])
	if err != nil {
		return upstream.Scope{}, "", err
	}
	name, err := checkSecretName(field, s[i+len("/secrets/"):])
	if err != nil {
		return upstream.Scope{}, "", err
	}
	return scope, name, nil
}

// parseOrgSecretName is parseSecretName for operations GitHub has only for
// organization secrets.
func parseOrgSecretName(field, s string) (upstream.Scope, string, error) {
	scope, name, err := parseSecretName(field, s)
	if err != nil {
		return upstream.Scope{}, "", err
	}
	if !scope.IsOrg() {
		return upstream.Scope{}, "", invalidArg(field, "%q: selected repositories exist for organization secrets only (orgs/{org}/{app}/secrets/{SECRET_NAME})", s)
	}
	return scope, name, nil
}

// parseRepoParent parses "repos/{owner}/{repo}/{app}", the parent of
// ListRepositoryOrganizationSecrets.
func parseRepoParent(field, s string) (upstream.Scope, error) {
	scope, err := parseParent(field, s)
	if err != nil {
		return upstream.Scope{}, err
	}
	if scope.IsOrg() || scope.IsEnvironment() {
		return upstream.Scope{}, invalidArg(field, "%q: want a repository scope repos/{owner}/{repo}/{app}", s)
	}
	return scope, nil
}

// scopeName formats a scope as its resource name (the inverse of
// parseParent). It is the scope's REST path prefix.
func scopeName(s upstream.Scope) string { return s.Path() }

// foldedScope is the key under which the broker keeps per-scope state that is
// GitHub's and not the caller's (the scope's public key, the generation of
// its cached reads): the scope's path with the organization, owner and
// repository names in lower case, since GitHub treats those names case
// insensitively, so that the case variants of one scope share one entry.
// Only ASCII letters are folded (valid names hold no others). The app and
// the environment are kept as they are: the app is already lower case,
// and environments, though GitHub matches their names case insensitively
// too, are left alone to be conservative (records and write locks fold
// them: recordScope). Resource names handed to
// callers and the names that policy checks see keep the caller's spelling:
// foldedScope is never shown.
func foldedScope(s upstream.Scope) string {
	s.Org = lowerASCII(s.Org)
	s.Owner = lowerASCII(s.Owner)
	s.Repo = lowerASCII(s.Repo)
	return s.Path()
}

// lowerASCII maps the ASCII letters A-Z in s to a-z and leaves every other
// byte alone (strings.ToLower would also fold non-ASCII letters, such as
// the Kelvin sign to "k").
func lowerASCII(s string) string {
	i := strings.IndexFunc(s, func(r rune) bool { return 'A' <= r && r <= 'Z' })
	if i < 0 {
		return s
	}
	b := []byte(s)
	for j := i; j < len(b); j++ {
		if 'A' <= b[j] && b[j] <= 'Z' {
			b[j] += 'a' - 'A'
		}
	}
	return string(b)
}

// secretResourceName formats a secret's resource name.
func secretResourceName(s upstream.Scope, name string) string {
	return scopeName(s) + "/secrets/" + name
}

func parseApp(field, app string) (upstream.App, error) {
	switch upstream.App(app) {
	case upstream.Actions, upstream.Agents:
		return upstream.App(app), nil
	}
	return "", invalidArg(field, "app %q is not \"actions\" or \"agents\"", app)
}

// checkAccount checks an organization or user login: letters, digits and
// hyphens, at most 39 characters, as GitHub allows; with user, also "_",
// which the logins of Enterprise Managed Users hold ({handle}_{shortcode}).
func checkAccount(field, what, login string, user bool) error {
	if login == "" || len(login) > 39 {
		return invalidArg(field, "%s name must be 1 to 39 characters", what)
	}
	for _, r := range login {
		if !isASCIIAlnum(r) && r != '-' && (!user || r != '_') {
			if user {
				return invalidArg(field, "%s name %q may hold only letters, digits, hyphens and \"_\"", what, login)
			}
			return invalidArg(field, "%s name %q may hold only letters, digits and hyphens", what, login)
		}
	}
	return nil
}

// checkRepo checks an owner and a repository name: letters, digits, ".",
// "-" and "_", at most 100 characters, not "." or "..", and without the
// .git extension, which GitHub's paths take the name without (and which
// GitHub drops from a new repository's name).
func checkRepo(field, owner, repo string) error {
	if err := checkAccount(field, "owner", owner, true); err != nil {
		return err
	}
	if repo == "" || len(repo) > 100 || repo == "." || repo == ".." {
		return invalidArg(field, "repository name must be 1 to 100 characters and not \".\" or \"..\"")
	}
	if len(repo) >= len(".git") && strings.EqualFold(repo[len(repo)-len(".git"):], ".git") {
		return invalidArg(field, "repository name %q: give it without the .git extension", repo)
	}
	for _, r := range repo {
		if !isASCIIAlnum(r) && r != '-' && r != '_' && r != '.' {
			return invalidArg(field, "repository name %q may hold only letters, digits, \".\", \"-\" and \"_\"", repo)
		}
	}
	return nil
}

// parseEnvironment unescapes an environment segment exactly once and
// checks the name it stands for: 1 to maxEnvironmentLen bytes of valid
// UTF-8; not "." or "..", nor holding them as a "/"-separated component
// ("a/../b"), which a server or proxy that decodes %2F would take for a
// step up the path; and no control characters or Unicode format characters
// (category Cf: bidi controls such as U+202E, zero-width characters such as
// U+200B..U+200D, U+2060 and U+FEFF), which make a name read as another.
func parseEnvironment(field, seg string) (string, error) {
	if !utf8.ValidString(seg) {
		return "", invalidArg(field, "environment segment is not valid UTF-8")
	}
	env, err := url.PathUnescape(seg)
	if err != nil {
		return "", invalidArg(field, "environment %q is not validly URL-escaped", seg)
	}
	if !utf8.ValidString(env) {
		return "", invalidArg(field, "environment name %q must be valid UTF-8 once unescaped", seg)
	}
	if env == "" || utf8.RuneCountInString(env) > maxEnvironmentLen {
		return "", invalidArg(field, "environment name must be 1 to %d characters", maxEnvironmentLen)
	}
	if env == "." || env == ".." {
		return "", invalidArg(field, "environment name %q (unescaped %q) must not be \".\" or \"..\"", seg, env)
	}
	for _, part := range strings.Split(env, "/") {
		if part == "." || part == ".." {
			return "", invalidArg(field, "environment name %q (unescaped %q) must not hold \".\" or \"..\" between slashes", seg, env)
		}
	}
	for _, r := range env {
		switch {
		case unicode.IsControl(r):
			return "", invalidArg(field, "environment name %q must be valid UTF-8 without control characters (it holds %U)", seg, r)
		case unicode.Is(unicode.Cf, r):
			return "", invalidArg(field, "environment name %q must not hold Unicode format characters (category Cf, such as bidi controls and zero-width characters; it holds %U)", seg, r)
		}
	}
	return env, nil
}

// checkSecretName applies GitHub's rules for secret names and returns the
// name upper-cased, as GitHub stores it.
func checkSecretName(field, name string) (string, error) {
	if name == "" {
		return "", invalidArg(field, "secret name is required")
	}
	if n := utf8.RuneCountInString(name); n > maxSecretNameLen {
		return "", invalidArg(field, "secret name is %d characters; the limit is %d", n, maxSecretNameLen)
	}
	for _, r := range name {
		if !isASCIIAlnum(r) && r != '_' {
			return "", invalidArg(field, "secret name %q may hold only letters, digits and \"_\"", name)
		}
	}
	if name[0] >= '0' && name[0] <= '9' {
		return "", invalidArg(field, "secret name %q must not start with a digit", name)
	}
	upper := strings.ToUpper(name)
	if strings.HasPrefix(upper, "GITHUB_") {
		return "", invalidArg(field, "secret name %q must not start with GITHUB_ (reserved by GitHub)", name)
	}
	return upper, nil
}

func isASCIIAlnum(r rune) bool {
	return (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')
}

// invalidArg is the error for a request that breaks a rule: it names the
// field and the rule. It must never quote a secret value.
func invalidArg(field, format string, args ...any) error {
	return &invalidArgError{field: field, msg: fmt.Sprintf(format, args...)}
}

type invalidArgError struct{ field, msg string }

func (e *invalidArgError) Error() string { return e.field + ": " + e.msg }
