package emulator

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/nacl/box"
)

// Limits GitHub applies.
const (
	maxBodyBytes   = 1 << 20 // request bodies larger than this get 413
	maxSecretBytes = 48 << 10
	firstRepoID    = 1296269
	apiV3Prefix    = "/api/v3"
	docsURL        = "https://docs.github.com/rest/actions/secrets"
	versionHeader  = "X-GitHub-Api-Version"
	versionActions = "2022-11-28"
	versionCurrent = "2026-03-10"
)

// Options configures a Server.
type Options struct {
	// Token, when non-empty, is the bearer token every request must carry
	// ("Authorization: Bearer <Token>"); other requests get 401
	// {"message":"Bad credentials"}.
	Token string
	// LegacyRoutes makes the server behave like an old GitHub Enterprise
	// Server: environment secrets are served only at
	// /repositories/{repository_id}/environments/{environment_name}/secrets...
	// and the /repos/{owner}/{repo}/environments/... secret routes answer
	// 404. Without it, it is the other way round. It also takes the route
	// listing a repository's organization secrets away, and any API
	// version under /api/v3 (see the package doc).
	LegacyRoutes bool
	// Limits are the rate limits the server enforces; the zero value
	// enforces none.
	Limits Limits
	// Logger receives one debug line per request (never a secret value);
	// default discards.
	Logger *slog.Logger
	// App, when set, registers a GitHub App (see App): the app routes
	// verify its JWT, and the other routes accept its installation tokens
	// and apply Limits per installation.
	App *App
}

// Server is the emulated GitHub secrets API. It is an http.Handler; create
// it with New. All methods are safe for concurrent use.
type Server struct {
	opts   Options
	log    *slog.Logger
	routes http.Handler // paths at the root
	v3     http.Handler // paths under /api/v3

	mu      sync.Mutex
	orgs    map[string]*org  // by lower-cased login
	repos   map[int64]*repo  // by id
	nextID  int64            // next repository id
	keySeq  uint64           // last key_id handed out
	keys    map[string]*keys // by scope key
	secrets map[string]map[string]*secret
	counts  map[string]int
	total   int
	headers map[string]http.Header
	faults  []*Fault
	stats   Stats                  // Requests unused: total is the count
	lim     limitState             // the rate limits' windows (of everything but installation tokens)
	limBy   map[string]*limitState // the rate limits' windows per installation
	resets  int                    // ResetLimits calls: requests from before are forgotten
	app     appState
	reqSeq  uint64 // last request id handed out

	conns atomic.Int64 // connections accepted, counted by ConnState (conns.go)
}

type org struct {
	login string
	repos map[string]*repo // by lower-cased name
}

type repo struct {
	id      int64
	org     *org
	name    string
	private bool
	envs    map[string]string // lower-cased name -> name
}

func (r *repo) fullName() string { return r.org.login + "/" + r.name }

type keyPair struct {
	id        string
	pub, priv *[32]byte
}

// keys are a scope's key pairs: the current one, and every one it ever
// had, so that values accepted under an older key can still be opened.
type keys struct {
	current *keyPair
	byID    map[string]*keyPair
}

type secret struct {
	name       string // upper-cased
	created    time.Time
	updated    time.Time
	sealed     []byte // the decoded encrypted_value
	keyID      string // the key it was accepted under
	visibility string // org secrets only
	selected   map[int64]bool
}

