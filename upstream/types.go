// Package upstream is the broker's GitHub REST client for the secrets API:
// organization, repository and environment secrets of GitHub Actions, and
// organization and repository secrets of GitHub Agents, on github.com or on
// GitHub Enterprise Server. It owns authentication, request construction,
// API versions, legacy routes and the decoding of GitHub's errors. It knows
// nothing of gRPC or of the broker's service layer.
//
// # Pacing and retries
//
// A Client paces every request to stay within GitHub's rate limits for its
// credential (see Pacing; DefaultPacing follows GitHub's guidance): at
// most MaxInFlight requests at once; writes one at a time, WriteInterval
// apart; never more than PointsPerMinute points in any 60 s window at the
// server; nothing while GitHub's primary quota is used up (until
// x-ratelimit-reset) or while a rate-limit answer paused the credential.
// The pacing itself is upstream/pace's: the Client asks its pace.Pacer to
// admit each attempt and reports GitHub's answer to it. Requests wait in
// a read and a write lane per caller (WithCaller), callers served in
// turn. A request the pacer can tell would not start before its
// context's deadline is not sent and fails at once with a
// *ThrottledError.
//
// Rate-limit answers, 500, 502, 503, 504 and dropped connections are
// retried with exponential backoff and full jitter, up to MaxAttempts
// attempts. The backoff holds only the failing request; the pause after a
// rate-limit answer holds the whole credential. Each retry is admitted by
// the pacer like a new request. Every call the Client makes is
// idempotent, so retries are safe.
//
// # Credentials
//
// Config.Credentials (package credential: a token file, or a GitHub App)
// hands the Client the credential for the owner in each request's path
// (the organization, or the repository's owner). Each credential (the
// token, the app's JWT, each installation) has its own pace.Pacer, so its
// own budget and pauses, and its own metrics label. The token is taken
// after the pacer admits the attempt, so that a request that waited long
// for its turn still sends a fresh one. A 401 makes the Client renew the
// credential (read the file again, mint a new installation token) and
// send the request once more; when renewing changes nothing, the 401 is
// returned. An owner the app is not installed on is a *NotInstalledError,
// and nothing is sent.
//
// Time is read directly (time.Now, timers, the context's deadline); tests
// run the Client in testing/synctest bubbles.
//
// The embedded GitHub emulator lives in the sub-package emulator.
package upstream

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"time"
)

// App is the GitHub product whose secrets a scope holds.
type App string

// The apps GitHub has secrets for.
const (
	Actions App = "actions"
	Agents  App = "agents"
)

// Scope is where secrets live: an organization, a repository, or a
// repository's environment (Actions only). Exactly one of the three shapes
// is set:
//
//	organization: App, Org
//	repository:   App, Owner, Repo
//	environment:  App (always Actions), Owner, Repo, Environment
//
// Environment is the raw environment name ("prod/eu"); the client escapes
// it exactly once when it builds a URL.
type Scope struct {
	App         App
	Org         string
	Owner       string
	Repo        string
	Environment string
}

// IsOrg reports whether s is an organization scope.
func (s Scope) IsOrg() bool { return s.Org != "" }

// IsEnvironment reports whether s is an environment scope.
func (s Scope) IsEnvironment() bool { return s.Environment != "" }

// Path returns the scope's REST path prefix without a leading slash, as
// github.com and current GitHub Enterprise Server route it, for example
// "orgs/acme/actions" or "repos/acme/api/environments/prod%2Feu".
func (s Scope) Path() string {
	switch {
	case s.IsOrg():
		return "orgs/" + url.PathEscape(s.Org) + "/" + string(s.App)
	case s.IsEnvironment():
		return "repos/" + url.PathEscape(s.Owner) + "/" + url.PathEscape(s.Repo) +
			"/environments/" + url.PathEscape(s.Environment)
	default:
		return "repos/" + url.PathEscape(s.Owner) + "/" + url.PathEscape(s.Repo) + "/" + string(s.App)
	}
}

// String returns the scope's path; it is safe to log.
func (s Scope) String() string { return s.Path() }

// KeyID is a public key's identifier. GitHub sends it as a JSON string; some
// servers send a number. Either decodes to the same opaque string.
type KeyID string

// UnmarshalJSON accepts a JSON string or a JSON number.
func (k *KeyID) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return fmt.Errorf("key_id: %w", err)
		}
		*k = KeyID(s)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("key_id is neither a string nor a number: %w", err)
	}
	*k = KeyID(n.String())
	return nil
}

// PublicKey is a scope's libsodium public key.
type PublicKey struct {
	KeyID KeyID `json:"key_id"`
	// Key is the base64-encoded Curve25519 public key.
	Key string `json:"key"`
	// ETag is the response's ETag header, for conditional requests.
	ETag string `json:"-"`
}

// Secret is a secret's metadata as GitHub returns it. GitHub never returns
// a secret's value.
type Secret struct {
	Name                    string    `json:"name"`
	CreatedAt               time.Time `json:"created_at"`
	UpdatedAt               time.Time `json:"updated_at"`
	Visibility              string    `json:"visibility,omitempty"`
	SelectedRepositoriesURL string    `json:"selected_repositories_url,omitempty"`
}

// SecretList is one page of secrets.
type SecretList struct {
	TotalCount int      `json:"total_count"`
	Secrets    []Secret `json:"secrets"`
	// HasNext reports whether a page follows: page × per_page < total_count.
	HasNext bool `json:"-"`
}

// Repository is the part of GitHub's repository object the broker uses.
type Repository struct {
	ID       int64  `json:"id"`
	Name     string `json:"name"`
	FullName string `json:"full_name"`
	Private  bool   `json:"private"`
}

// RepositoryList is one page of repositories selected for a secret.
type RepositoryList struct {
	TotalCount   int          `json:"total_count"`
	Repositories []Repository `json:"repositories"`
	// HasNext reports whether a page follows: page × per_page < total_count.
	HasNext bool `json:"-"`
}

// Page selects one page of a list: GitHub's page (from 1) and per_page (1
// to 100). Zero values leave GitHub's defaults (page 1, 30 per page).
type Page struct {
	Page    int
	PerPage int
}

// PutSecretBody is the body of a create-or-update request.
type PutSecretBody struct {
	// EncryptedValue and KeyID are left out of the request when both are
	// empty: a PUT that updates an existing organization secret's
	// visibility and selection only, keeping its value, where GitHub's
	// reference leaves them optional (Client.PutValueOptional).
	EncryptedValue string `json:"encrypted_value,omitempty"`
	KeyID          KeyID  `json:"key_id,omitempty"`
	// Visibility and SelectedRepositoryIDs apply to organization secrets
	// only; they are left out of the request when empty.
	Visibility            string  `json:"visibility,omitempty"`
	SelectedRepositoryIDs []int64 `json:"selected_repository_ids,omitempty"`
}

// GoString keeps the encrypted value out of %#v output.
func (b PutSecretBody) GoString() string {
	return fmt.Sprintf("upstream.PutSecretBody{KeyID:%q, Visibility:%q, SelectedRepositoryIDs:%v, EncryptedValue:<%d bytes>}",
		b.KeyID, b.Visibility, b.SelectedRepositoryIDs, len(b.EncryptedValue))
}

// String keeps the encrypted value out of %v output.
func (b PutSecretBody) String() string { return b.GoString() }
