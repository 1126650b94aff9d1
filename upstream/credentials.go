package upstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/secretbroker/secretbroker/upstream/credential"
	"github.com/secretbroker/secretbroker/upstream/pace"
)

// NotInstalledError reports an organization or repository owner that the
// broker's GitHub App is not installed on; requests for other owners keep
// working. Its Account is the owner's name. Find it with errors.As.
type NotInstalledError = credential.NotInstalledError

// A credState is one credential's pacer: each credential (the token, the
// app's JWT, each installation) has its own budget, pauses and metrics
// label.
type credState struct {
	label  string
	pacer  *pace.Pacer
	shared pace.State // the pacer's shared state; nil: its own
}

// credentials are the Client's credential states, by label. There are as
// many as the source has credentials in use: one for a token, and the app
// plus one per installation for a GitHub App, less the installations
// GitHub reported gone (drop).
type credentials struct {
	src         credential.Source
	pacing      Pacing
	sharedState StateFunc // nil: each pacer's state is its own
	metrics     *metrics  // observes each pacer's waits and pauses

	mu     sync.Mutex
	states map[string]*credState
	order  []*credState // in creation order, for the metrics
}

// state returns cred's state, creating its pacer on first use.
func (cs *credentials) state(cred credential.Credential) (*credState, error) {
	label := cred.Label()
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if st, ok := cs.states[label]; ok {
		return st, nil
	}
	pc, err := cs.pacing.paceConfig(cs.sharedState, label)
	if err != nil {
		return nil, err
	}
	pc.Observer = cs.metrics.observer(label)
	p, err := pace.New(pc)
	if err != nil {
		return nil, fmt.Errorf("upstream: pacing: %w", err)
	}
	st := &credState{label: label, pacer: p, shared: pc.State}
	cs.states[label] = st
	cs.order = append(cs.order, st)
	return st, nil
}

// drop forgets st, the state of an installation GitHub reports gone (the
// app was uninstalled from its account: its mint answered 404; GitHub
// never gives its id again, an app installed again is a new
// installation): its pacer, its metrics series, and its shared state,
// whose Close (when it has one, as the broker's Redis states do) ends
// the state's background work. Requests that hold st end on it; should
// the installation be used again, its next request makes a new state.
func (cs *credentials) drop(st *credState) {
	cs.mu.Lock()
	if cs.states[st.label] != st {
		cs.mu.Unlock()
		return // dropped already
	}
	delete(cs.states, st.label)
	cs.order = slices.DeleteFunc(cs.order, func(o *credState) bool { return o == st })
	cs.mu.Unlock()
	cs.metrics.forget(st.label)
	if c, ok := st.shared.(interface{ Close() }); ok {
		c.Close()
	}
}

// dropIfGone drops st when err says its installation is gone.
func (cs *credentials) dropIfGone(st *credState, err error) {
	if _, gone := errors.AsType[*credential.UninstalledError](err); gone {
		cs.drop(st)
	}
}

// all returns every credential state, in creation order.
func (cs *credentials) all() []*credState {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return append([]*credState(nil), cs.order...)
}

// credentialFor returns the credential for r and its state: the one
// r.probe names, else the one for the owner in r's path (an organization,
// or a repository's owner; for a legacy /repositories/{id} path, the
// owner whose repository id the client looked up), else the source's
// probe credential for paths tied to no owner.
func (c *Client) credentialFor(ctx context.Context, r request) (credential.Credential, *credState, error) {
	var cred credential.Credential
	if r.probe {
		cred, _ = c.creds.src.Probe()
	} else if owner, repo := c.ownerOf(r.path); owner != "" {
		var err error
		if cred, err = c.creds.src.For(ctx, owner, repo); err != nil {
			if _, ok := errors.AsType[*NotInstalledError](err); ok {
				return nil, nil, err
			}
			return nil, nil, fmt.Errorf("github: %s %s: not sent: finding the credential: %w", r.method, r.route, credError(err))
		}
	} else {
		cred, _ = c.creds.src.Probe()
	}
	st, err := c.creds.state(cred)
	if err != nil {
		return nil, nil, err
	}
	return cred, st, nil
}

// credError makes the answer GitHub gave to one of the app's own requests
// (an installation lookup, a token mint) an *Error, so that callers see a
// 401, a 5xx or a rate limit there as they see it anywhere: a rate-limit
// refusal is RateLimited, its RetryAfter the time left until the app
// sends that request again (the credential package remembers the
// refusal until then).
func credError(err error) error {
	he, ok := errors.AsType[*credential.HTTPError](err)
	if !ok {
		return err
	}
	e := &Error{Method: he.Method, Route: he.Route, StatusCode: he.StatusCode, Message: http.StatusText(he.StatusCode),
		RateLimited: he.RateLimited, RateLimitReset: he.RateLimitReset}
	if he.RateLimited {
		e.RetryAfter = max(time.Until(he.RetryAt), 0)
	}
	return e
}