// New returns an empty server: no organizations, no repositories.
func New(opts Options) *Server {
	s := &Server{
		opts:    opts,
		log:     opts.Logger,
		orgs:    map[string]*org{},
		repos:   map[int64]*repo{},
		nextID:  firstRepoID,
		keys:    map[string]*keys{},
		secrets: map[string]map[string]*secret{},
		counts:  map[string]int{},
		headers: map[string]http.Header{},
		app:     appState{tokens: map[string]*instToken{}},
	}
	if opts.App != nil {
		s.app.installs = append([]Installation(nil), opts.App.Installations...)
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.routes = newRouter(func(w http.ResponseWriter, r *http.Request) { s.serveRoute(w, r, "") })
	s.v3 = http.StripPrefix(apiV3Prefix, newRouter(func(w http.ResponseWriter, r *http.Request) { s.serveRoute(w, r, apiV3Prefix) }))
	// Key ids are decimal strings like GitHub's ("012345678912345678");
	// start each server somewhere random so that ids differ between runs.
	var b [8]byte
	_, _ = rand.Read(b[:])
	s.keySeq = 100_000_000_000_000_000 + binary.BigEndian.Uint64(b[:])%800_000_000_000_000_000
	return s
}

// Fault is a misbehaviour that InjectFault queues for the next Times
// requests matching Route. What a request that takes the fault gets:
//
//   - Drop: the connection is closed without an answer before the request
//     is handled (nothing is stored or deleted). Status, Body, Header and
//     DropAfter are ignored.
//   - DropAfter: the request is handled as usual (a PUT stores its value,
//     a DELETE deletes), and then the connection is closed without the
//     answer. Status, Body and Header are ignored.
//   - Status, or neither Status nor Latency: the canned answer Status
//     (0 means 500), Header and Body instead of normal handling.
//   - Latency alone (Status 0, no drop): normal handling.
//
// Latency is waited first in every case. The client sees a dropped
// connection as a transport error (EOF or connection reset), never as an
// HTTP answer. Beware that Go's http.Transport silently resends a GET,
// HEAD or OPTIONS request (and any request with an Idempotency-Key
// header) on another connection when a reused keep-alive connection is
// closed before any answer; it goes on while it finds reused connections
// (usually once). To make such a client see the drop, use a larger Times
// or a client without keep-alives. PUT and DELETE are never resent.
// ServeHTTP closes the connection by panicking with http.ErrAbortHandler,
// which net/http's server turns into a closed connection; a caller that
// calls ServeHTTP itself (an in-memory transport) recovers that panic.
type Fault struct {
	// Route is a route template such as RoutePutOrgSecret; "" matches every
	// request.
	Route string
	// Status is the response status; 0 means 500, unless Latency is set.
	Status int
	// Body is the response body. When empty, a JSON body with the status
	// text as "message" is sent.
	Body string
	// Header is added to the canned answer.
	Header http.Header
	// Times is how many requests get the fault; 0 (or less) means 1.
	Times int
	// Drop closes the connection without an answer, before handling.
	Drop bool
	// DropAfter handles the request, then closes the connection without
	// the answer: the write landed but the client never hears of it.
	DropAfter bool
	// Latency is how long to wait (a timer) before answering (or
	// dropping). The server's lock is not held meanwhile, and the request
	// is in flight for Limits.MaxConcurrent. If the request's context ends
	// during the wait (the client went away), the request is abandoned
	// without being handled.
	Latency time.Duration
	// Arrived, when set, is sent a value as each request the fault
	// applies to arrives, before anything else is done with it (a send
	// that would block is dropped): a test learns that the request
	// reached GitHub.
	Arrived chan<- struct{}
}

// canned reports whether f answers with Status, Header and Body.
func (f *Fault) canned() bool {
	return !f.Drop && !f.DropAfter && (f.Status != 0 || f.Latency <= 0)
}

// InjectFault queues f. Faults are tried in the order they were queued, and
// a fault is dropped once it has been taken by Times requests. Faults take
// effect after the rate limits (a request the limits refuse does not take
// a fault, so a fault never hides a violation) and before authentication
// and all other checks.
func (s *Server) InjectFault(f Fault) {
	if f.Times <= 0 {
		f.Times = 1
	}
	f.Header = f.Header.Clone()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &f)
}

// takeFault returns the first queued fault matching route ("" when no
// template matched), using it up. Callers hold s.mu.
func (s *Server) takeFault(route string) *Fault {
	for i, f := range s.faults {
		if f.Route != "" && f.Route != route {
			continue
		}
		f.Times--
		if f.Times <= 0 {
			s.faults = slices.Delete(s.faults, i, i+1)
		}
		c := *f
		return &c
	}
	return nil
}

// Count returns how many requests matched route (a template such as
// RouteGetOrgPublicKey) since the server started or ResetCounts was called,
// whatever the answer was: faults, 401, 404 and disabled routes included.
func (s *Server) Count(route string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[route]
}

// TotalRequests returns how many requests the server received since it
// started or ResetCounts was called, matched or not.
func (s *Server) TotalRequests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

// ResetCounts sets every request counter back to zero, Stats included;
// PeakInFlight starts again from the requests in flight now. Faults,
// headers seen, data and the rate limits' state (see ResetLimits) are
// kept.
func (s *Server) ResetCounts() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.counts)
	s.total = 0
	s.stats = Stats{InFlight: s.stats.InFlight, PeakInFlight: s.stats.InFlight}
}

