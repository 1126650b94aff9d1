package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/secretbroker/secretbroker/service"
	"github.com/secretbroker/secretbroker/service/access"
	"github.com/secretbroker/secretbroker/service/audit"
	"github.com/secretbroker/secretbroker/service/identity"
	"github.com/secretbroker/secretbroker/upstream"
)

// frontDoor admits every call to SecretService before its request is even
// read: it authenticates the caller, applies the inbound limits, and tags
// the call's context with the caller, for the service's policy and audit
// (identity.WithCaller) and for the pacer's fair queues
// (upstream.WithCaller). Then it reads the request within the bound on
// bytes in flight.
//
// It wraps the service's method handlers rather than being an interceptor
// because grpc-go decodes a unary request before the interceptors run: as
// a wrapper it refuses an unauthenticated or over-limit call without
// reading its request. A request over maxRequestBytes is INVALID_ARGUMENT:
// grpc-go's own answer to a message over its receive limit,
// RESOURCE_EXHAUSTED, would tell clients to retry what can never succeed,
// so the transport's limit (maxTransportBytes) sits well above ours and
// only a request larger still gets grpc-go's answer.
type frontDoor struct {
	keys callerKeys
	// required is whether every call needs credentials (authentication is
	// configured); without it calls are served unauthenticated, known to
	// the pacer by their IP address.
	required       bool
	tokens         *identity.Tokens      // nil: no static bearer tokens
	jwt            *identity.JWTVerifier // nil: no JWTs
	reflectionOpen bool                  // reflection without credentials
	limits         *callLimits
	shed           *cpuShed      // nil: no adaptive bound (shedding.go)
	working        *workingCalls // nil: no bound on calls at work (working.go)
	// grpcBytes bounds the bytes of the gRPC listener's requests in
	// progress; the gateway's calls are paid on the HTTP listener's
	// budget (admitHTTP), not here.
	grpcBytes *byteBudget
	refusals  *refusalCounter // nil: not counted
	log       *slog.Logger
	// loops are the goroutines newFrontDoor started (the policy file's
	// watcher and SIGHUP's), which end with its ctx.
	loops sync.WaitGroup
}

// errCredentials is the one answer to a call without valid credentials; it
// never says which check failed, and never holds what the caller sent.
func errCredentials() error {
	return status.Error(codes.Unauthenticated, "valid credentials are required: a client certificate or an Authorization bearer token")
}

// errJWTKeys is the answer to a call whose JWT could not be checked yet:
// the issuer's keys are not loaded (identity.StartJWTVerifier). It is not
// the caller's fault, and the call may succeed later: UNAVAILABLE with a
// RetryInfo of retry.
func errJWTKeys(retry time.Duration) error {
	return service.WithRetryInfo(status.New(codes.Unavailable,
		"the JWT issuer's keys are not loaded yet, so no JWT can be checked; try again later"), retry).Err()
}

// refusalKind is the refusal counter's reason for an error of identify.
func refusalKind(err error) string {
	if status.Code(err) == codes.Unavailable {
		return refusedJWTKeys
	}
	return refusedCredentials
}

// refusalMessage is the debug log line of a refusal of refusalKind.
func refusalMessage(kind string) string {
	if kind == refusedJWTKeys {
		return "call refused: its JWT cannot be checked yet (the issuer's keys are not loaded)"
	}
	return "call refused: no valid credentials"
}

// authenticate returns the caller proven by the call's credentials ("" when
// authentication is not configured and none was proven), the key the
// pacer queues the call under, and whether the JSON gateway made the call.
func (f *frontDoor) authenticate(ctx context.Context) (caller, fairness string, viaGateway bool, err error) {
	// Each key is looked up alone: a copy of all the metadata
	// (metadata.FromIncomingContext) would cost a map and a slice per key
	// on every call.
	md := func(key string) []string { return metadata.ValueFromIncomingContext(ctx, key) }
	viaGateway = f.keys.fromGateway(md(mdGateway))

	var addr, certCaller string
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		addr = hostOf(p.Addr.String())
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.VerifiedChains) > 0 && len(ti.State.VerifiedChains[0]) > 0 {
			certCaller, _ = identity.CertificateCaller(ti.State.VerifiedChains[0][0])
		}
	}
	if viaGateway {
		// The gateway sets each of these at most once; more than one value
		// means someone else added one, and nothing is believed.
		var ok1, ok2 bool
		addr, ok1 = atMostOne(md(mdCaller))
		certCaller, ok2 = atMostOne(md(mdX509))
		if !ok1 || !ok2 {
			return "", "", false, errCredentials()
		}
	}
	caller, fairness, err = f.identify(ctx, md("authorization"), certCaller, addr)
	return caller, fairness, viaGateway, err
}

