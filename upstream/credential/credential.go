// Package credential owns the broker's GitHub credentials: a token (fixed,
// or read from a file and re-read when the file changes, as when a
// Kubernetes Secret update swaps the file's symlink) and a GitHub App,
// whose private key is read from a file and re-read when it changes, whose
// installation is found for each organization or repository owner (cached,
// one lookup at a time per owner) and whose installation tokens are minted
// with github.com/bradleyfalzon/ghinstallation/v2, cached and refreshed
// before they expire.
//
// A Source hands the upstream client the Credential that serves an owner.
// Each Credential has a Label, the name the client's pacer and metrics
// know it by: "token", "app" (the app's own JWT) or "installation:<id>",
// so there are as many labels as installations. No error, log line or
// String of this package holds a token, a JWT or the private key.
//
// Two helpers keep credentials given in settings out of what others print:
// WithoutPath drops the path from a file's error, and MisreadUserInfo
// tells a URL whose password url.Parse would read as its host or path.
package credential

import (
	"context"
	"fmt"
)

// Labels of the credentials that are not installations.
const (
	// LabelToken is the label of a token credential.
	LabelToken = "token"
	// LabelApp is the label of a GitHub App's own credential, its JWT.
	LabelApp = "app"
)

// Probe paths: the cheapest call that proves a Source's credential.
const (
	// ProbeRateLimit is GET /rate_limit, which GitHub does not count
	// against the primary rate limit; it proves a token.
	ProbeRateLimit = "/rate_limit"
	// ProbeApp is GET /app, which proves a GitHub App's JWT.
	ProbeApp = "/app"
)

// A Credential authenticates requests to GitHub. It is safe for
// concurrent use.
type Credential interface {
	// Label names the credential for the pacer and the metrics: "token",
	// "app" or "installation:<id>".
	Label() string
	// Token returns the token to send now, as "Authorization: Bearer
	// <token>". It reads or mints it when needed; its errors never hold a
	// token.
	Token(ctx context.Context) (string, error)
	// Renew is told that GitHub answered 401 to refused, a token Token
	// returned: it re-reads the file or mints a new token once. It returns
	// nil when the next Token may succeed (a new token is there, or
	// another caller renewed it already), and an error when nothing
	// changed, so that the caller reports the credential as bad instead
	// of retrying.
	Renew(ctx context.Context, refused string) error
}

// A Source hands out the credential for each owner. It is safe for
// concurrent use.
type Source interface {
	// For returns the credential for requests about owner's resources:
	// an organization (repo "") or a repository owner (repo its
	// repository). A GitHub App without a fixed installation answers
	// *NotInstalledError when it is not installed for owner.
	For(ctx context.Context, owner, repo string) (Credential, error)
	// Probe returns the credential for requests tied to no owner and the
	// path of the cheapest call that proves it: the token and
	// ProbeRateLimit, or the app's JWT and ProbeApp.
	Probe() (Credential, string)
}

// NotInstalledError reports an organization or account that the GitHub
// App is not installed on. It is safe to log: it holds the account's name
// only.
type NotInstalledError struct {
	// Account is the organization or user login, as the caller gave it.
	Account string
}

// Error returns, for example, `github app: not installed on the
// organization or account "octo-org"`.
func (e *NotInstalledError) Error() string {
	return fmt.Sprintf("github app: not installed on the organization or account %q", e.Account)
}

// UninstalledError reports a token mint that GitHub answered 404: the
// installation is gone. The App forgets it, and the next call for one of
// its owners looks the owner's installation up again.
type UninstalledError struct {
	InstallationID int64
}

func (e *UninstalledError) Error() string {
	return fmt.Sprintf("github app: installation %d is gone (GitHub answered 404 to a token mint)", e.InstallationID)
}

// Static returns a Source whose one credential, labelled "token", is tok,
// which never changes. An empty tok sends no Authorization header.
func Static(tok string) Source { return staticSource{tok} }

type staticSource struct{ tok string }

func (s staticSource) For(context.Context, string, string) (Credential, error) { return s, nil }
func (s staticSource) Probe() (Credential, string)                             { return s, ProbeRateLimit }
func (staticSource) Label() string                                             { return LabelToken }
func (s staticSource) Token(context.Context) (string, error)                   { return s.tok, nil }

// Renew fails: a fixed token cannot change.
func (staticSource) Renew(context.Context, string) error {
	return fmt.Errorf("credential: the token is fixed and cannot be renewed")
}

// String hides the token from %v.
func (staticSource) String() string { return "credential.Static([redacted])" }

// GoString hides the token from %#v.
func (s staticSource) GoString() string { return s.String() }
