package service

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/secretbroker/secretbroker/upstream"
)

// GitHub answers 404 alike for a scope that does not exist (or that the
// broker's credentials cannot see) and for a secret that does not exist.
// Which call got it tells them apart: namingUpstream and the key cache
// (keyCache.get, keyCache.revalidateOn) wrap each 404 in a *notFoundAt
// that names, by its resource name, what that call asked GitHub for, and
// classify answers NOT_FOUND with notFoundAt.message. Resource names are
// the caller's own and hold no value.

// notFoundKind is what a call that GitHub answered 404 asked for.
type notFoundKind int

const (
	// notFoundKey: a scope's public key (the scope does not exist).
	notFoundKey notFoundKind = iota
	// notFoundScope: a scope, listed or written to.
	notFoundScope
	// notFoundSecret: a secret, read or deleted.
	notFoundSecret
	// notFoundSelection: an organization secret's selected repositories.
	notFoundSelection
	// notFoundSelectionRepo: one repository of an organization secret's
	// selection.
	notFoundSelectionRepo
	// notFoundNoValue: an organization secret a put without a value
	// would change (seenExisting).
	notFoundNoValue
)

// notFoundAt is GitHub's 404 to a call for the resource named resource (a
// scope's or a secret's resource name).
type notFoundAt struct {
	kind     notFoundKind
	resource string
	repo     int64 // notFoundSelectionRepo's repository id
	err      error
}

// Error is the upstream error's own: the log line of the failure does not
// change.
func (e *notFoundAt) Error() string { return e.err.Error() }

func (e *notFoundAt) Unwrap() error { return e.err }

// message is the NOT_FOUND message a caller sees: fixed but for the
// resource name (at most maxResourceNameLen bytes, as parsed) and a
// repository id.
func (e *notFoundAt) message() string {
	const cannotSee = "or the broker's credentials cannot see it"
	switch e.kind {
	case notFoundKey:
		return "the scope " + e.resource + " (or its public key) was not found on GitHub, " + cannotSee
	case notFoundScope:
		return "the scope " + e.resource + " was not found on GitHub, " + cannotSee
	case notFoundSelection:
		return "the organization secret " + e.resource + " (whose selected repositories were asked for) was not found on GitHub (nor perhaps its organization), " + cannotSee
	case notFoundNoValue:
		return "the organization secret " + e.resource + " was not found on GitHub (nor perhaps its organization), " + cannotSee +
			": a put without value or encrypted_value only changes an existing secret's visibility and selection, and creates nothing; send a value to create it"
	case notFoundSelectionRepo:
		return fmt.Sprintf("the organization secret %s, or repository %d, was not found on GitHub (nor perhaps its organization), %s", e.resource, e.repo, cannotSee)
	default:
		return "the secret " + e.resource + " was not found on GitHub (nor perhaps its scope), " + cannotSee
	}
}

// notFoundIn returns err naming what its call asked for when err is
// GitHub's 404 not named already, else err as it is.
func notFoundIn(err error, kind notFoundKind, resource string, repo int64) error {
	if err == nil || !isStatus(err, http.StatusNotFound) {
		return err
	}
	if _, named := errors.AsType[*notFoundAt](err); named {
		return err
	}
	return &notFoundAt{kind: kind, resource: resource, repo: repo, err: err}
}

// namingUpstream is the service's Upstream with each 404 named by the
// resource its call asked for (notFoundIn). Public keys are fetched by the
// key cache, which names their 404s itself, by the scope as each of the
// callers sharing a fetch spelled it.
type namingUpstream struct{ Upstream }

func (n namingUpstream) ListSecrets(ctx context.Context, s upstream.Scope, p upstream.Page) (upstream.SecretList, error) {
	l, err := n.Upstream.ListSecrets(ctx, s, p)
	return l, notFoundIn(err, notFoundScope, scopeName(s), 0)
}

func (n namingUpstream) GetSecret(ctx context.Context, s upstream.Scope, name string) (upstream.Secret, error) {
	sec, err := n.Upstream.GetSecret(ctx, s, name)
	return sec, notFoundIn(err, notFoundSecret, secretResourceName(s, name), 0)
}

// PutSecretFunc: a PUT creates the secret when it is missing, so its 404
// is the scope's.
func (n namingUpstream) PutSecretFunc(ctx context.Context, s upstream.Scope, name string, body func() (upstream.PutSecretBody, error)) (upstream.Written, error) {
	w, err := n.Upstream.PutSecretFunc(ctx, s, name, body)
	return w, notFoundIn(err, notFoundScope, scopeName(s), 0)
}

func (n namingUpstream) DeleteSecret(ctx context.Context, s upstream.Scope, name string) error {
	return notFoundIn(n.Upstream.DeleteSecret(ctx, s, name), notFoundSecret, secretResourceName(s, name), 0)
}

func (n namingUpstream) ListSelectedRepositories(ctx context.Context, s upstream.Scope, name string, p upstream.Page) (upstream.RepositoryList, error) {
	l, err := n.Upstream.ListSelectedRepositories(ctx, s, name, p)
	return l, notFoundIn(err, notFoundSelection, secretResourceName(s, name), 0)
}

func (n namingUpstream) SetSelectedRepositories(ctx context.Context, s upstream.Scope, name string, ids []int64) error {
	return notFoundIn(n.Upstream.SetSelectedRepositories(ctx, s, name, ids), notFoundSelection, secretResourceName(s, name), 0)
}

func (n namingUpstream) AddSelectedRepository(ctx context.Context, s upstream.Scope, name string, id int64) error {
	return notFoundIn(n.Upstream.AddSelectedRepository(ctx, s, name, id), notFoundSelectionRepo, secretResourceName(s, name), id)
}

func (n namingUpstream) RemoveSelectedRepository(ctx context.Context, s upstream.Scope, name string, id int64) error {
	return notFoundIn(n.Upstream.RemoveSelectedRepository(ctx, s, name, id), notFoundSelectionRepo, secretResourceName(s, name), id)
}

func (n namingUpstream) ListRepositoryOrganizationSecrets(ctx context.Context, s upstream.Scope, p upstream.Page) (upstream.SecretList, error) {
	l, err := n.Upstream.ListRepositoryOrganizationSecrets(ctx, s, p)
	return l, notFoundIn(err, notFoundScope, scopeName(s), 0)
}