// identify returns the caller proven by the authorization values (at most
// one "Bearer TOKEN") or else the verified client certificate's caller, and
// the pacer's key for the call; without authentication configured, no
// caller and the client's address.
func (f *frontDoor) identify(ctx context.Context, auth []string, certCaller, addr string) (caller, fairness string, err error) {
	if !f.required {
		return "", addr, nil
	}
	switch {
	case len(auth) > 1:
		return "", "", errCredentials()
	case len(auth) == 1:
		tok, ok := bearer(auth[0])
		if !ok {
			return "", "", errCredentials()
		}
		if caller, ok := f.tokenCaller(tok); ok {
			return caller, caller, nil
		}
		if f.jwt != nil {
			caller, err := f.jwt.Authenticate(ctx, tok)
			if err == nil {
				return caller, caller, nil
			}
			if nl, ok := errors.AsType[*identity.KeysNotLoadedError](err); ok {
				// Fail closed, but not as the caller's fault.
				f.log.DebugContext(ctx, "bearer JWT not checked", slog.Any("error", err))
				return "", "", errJWTKeys(nl.RetryAfter)
			}
			f.log.DebugContext(ctx, "bearer token refused", slog.Any("error", err))
		}
		return "", "", errCredentials()
	case certCaller != "":
		return certCaller, certCaller, nil
	}
	return "", "", errCredentials()
}

// tokenCaller returns the caller whose static token tok is, if any.
func (f *frontDoor) tokenCaller(tok string) (string, bool) {
	if f.tokens == nil {
		return "", false
	}
	return f.tokens.Authenticate(tok)
}

// bearer returns the token of an "Authorization: Bearer TOKEN" value; the
// scheme is case-insensitive.
func bearer(v string) (string, bool) {
	const scheme = "bearer "
	if len(v) <= len(scheme) || !strings.EqualFold(v[:len(scheme)], scheme) {
		return "", false
	}
	tok := strings.TrimSpace(v[len(scheme):])
	return tok, tok != ""
}

// atMostOne returns the one value of a metadata key ("" when it has
// none), and false when it has more than one.
func atMostOne(v []string) (string, bool) {
	switch len(v) {
	case 0:
		return "", true
	case 1:
		return v[0], true
	}
	return "", false
}

// admit authenticates a call and counts it in; release must be called when
// it ends. listener is the one the call came in on: http for the gateway's
// calls, which reach this side in process; fairness is the caller's key
// for the pacer and the inbound limits.
func (f *frontDoor) admit(ctx context.Context, method string) (_ context.Context, listener, fairness string, _ func(), _ error) {
	caller, fairness, viaGateway, err := f.authenticate(ctx)
	admit, listener := f.limits.admit, listenerGRPC
	if viaGateway {
		admit = f.limits.admitUnrated // the gateway took the token (admitHTTP)
		listener = listenerHTTP
	}
	if err != nil {
		kind := refusalKind(err)
		f.refusals.add(ctx, listener, kind)
		f.log.DebugContext(ctx, refusalMessage(kind), slog.String("method", method), slog.String("listener", listener))
		return nil, listener, "", nil, err
	}
	release, refused := admit(fairness)
	if refused != nil {
		f.refusals.add(ctx, listener, refused.kind)
		f.log.DebugContext(ctx, "call refused by the inbound limits", slog.String("method", method),
			slog.String("caller", caller), slog.String("reason", refused.reason))
		return nil, listener, "", nil, exhausted(refused.reason, refused.retryAfter)
	}
	if release, err = f.shedAdmit(ctx, listener, method, caller, release); err != nil {
		return nil, listener, "", nil, err
	}
	if ctx, release, err = f.workAdmit(ctx, listener, method, caller, fairness, release); err != nil {
		return nil, listener, "", nil, err
	}
	if caller != "" {
		ctx = identity.WithCaller(ctx, caller)
	}
	// Without credentials the fairness key is the client's address
	// (identify; the HTTP client's through the gateway): the bound on one
	// caller's unfinished operations counts the call's by it too, as the
	// limits above count its calls.
	return upstream.WithCaller(ctx, fairness), listener, fairness, release, nil
}