// LastRequestHeader returns a copy of the headers of the most recent request
// that matched route, without Authorization, or nil if there was none.
func (s *Server) LastRequestHeader(route string) http.Header {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.headers[route].Clone()
}

// RotateKey gives the scope a new key pair and returns its key_id. The
// scope is a REST path prefix such as "orgs/octo-org/actions",
// "repos/octo-org/hello-world/agents" or
// "repos/octo-org/hello-world/environments/prod%2Feu". Values stored under
// the old key can still be opened with Open, but PUTs must use the new
// key_id from now on. It returns "" when scope is not a scope path.
func (s *Server) RotateKey(scope string) string {
	key, ok := parseScope(scope)
	if !ok {
		return ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rotate(key).id
}

// Open decrypts the value stored for the secret name in scope with the
// private key it was accepted under. It is a test hook: the server never
// returns or logs a value otherwise.
func (s *Server) Open(scope, name string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key, sec, err := s.lookupSecret(scope, name)
	if err != nil {
		return nil, err
	}
	var kp *keyPair
	if k := s.keys[key]; k != nil {
		kp = k.byID[sec.keyID]
	}
	if kp == nil {
		return nil, fmt.Errorf("emulator: key %s of %s is gone", sec.keyID, key)
	}
	plain, ok := box.OpenAnonymous(nil, sec.sealed, kp.pub, kp.priv)
	if !ok {
		return nil, errors.New("emulator: stored value does not open")
	}
	return plain, nil
}

// SelectedRepositoryIDs returns the ids of the repositories selected for
// the organization secret name in scope, in increasing order; it is empty
// when the secret's visibility is not "selected".
func (s *Server) SelectedRepositoryIDs(scope, name string) ([]int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, sec, err := s.lookupSecret(scope, name)
	if err != nil {
		return nil, err
	}
	return sec.selectedIDs(), nil
}

// lookupSecret finds the secret name in the scope path scope for a test
// hook. s.mu must be held.
func (s *Server) lookupSecret(scope, name string) (string, *secret, error) {
	key, ok := parseScope(scope)
	if !ok {
		return "", nil, fmt.Errorf("emulator: %q is not a scope path", scope)
	}
	sec := s.secrets[key][strings.ToUpper(name)]
	if sec == nil {
		return "", nil, fmt.Errorf("emulator: no secret %q in %s", name, key)
	}
	return key, sec, nil
}

func (sec *secret) selectedIDs() []int64 {
	ids := make([]int64, 0, len(sec.selected))
	for id := range sec.selected {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// keysFor returns the scope's keys, creating the first pair on first use.
// Callers hold s.mu.
func (s *Server) keysFor(scopeKey string) *keys {
	k := s.keys[scopeKey]
	if k == nil {
		s.rotate(scopeKey)
		k = s.keys[scopeKey]
	}
	return k
}

// rotate adds a new current key pair to the scope. Callers hold s.mu.
func (s *Server) rotate(scopeKey string) *keyPair {
	pub, priv, err := box.GenerateKey(rand.Reader)
	if err != nil {
		// crypto/rand does not fail on supported platforms.
		panic("emulator: generating a key pair: " + err.Error())
	}
	s.keySeq++
	kp := &keyPair{id: strconv.FormatUint(s.keySeq, 10), pub: pub, priv: priv}
	k := s.keys[scopeKey]
	if k == nil {
		k = &keys{byID: map[string]*keyPair{}}
		s.keys[scopeKey] = k
	}
	k.current = kp
	k.byID[kp.id] = kp
	return kp
}

// ServeHTTP serves the emulated API. A request is routed (see the Route
// constants) and goes through these steps:
//
//  1. It is counted (TotalRequests, Count, Stats.Requests), its headers
//     are kept for LastRequestHeader, and it is in flight from now on.
//  2. The rate limits (see Limits) may refuse it: a running penalty,
//     MaxConcurrent, PointsPerMinute, then PrimaryPerHour. A refused
//     request goes straight to step 7.
//  3. It takes the first queued fault that matches, if any.
//  4. A PUT's body is read; then the fault's Latency is waited.
//  5. A Drop fault closes the connection here.
//  6. A canned fault answers; otherwise the request is handled:
//     authentication, route (an unknown path, an {app} other than actions
//     and agents, or a {repository_id} that is not an id is not found),
//     API version, legacy routes, body size, and the route's handler. A
//     DropAfter fault then closes the connection.
//  7. A 304 answer gives back its primary quota; the answer gets its
//     X-GitHub-Request-Id and X-RateLimit-* headers and is written, and
//     the request is no longer in flight.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.EscapedPath(), apiV3Prefix+"/") {
		s.v3.ServeHTTP(w, r)
		return
	}
	s.routes.ServeHTTP(w, r)
}

// serveRoute serves a routed request (see newRouter) whose path is below
// apiPrefix, "" or "/api/v3".
func (s *Server) serveRoute(w http.ResponseWriter, r *http.Request, apiPrefix string) {
	m, ok := matchOf(r)
	s.mu.Lock()
	s.total++
	if m.Route != "" {
		s.counts[m.Route]++
		h := r.Header.Clone()
		h.Del("Authorization")
		s.headers[m.Route] = h
	}
	s.enter()
	adm := s.admit(time.Now(), r.Method, s.limitKey(r))
	if m.Route == RouteGetRateLimit && adm.primary && adm.st.primaryUsed > 0 {
		// GitHub does not count GET /rate_limit against the primary quota.
		adm.st.primaryUsed--
		adm.primary = false
	}
	var fault *Fault
	if adm.refusal == nil {
		fault = s.takeFault(m.Route)
	}
	s.mu.Unlock()
	defer s.leave()
	defer s.cpuFinish(adm) // also when a fault drops the connection
	if fault != nil && fault.Arrived != nil {
		select {
		case fault.Arrived <- struct{}{}:
		default:
		}
	}

	esc := apiPrefix + r.URL.EscapedPath()
	resp := adm.refusal
	if resp == nil {
		resp = s.serve(r, m, ok, fault, esc)
	}
	s.mu.Lock()
	s.finish(resp, adm)
	s.mu.Unlock()
	resp.write(w)
	s.logRequest(r, m, esc, resp.status, fault != nil, adm.refusal != nil, "")
}

// serve answers a request the rate limits accepted, applying its fault;
// esc is its escaped path, /api/v3 included. When the fault drops the
// connection, it does not return.
func (s *Server) serve(r *http.Request, m match, matched bool, fault *Fault, esc string) *response {
	body, bodyErr := readBody(r)
	if fault != nil && fault.Latency > 0 && sleep(r.Context(), fault.Latency) != nil {
		s.abort(r, m, esc, "client gone during injected latency", false)
	}
	switch {
	case fault == nil:
	case fault.Drop:
		s.abort(r, m, esc, "fault: dropped before handling", true) // does not return
	case fault.DropAfter:
		resp := s.answer(r, m, matched, body, bodyErr, esc)
		s.abort(r, m, esc, "fault: dropped after handling, status "+strconv.Itoa(resp.status), true) // does not return
	case fault.canned():
		return faultResponse(fault)
	}
	// No fault, or a latency-only one.
	return s.answer(r, m, matched, body, bodyErr, esc)
}

// sleep waits d (d > 0) on a timer, or until ctx ends, and then returns
// ctx.Err(): nil when the whole wait passed.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// abort closes the connection without an answer and does not return;
// dropped counts it in Stats.Dropped.
func (s *Server) abort(r *http.Request, m match, esc, why string, dropped bool) {
	if dropped {
		s.mu.Lock()
		s.stats.Dropped++
		s.mu.Unlock()
	}
	s.logRequest(r, m, esc, 0, true, false, why)
	panic(http.ErrAbortHandler)
}

// logRequest writes the debug line of one request; status 0 means no
// answer was sent.
func (s *Server) logRequest(r *http.Request, m match, esc string, status int, fault, limited bool, note string) {
	attrs := []slog.Attr{
		slog.String("method", r.Method), slog.String("path", esc),
		slog.String("route", m.Route), slog.Int("status", status),
		slog.Bool("fault", fault), slog.Bool("rate_limited", limited),
	}
	if note != "" {
		attrs = append(attrs, slog.String("note", note))
	}
	if tp := traceparent(r.Header); tp != "" {
		attrs = append(attrs, slog.String("traceparent", tp))
	}
	s.log.LogAttrs(r.Context(), slog.LevelDebug, "emulator request", attrs...)
}

// traceparent returns the request's W3C traceparent header, so that the
// emulator's line can be matched to the broker's trace; "" when there is
// none or it is not of traceparent's form (hex digits and dashes, at most
// 64 characters: it is logged as sent).
func traceparent(h http.Header) string {
	tp := h.Get("Traceparent")
	if tp == "" || len(tp) > 64 {
		return ""
	}
	for _, c := range tp {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') && c != '-' {
			return ""
		}
	}
	return tp
}