// tokenError is what a credential's failure to give r a token means to
// its caller: an installation GitHub no longer has is the app not
// installed on r's owner (its next call looks the owner up again), and an
// answer of GitHub's to the app's own request is an *Error of that
// request's route.
func (c *Client) tokenError(r request, err error) error {
	if _, ok := errors.AsType[*credential.UninstalledError](err); ok {
		owner, _ := c.ownerOf(r.path)
		return &NotInstalledError{Account: owner}
	}
	return credError(err)
}

// ownerOf returns the owner (and, for repository paths, the repository)
// that an escaped request path is about: /orgs/{org}/..., /repos/{owner}/
// {repo}/..., or /repositories/{id}/... for an id the client resolved.
// It returns "" for other paths.
func (c *Client) ownerOf(path string) (owner, repo string) {
	segs := strings.SplitN(strings.TrimPrefix(path, "/"), "/", 4)
	unesc := func(s string) string {
		u, err := url.PathUnescape(s)
		if err != nil {
			return ""
		}
		return u
	}
	switch {
	case len(segs) >= 2 && segs[0] == "orgs":
		return unesc(segs[1]), ""
	case len(segs) >= 3 && segs[0] == "repos":
		return unesc(segs[1]), unesc(segs[2])
	case len(segs) >= 2 && segs[0] == "repositories":
		id, err := strconv.ParseInt(segs[1], 10, 64)
		if err != nil {
			return "", ""
		}
		if v, ok := c.repoOwners.Load(id); ok {
			or := v.([2]string)
			return or[0], or[1]
		}
	}
	return "", ""
}

// PacerStatsOf returns the counters of the pacer of the credential
// labelled label ("token", "app", "installation:<id>"), and whether that
// credential has been used.
func (c *Client) PacerStatsOf(label string) (PacerStats, bool) {
	c.creds.mu.Lock()
	st, ok := c.creds.states[label]
	c.creds.mu.Unlock()
	if !ok {
		return PacerStats{}, false
	}
	s := st.pacer.Stats()
	return PacerStats{
		Requests:     s.Requests,
		Points:       s.Points,
		Queued:       s.Queued,
		InFlight:     s.InFlight,
		PeakInFlight: s.PeakInFlight,
		RateLimited:  s.RateLimited,
	}, true
}

// Credentials returns the labels of the credentials the client has used,
// in the order it first used them.
func (c *Client) Credentials() []string {
	var labels []string
	for _, st := range c.creds.all() {
		labels = append(labels, st.label)
	}
	return labels
}

// newCredentials returns the credential states of cfg's source, whose
// pacers report to m, with the probe credential's state made now, so that
// its metrics show from the start.
func newCredentials(cfg Config, pacing Pacing, m *metrics) (*credentials, error) {
	src := cfg.Credentials
	if src == nil {
		src = credential.Static(string(cfg.Token))
	}
	cs := &credentials{src: src, pacing: pacing, sharedState: cfg.SharedState, metrics: m, states: map[string]*credState{}}
	probe, _ := src.Probe()
	if _, err := cs.state(probe); err != nil {
		// Validate checked what pace checks; this is a bug.
		return nil, err
	}
	return cs, nil
}

// renewAfter401 reports whether a request that GitHub answered with ge
// should be sent again with a renewed credential: on the call's first
// 401, after cred re-read its file or minted a new token. A credential
// that cannot renew leaves the 401 to be reported: GitHub refuses the
// credential.
//
// A renewal that finds the installation gone (its mint answered 404) is
// the owner's *NotInstalledError, returned instead of the 401, and drops
// cst, the installation's state.
func (c *Client) renewAfter401(ctx context.Context, r request, cred credential.Credential, cst *credState, ge *Error, renewed *bool) (bool, error) {
	if ge == nil || ge.StatusCode != 401 || *renewed || ctx.Err() != nil {
		return false, nil
	}
	*renewed = true
	if err := cred.Renew(ctx, r.auth); err != nil {
		if _, gone := errors.AsType[*credential.UninstalledError](err); gone {
			c.creds.drop(cst)
			return false, c.tokenError(r, err)
		}
		if ctxErr := ctx.Err(); ctxErr != nil && errors.Is(err, ctxErr) {
			// The caller's deadline passed waiting for the renewal: its
			// error says so, not the 401.
			return false, err
		}
		c.log.LogAttrs(ctx, slog.LevelWarn, "github refused the credential and renewing it did not help",
			slog.String("credential", cred.Label()),
			slog.String("method", r.method),
			slog.String("route", r.route),
			slog.String("error", c.redact(err, []string{r.auth}).Error()),
		)
		return false, nil
	}
	c.log.LogAttrs(ctx, slog.LevelInfo, "github refused the credential; renewed it, retrying once",
		slog.String("credential", cred.Label()),
		slog.String("method", r.method),
		slog.String("route", r.route),
	)
	return true, nil
}