// exhausted is RESOURCE_EXHAUSTED with a RetryInfo of d, rounded up to a
// whole second.
func exhausted(msg string, d time.Duration) error {
	return service.WithRetryInfo(status.New(codes.ResourceExhausted, msg+"; try again later"), d).Err()
}

// errTooLarge is the answer to a request over maxRequestBytes.
func errTooLarge() error {
	return status.Errorf(codes.InvalidArgument, "the request is larger than the %d MiB limit; split the batch", maxRequestBytes>>20)
}

// wrap returns desc with every method handler behind the front door.
func (f *frontDoor) wrap(desc *grpc.ServiceDesc) *grpc.ServiceDesc {
	out := *desc
	out.Methods = make([]grpc.MethodDesc, len(desc.Methods))
	for i, m := range desc.Methods {
		method := "/" + desc.ServiceName + "/" + m.MethodName
		handler := m.Handler
		out.Methods[i] = grpc.MethodDesc{
			MethodName: m.MethodName,
			Handler: func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
				ctx, listener, fairness, release, err := f.admit(ctx, method)
				if err != nil {
					return nil, err
				}
				defer release()
				var paid *bodyReservation
				defer func() {
					if paid != nil {
						paid.release()
					}
				}()
				read := func(v any) error {
					if err := dec(v); err != nil {
						return err
					}
					m, ok := v.(proto.Message)
					if !ok {
						return nil
					}
					n := int64(proto.Size(m))
					if n > maxRequestBytes {
						return errTooLarge()
					}
					if listener == listenerHTTP || f.grpcBytes == nil {
						// A JSON call's request is paid on the HTTP
						// listener's budget, which localConn has just cut
						// to this request (keepDecoded).
						return nil
					}
					if paid, err = f.grpcBytes.reserve(fairness, n); err != nil {
						f.refusals.add(ctx, listener, refusedBytes)
						return err
					}
					return nil
				}
				return handler(srv, ctx, read, interceptor)
			},
		}
	}
	return &out
}

// streamGuard authenticates reflection calls when authentication is
// configured, unless reflection is open to everyone. The health service is
// always open.
func (f *frontDoor) streamGuard() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if f.required && !f.reflectionOpen && strings.HasPrefix(info.FullMethod, "/grpc.reflection.") {
			if _, _, _, err := f.authenticate(ss.Context()); err != nil {
				return err
			}
		}
		return handler(srv, ss)
	}
}

// newFrontDoor builds the front door from the configuration: the caller
// authenticators, the inbound limits and, when callers authenticate, the
// policy that authorizes them (nil when they do not: every call is then
// allowed). The policy file is watched until ctx is done and reloaded on
// SIGHUP; f.loops ends once ctx is done.
func newFrontDoor(ctx context.Context, cfg Config, logger *slog.Logger) (*frontDoor, service.Authorizer, error) {
	keys, err := newCallerKeys()
	if err != nil {
		return nil, nil, err
	}
	f := &frontDoor{
		keys:           keys,
		required:       cfg.Authenticates(),
		reflectionOpen: cfg.ReflectionUnauthenticated,
		limits:         newCallLimits(cfg.CallerRPS, cfg.CallerBurst, cfg.CallerMaxConcurrent, cfg.MaxConcurrentCalls),
		shed:           newShed(cfg),
		working:        newWorkingCalls(cfg.MaxWorkingCalls, overloadWorkingPerCPU*runtime.GOMAXPROCS(0), cfg.MaxWaitingCalls),
		grpcBytes:      newByteBudget(cfg.MaxInflightBytes),
		log:            logger.With(slog.String("component", "frontdoor")),
	}
	if cfg.CallersFile != "" {
		if f.tokens, err = identity.LoadTokens(cfg.CallersFile); err != nil {
			return nil, nil, fmt.Errorf("--callers-file: %w", err)
		}
		logger.Info("bearer-token callers loaded", slog.String("file", cfg.CallersFile), slog.Int("callers", f.tokens.Len()))
	}
	if cfg.JWTIssuer != "" {
		// A JWKS URL unreachable at start does not stop it: its keys load
		// in the background, JWTs are refused (UNAVAILABLE) and the broker
		// is not ready until they do (run). A malformed URL does stop it.
		f.jwt, err = identity.StartJWTVerifier(ctx, identity.JWTConfig{
			Issuer: cfg.JWTIssuer, Audience: cfg.JWTAudience, JWKSURL: cfg.JWTJWKSURL, JWKSFile: cfg.JWTJWKSFile,
			Logger: logger.With(slog.String("component", "jwt")),
		})
		if err != nil {
			return nil, nil, fmt.Errorf("JWT bearer tokens: %w", err)
		}
	}
	if !f.required {
		return f, nil, nil
	}
	if cfg.PolicyFile == "" {
		logger.Warn("no --policy-file: every authenticated call is denied until a policy allows it")
		return f, access.DenyAll(), nil
	}
	w, err := access.NewWatcher(cfg.PolicyFile, logger.With(slog.String("component", "policy")))
	if err != nil {
		return nil, nil, fmt.Errorf("--policy-file: %w", err)
	}
	logger.Info("policy loaded", slog.String("file", cfg.PolicyFile), slog.Int("rules", w.Policy().Rules()))
	f.loops.Go(func() { w.Run(ctx, policyPollInterval) })
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	f.loops.Go(func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				_ = w.Reload() // logs its own outcome
			}
		}
	})
	return f, w, nil
}

