package service

import (
	"fmt"
	"net/url"
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

// maxEnvironmentLen is GitHub's limit on environment names.
const maxEnvironmentLen = 255

// parseParent parses a scope resource name. field names the request field
// for error messages.
func parseParent(field, s string) (upstream.Scope, error) {
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
		if err := checkAccount(field, "organization", segs[1]); err != nil {
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
	case segs[0] == "repos" && len(segs) == 6 && segs[3] == "environments":
		return bad("%q: environments hold Actions secrets only, with no app segment (GitHub has no agent environment secrets): use %q",
			s, strings.Join(segs[:5], "/"))
	}
	return bad("%q is not a scope: want orgs/{org}/{app}, repos/{owner}/{repo}/{app} or repos/{owner}/{repo}/environments/{environment}, with app \"actions\" or \"agents\"", s)
}

// parseSecretName parses "{parent}/secrets/{SECRET_NAME}" and returns the
// scope and the secret name, upper-cased as GitHub stores it.
func parseSecretName(field, s string) (upstream.Scope, string, error) {
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
// single hyphens, at most 39 characters, as GitHub allows.
func checkAccount(field, what, login string) error {
	if login == "" || len(login) > 39 {
		return invalidArg(field, "%s name must be 1 to 39 characters", what)
	}
	for _, r := range login {
		if !isASCIIAlnum(r) && r != '-' {
			return invalidArg(field, "%s name %q may hold only letters, digits and hyphens", what, login)
		}
	}
	return nil
}

// checkRepo checks an owner and a repository name: letters, digits, ".",
// "-" and "_", at most 100 characters, not "." or "..".
func checkRepo(field, owner, repo string) error {
	if err := checkAccount(field, "owner", owner); err != nil {
		return err
	}
	if repo == "" || len(repo) > 100 || repo == "." || repo == ".." {
		return invalidArg(field, "repository name must be 1 to 100 characters and not \".\" or \"..\"")
	}
	for _, r := range repo {
		if !isASCIIAlnum(r) && r != '-' && r != '_' && r != '.' {
			return invalidArg(field, "repository name %q may hold only letters, digits, \".\", \"-\" and \"_\"", repo)
		}
	}
	return nil
}

// parseEnvironment unescapes an environment segment exactly once.
func parseEnvironment(field, seg string) (string, error) {
	env, err := url.PathUnescape(seg)
	if err != nil {
		return "", invalidArg(field, "environment %q is not validly URL-escaped", seg)
	}
	if env == "" || len(env) > maxEnvironmentLen {
		return "", invalidArg(field, "environment name must be 1 to %d characters", maxEnvironmentLen)
	}
	if !utf8.ValidString(env) || strings.IndexFunc(env, unicode.IsControl) >= 0 {
		return "", invalidArg(field, "environment name %q must be valid UTF-8 without control characters", seg)
	}
	return env, nil
}

// checkSecretName applies GitHub's rules for secret names and returns the
// name upper-cased, as GitHub stores it.
func checkSecretName(field, name string) (string, error) {
	if name == "" {
		return "", invalidArg(field, "secret name is required")
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