// readBody reads a PUT's body. A body that is too large or cannot be read
// gives the error answer to send once the request is otherwise valid.
func readBody(r *http.Request) ([]byte, *response) {
	if r.Method != http.MethodPut || r.Body == nil {
		return nil, nil
	}
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxBodyBytes))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, errorResponse(http.StatusRequestEntityTooLarge, "Request body too large: the limit is 1 MiB")
		}
		return nil, errorResponse(http.StatusBadRequest, "Problems reading the request body")
	}
	return body, nil
}

// answer works out the response to one request: authentication, route
// (matched says whether matchOf found a valid one), API version and
// legacy routes are checked, then bodyErr (from readBody) is answered,
// then the handler runs.
func (s *Server) answer(r *http.Request, m match, matched bool, body []byte, bodyErr *response, esc string) *response {
	if isAppRoute(m.Route) {
		return s.answerApp(r, m)
	}
	if !s.authorized(r) {
		return errorResponse(http.StatusUnauthorized, "Bad credentials")
	}
	if resp := s.installationScope(r, m); resp != nil {
		return resp
	}
	if !matched {
		return notFound()
	}
	ghes := strings.HasPrefix(esc, apiV3Prefix+"/")
	if !s.served(m, ghes) {
		return notFound()
	}
	if !s.versionOK(m, ghes, r.Header.Get(versionHeader)) {
		return errorResponse(http.StatusBadRequest, "Unsupported API version")
	}
	if bodyErr != nil {
		return bodyErr
	}
	req := &request{m: m, r: r, body: body, base: baseURL(r, esc), path: r.URL.EscapedPath(), ghes: ghes}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.handle(req)
}