// openAudit opens the audit trail of --audit-log, if any. A trail that
// cannot be written does not stop the broker: it serves reads and refuses
// every change until the trail works. An existing file open to others
// than its owner that cannot be made 0600 (an *audit.ModeError) does: it
// will not come right by itself, as a missing directory or mount may.
func openAudit(cfg Config, logger *slog.Logger) (*audit.Log, error) {
	if cfg.AuditLog == "" {
		return nil, nil
	}
	var key []byte
	if cfg.AuditHMACKeyFile != "" {
		var err error
		if key, err = audit.ReadKey(cfg.AuditHMACKeyFile); err != nil {
			return nil, err
		}
	}
	trail := audit.Open(cfg.AuditLog, key)
	if err := trail.Err(); err != nil {
		if _, ok := errors.AsType[*audit.ModeError](err); ok {
			_ = trail.Close()
			return nil, fmt.Errorf("--audit-log: %w", err)
		}
		logger.Error("the audit log cannot be written: changes are refused until it can; reads are served", slog.Any("error", err))
	}
	return trail, nil
}

// bodyCostFactor is what a gateway request body costs against the bound on
// bytes in progress, per byte, while it is read and decoded: of the body,
// the gateway's message decoded from it, its wire form and the gRPC
// side's message decoded from that, up to three are alive at once (the
// body is gone once drained, before the wire form is made: readBody).
// Once the gRPC side has its message the gateway's copies are garbage:
// the call keeps its request, once, and localConn cuts the reservation to
// that (keepDecoded), as much as a gRPC call of the same request holds.
const bodyCostFactor = 3

// byteBudget is the bound on the bytes of requests in progress on one
// listener (--max-inflight-bytes): the gRPC listener's requests, or the
// JSON gateway's (a JSON call is paid on the HTTP listener's budget only).
// Each caller may hold at most share of it, so that one caller's large
// calls, however long they run, always leave the others room. A request
// that does not fit is refused at once, never queued.
type byteBudget struct {
	max, share int64

	mu    sync.Mutex
	total int64            // held by all callers
	held  map[string]int64 // by caller (the pacer's key); no entry: none
}

// newByteBudget returns a budget of maxBytes, of which a caller may hold
// half, or the largest request when half is less (the whole budget when
// it is smaller than twice the largest request).
func newByteBudget(maxBytes int64) *byteBudget {
	return &byteBudget{max: maxBytes, share: min(maxBytes, max(maxBytes/2, maxRequestBytes)), held: map[string]int64{}}
}

// cost is what a JSON body of declared length n (-1: unknown) costs while
// it is read and decoded: n, or the largest allowed when it is unknown or
// larger, times bodyCostFactor, and never more than a caller's share, so
// that a caller holding nothing else can always send the largest body.
func (b *byteBudget) cost(n int64) int64 {
	if n < 0 || n > maxRequestBytes {
		n = maxRequestBytes // the gateway refuses more than that itself
	}
	return b.fit(n * bodyCostFactor)
}

// fit is n, capped at a caller's share.
func (b *byteBudget) fit(n int64) int64 { return max(min(n, b.share), 1) }

// reserve takes n bytes (capped at a caller's share) for caller and
// returns them as a reservation the caller gives back (release) or cuts
// (shrink), or RESOURCE_EXHAUSTED with a RetryInfo (429 with Retry-After
// through the gateway) when the budget, or the caller's share of it,
// lacks them.
func (b *byteBudget) reserve(caller string, n int64) (*bodyReservation, error) {
	n = b.fit(n)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.held[caller]+n > b.share {
		return nil, exhausted("the caller holds its share of the broker's limit of request bytes in progress", time.Second)
	}
	if b.total+n > b.max {
		return nil, exhausted("the broker is at its limit of request bytes in progress", time.Second)
	}
	b.total += n
	b.held[caller] += n
	return &bodyReservation{b: b, caller: caller, held: n}, nil
}

// give returns n bytes caller held; b.mu is held.
func (b *byteBudget) give(caller string, n int64) {
	b.total -= n
	if b.held[caller] -= n; b.held[caller] <= 0 {
		delete(b.held, caller)
	}
}

// inUse returns the bytes held by all callers and by caller.
func (b *byteBudget) inUse(caller string) (total, callers int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.total, b.held[caller]
}

// bodyReservation is a request's bytes held from a byteBudget. It only
// shrinks: a JSON body of unknown length (chunked) costs the most a body
// may until it has been read, then what it is, and once the gRPC side has
// decoded it, what the call keeps: the request, once.
type bodyReservation struct {
	b      *byteBudget
	caller string
	mu     sync.Mutex
	held   int64
}

// shrink gives back what the reservation holds beyond n bytes (n 0: all
// of it).
func (r *bodyReservation) shrink(n int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n < r.held {
		r.b.mu.Lock()
		r.b.give(r.caller, r.held-n)
		r.b.mu.Unlock()
		r.held = n
	}
}

// release gives back all the reservation holds; more calls do nothing.
func (r *bodyReservation) release() { r.shrink(0) }

// bodyBudgetKey is the context key of the byteBudget that admitHTTP hands
// the gateway with a request that has a body.
type bodyBudgetKey struct{}

// withBodyBudget returns r, or, when r has a body, r with b in its context.
// A request without one never reads the budget, and costs no copy of r.
func withBodyBudget(r *http.Request, b *byteBudget) *http.Request {
	if !hasBody(r) {
		return r
	}
	return r.WithContext(context.WithValue(r.Context(), bodyBudgetKey{}, b))
}

// bodyBudgetFrom returns the budget admitHTTP put in ctx, or fallback when
// there is none (a gateway serving without the front door, in tests).
func bodyBudgetFrom(ctx context.Context, fallback *byteBudget) *byteBudget {
	if b, ok := ctx.Value(bodyBudgetKey{}).(*byteBudget); ok {
		return b
	}
	return fallback
}