// authorized checks the bearer token: Options.Token, or an installation
// token of Options.App that has not expired. Without either, every
// request is authorized.
func (s *Server) authorized(r *http.Request) bool {
	if s.opts.Token == "" && s.opts.App == nil {
		return true
	}
	tok, ok := bearer(r)
	if !ok {
		return false
	}
	return s.tokenOK(tok) || s.authorizedApp(r)
}

// served reports whether the server has m's route, as the reference
// pages of the GitHub it plays describe it (ghes: the request came under
// /api/v3):
//   - environment secrets at /repositories/{repository_id}/... with
//     Options.LegacyRoutes, at /repos/{owner}/{repo}/... without;
//   - the old GitHub Enterprise Server (LegacyRoutes) has no route listing
//     a repository's organization secrets;
//   - GitHub Enterprise Server (under /api/v3) has no Agents secrets:
//     GitHub documents them on github.com only.
func (s *Server) served(m match, ghes bool) bool {
	switch {
	case m.isEnv() && m.isLegacy() != s.opts.LegacyRoutes:
		return false
	case m.Route == RouteListRepoOrgSecrets && s.opts.LegacyRoutes:
		return false
	case m.App == appAgents && ghes:
		return false
	}
	return true
}

// versionOK applies GitHub's API version rule. Agents routes need
// 2026-03-10. Under /api/v3 (ghes), GitHub Enterprise Server 3.21's
// Actions routes take no version or 2026-03-10, its only documented one,
// and the old GitHub Enterprise Server (LegacyRoutes), whose reference
// predates API versions, takes any version it would ignore: none,
// 2022-11-28 or 2026-03-10. github.com's Actions routes take no version,
// 2022-11-28 or 2026-03-10.
func (s *Server) versionOK(m match, ghes bool, v string) bool {
	switch {
	case m.App == appAgents:
		return v == versionCurrent
	case ghes && !s.opts.LegacyRoutes:
		return v == "" || v == versionCurrent
	}
	return v == "" || v == versionActions || v == versionCurrent
}

// baseURL is the absolute URL of the API root as the client addressed it:
// scheme, Host, any prefix a wrapping handler stripped, and /api/v3 when
// the request used it. esc is the request's escaped path with /api/v3
// when it had it.
func baseURL(r *http.Request, esc string) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	mount := ""
	uri, _, _ := strings.Cut(r.RequestURI, "?")
	if strings.HasPrefix(uri, "/") && strings.HasSuffix(uri, esc) {
		mount = uri[:len(uri)-len(esc)]
	}
	return scheme + "://" + r.Host + mount + strings.TrimSuffix(esc, r.URL.EscapedPath())
}