// admitHTTP is the front door's HTTP side, in front of the JSON gateway:
// before a body is read it authenticates the caller (401 without valid
// credentials), takes a token from the caller's rate (the same limiter as
// the gRPC side's, which then takes none for the gateway's calls) and
// counts the call against the caller's and all callers' calls in progress
// (429 with Retry-After over a limit). It takes the cost of the request's
// body from the HTTP listener's bound on bytes of requests in progress
// (byteBudget), under the caller, before any of it is read (429 with
// Retry-After over the bound or over the caller's share of it), and hands
// the gateway the reservation, which it cuts to the body's size once read
// and localConn to the decoded request once the gRPC side has it. A JSON
// flood is thus refused before its bodies cost memory or CPU, and one
// caller's large call never holds the budget of the others. Paths outside
// /v1/ (/healthz, /openapi.json) are open to everyone; no route there
// takes a body and the gateway never reads one. The gRPC side checks the
// call again with the credentials the gateway forwards.
func (f *frontDoor) admitHTTP(next http.Handler, limits *callLimits, maxBytes int64) http.Handler {
	budget := newByteBudget(maxBytes)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/v1/") {
			next.ServeHTTP(w, withBodyBudget(r, budget))
			return
		}
		var cert string
		if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
			cert, _ = identity.CertificateCaller(r.TLS.VerifiedChains[0][0])
		}
		caller, fairness, err := f.identify(r.Context(), r.Header.Values("Authorization"), cert, hostOf(r.RemoteAddr))
		if err != nil {
			kind := refusalKind(err)
			f.refusals.add(r.Context(), listenerHTTP, kind)
			f.log.DebugContext(r.Context(), refusalMessage(kind), slog.String("method", r.Method), slog.String("listener", listenerHTTP))
			if st := status.Convert(err); st.Code() == codes.Unavailable {
				retry, _ := retryDelay(err)
				writeHTTPError(w, http.StatusServiceUnavailable, st, retry)
				return
			}
			writeHTTPError(w, http.StatusUnauthorized, status.New(codes.Unauthenticated, status.Convert(err).Message()), 0)
			return
		}
		refuse := func(refused *refusal) {
			f.refusals.add(r.Context(), listenerHTTP, refused.kind)
			f.log.DebugContext(r.Context(), "call refused by the inbound limits", slog.String("method", r.Method),
				slog.String("listener", listenerHTTP), slog.String("caller", caller), slog.String("reason", refused.reason))
			writeHTTPError(w, http.StatusTooManyRequests, status.Convert(exhausted(refused.reason, refused.retryAfter)), refused.retryAfter)
		}
		if f.limits != nil {
			if refused := f.limits.allowRate(fairness); refused != nil {
				refuse(refused)
				return
			}
		}
		release, refused := limits.admit(fairness)
		if refused != nil {
			refuse(refused)
			return
		}
		defer release()
		if hasBody(r) && (r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodPatch) {
			// The methods whose routes read a body: its cost is taken
			// here, before tracing and routing, so that a flood of large
			// bodies is refused at its cheapest. The gateway cuts it to
			// the body read, or to nothing for a route that takes none.
			paid, err := budget.reserve(fairness, budget.cost(r.ContentLength))
			if err != nil {
				f.refusals.add(r.Context(), listenerHTTP, refusedBytes)
				writeHTTPError(w, http.StatusTooManyRequests, status.Convert(err), time.Second)
				return
			}
			defer paid.release()
			r = r.WithContext(context.WithValue(r.Context(), bodyPaidKey{}, paid))
		}
		next.ServeHTTP(w, withBodyBudget(r, budget))
	})
}

// bodyPaidKey is the context key of the reservation admitHTTP took for a
// request's body: the gateway reads the body without taking its cost
// again, and cuts the reservation to what it read.
type bodyPaidKey struct{}

// bodyPaid returns the reservation admitHTTP took for ctx's request
// body, nil when it took none.
func bodyPaid(ctx context.Context) *bodyReservation {
	paid, _ := ctx.Value(bodyPaidKey{}).(*bodyReservation)
	return paid
}

// keepDecoded cuts the reservation taken for ctx's JSON request body, if
// any, to n bytes: the request the gRPC side has decoded from it, all a
// JSON call keeps of its request from then on (bodyCostFactor). localConn
// calls it with the gateway's context once the gRPC side has the request.
func keepDecoded(ctx context.Context, n int) {
	if paid := bodyPaid(ctx); paid != nil {
		paid.shrink(paid.b.fit(int64(n)))
	}
}

// setChallenge sets the WWW-Authenticate header a 401 carries: it names
// the scheme the broker wants (RFC 9110, 11.6.1).
func setChallenge(h http.Header) {
	h.Set("WWW-Authenticate", `Bearer realm="secretbroker"`)
}

// writeHTTPError writes the gateway's JSON error shape, with Retry-After
// when retry is positive (rounded up to whole seconds).
func writeHTTPError(w http.ResponseWriter, httpStatus int, st *status.Status, retry time.Duration) {
	w.Header().Set("Content-Type", "application/json")
	if retry > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((retry+time.Second-1)/time.Second)))
	}
	if st.Code() == codes.Unauthenticated {
		setChallenge(w.Header())
	}
	w.WriteHeader(httpStatus)
	// The gateway's error shape: the status as its marshaler writes it,
	// details (a RetryInfo) included.
	b, err := newJSONMarshaler().Marshal(st.Proto())
	if err != nil {
		b = []byte(`{"code":` + strconv.Itoa(int(st.Code())) + `,"message":"","details":[]}`)
	}
	_, _ = w.Write(b)
}
