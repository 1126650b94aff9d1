package main

import (
	"context"
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

	"golang.org/x/sync/semaphore"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

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
	shed           *cpuShed            // nil: no adaptive bound (shedding.go)
	working        *workingCalls       // nil: no bound on calls at work (working.go)
	inflight       *semaphore.Weighted // bytes of requests in progress
	refusals       *refusalCounter     // nil: not counted
	log            *slog.Logger
}

// errCredentials is the one answer to a call without valid credentials; it
// never says which check failed, and never holds what the caller sent.
func errCredentials() error {
	return status.Error(codes.Unauthenticated, "valid credentials are required: a client certificate or an Authorization bearer token")
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
// calls, which reach this side in process.
func (f *frontDoor) admit(ctx context.Context, method string) (_ context.Context, listener string, _ func(), _ error) {
	caller, fairness, viaGateway, err := f.authenticate(ctx)
	admit, listener := f.limits.admit, listenerGRPC
	if viaGateway {
		admit = f.limits.admitUnrated // the gateway took the token (admitHTTP)
		listener = listenerHTTP
	}
	if err != nil {
		f.refusals.add(ctx, listener, refusedCredentials)
		f.log.DebugContext(ctx, "call refused: no valid credentials", slog.String("method", method), slog.String("listener", listener))
		return nil, listener, nil, err
	}
	release, refused := admit(fairness)
	if refused != nil {
		f.refusals.add(ctx, listener, refused.kind)
		f.log.DebugContext(ctx, "call refused by the inbound limits", slog.String("method", method),
			slog.String("caller", caller), slog.String("reason", refused.reason))
		return nil, listener, nil, exhausted(refused.reason, refused.retryAfter)
	}
	if release, err = f.shedAdmit(ctx, listener, method, caller, release); err != nil {
		return nil, listener, nil, err
	}
	if ctx, release, err = f.workAdmit(ctx, listener, method, caller, fairness, release); err != nil {
		return nil, listener, nil, err
	}
	if caller != "" {
		ctx = identity.WithCaller(ctx, caller)
	}
	return upstream.WithCaller(ctx, fairness), listener, release, nil
}

// exhausted is RESOURCE_EXHAUSTED with a RetryInfo of d, rounded up to a
// whole second.
func exhausted(msg string, d time.Duration) error {
	st := status.New(codes.ResourceExhausted, msg+"; try again later")
	if secs := d.Truncate(time.Second); secs < d {
		d = secs + time.Second
	}
	if ds, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(d)}); err == nil {
		st = ds
	}
	return st.Err()
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
				ctx, listener, release, err := f.admit(ctx, method)
				if err != nil {
					return nil, err
				}
				defer release()
				var held int64
				defer func() {
					if held > 0 {
						f.inflight.Release(held)
					}
				}()
				read := func(v any) error {
					if err := dec(v); err != nil {
						return err
					}
					if m, ok := v.(proto.Message); ok {
						n := max(int64(proto.Size(m)), 1)
						if n > maxRequestBytes {
							return errTooLarge()
						}
						if !f.inflight.TryAcquire(n) {
							f.refusals.add(ctx, listener, refusedBytes)
							return exhausted("the broker is at its limit of request bytes in progress", time.Second)
						}
						held = n
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
// SIGHUP.
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
		inflight:       semaphore.NewWeighted(cfg.MaxInflightBytes),
		log:            logger.With(slog.String("component", "frontdoor")),
	}
	if cfg.CallersFile != "" {
		if f.tokens, err = identity.LoadTokens(cfg.CallersFile); err != nil {
			return nil, nil, fmt.Errorf("--callers-file: %w", err)
		}
		logger.Info("bearer-token callers loaded", slog.String("file", cfg.CallersFile), slog.Int("callers", f.tokens.Len()))
	}
	if cfg.JWTIssuer != "" {
		f.jwt, err = identity.NewJWTVerifier(ctx, identity.JWTConfig{
			Issuer: cfg.JWTIssuer, Audience: cfg.JWTAudience, JWKSURL: cfg.JWTJWKSURL, JWKSFile: cfg.JWTJWKSFile,
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
	go w.Run(ctx, policyPollInterval)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				_ = w.Reload() // logs its own outcome
			}
		}
	}()
	return f, w, nil
}

// openAudit opens the audit trail of --audit-log, if any. A trail that
// cannot be written does not stop the broker: it serves reads and refuses
// every change until the trail works.
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
		logger.Error("the audit log cannot be written: changes are refused until it can; reads are served", slog.Any("error", err))
	}
	return trail, nil
}

// bodyCostFactor is what a gateway request body costs against the bound on
// bytes in progress, per byte: reading it, decoding its JSON and marshalling
// the gRPC request keep about that many copies alive at once.
const bodyCostFactor = 3

// bodyBudget is the bound on the bytes of JSON gateway request bodies in
// progress (--max-inflight-bytes, per listener). The gateway takes a
// body's cost from it before it reads a byte of the body, on whatever
// path, and gives it back when the call is done; a body it does not read
// (its route takes none) costs nothing.
type bodyBudget struct {
	sem *semaphore.Weighted
	max int64
}

func newBodyBudget(maxBytes int64) *bodyBudget {
	return &bodyBudget{sem: semaphore.NewWeighted(maxBytes), max: maxBytes}
}

// cost is what a body of declared length n (-1: unknown) costs: n, or the
// largest allowed when it is unknown or larger, times bodyCostFactor, and
// never more than the whole budget.
func (b *bodyBudget) cost(n int64) int64 {
	if n < 0 || n > maxRequestBytes {
		n = maxRequestBytes // the gateway refuses more than that itself
	}
	return min(n*bodyCostFactor, b.max)
}

// reserve takes the cost of a body of declared length n and returns it
// as a reservation the caller gives back (release) or cuts to what the
// body turned out to be (shrink), or RESOURCE_EXHAUSTED with a RetryInfo
// (429 with Retry-After through the gateway) when the budget lacks it.
func (b *bodyBudget) reserve(n int64) (*bodyReservation, error) {
	c := b.cost(n)
	if !b.sem.TryAcquire(c) {
		return nil, exhausted("the broker is at its limit of request bytes in progress", time.Second)
	}
	return &bodyReservation{b: b, held: c}, nil
}

// bodyReservation is a body's cost held from a bodyBudget. It only
// shrinks: a body of unknown length (chunked) costs the most a body may
// until it has been read, then what it is, so that a 2-byte chunked body
// does not hold the budget of a whole one for as long as its call runs.
type bodyReservation struct {
	b    *bodyBudget
	mu   sync.Mutex
	held int64
}

// shrink gives back what the reservation holds beyond the cost of a body
// of n bytes (n 0: all of it).
func (r *bodyReservation) shrink(n int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c := r.b.cost(n); c < r.held {
		r.b.sem.Release(r.held - c)
		r.held = c
	}
}

// release gives back all the reservation holds; more calls do nothing.
func (r *bodyReservation) release() { r.shrink(0) }

// bodyBudgetKey is the context key of the bodyBudget that admitHTTP hands
// the gateway with a request that has a body.
type bodyBudgetKey struct{}

// withBodyBudget returns r, or, when r has a body, r with b in its context.
// A request without one never reads the budget, and costs no copy of r.
func withBodyBudget(r *http.Request, b *bodyBudget) *http.Request {
	if !hasBody(r) {
		return r
	}
	return r.WithContext(context.WithValue(r.Context(), bodyBudgetKey{}, b))
}

// bodyBudgetFrom returns the budget admitHTTP put in ctx, or fallback when
// there is none (a gateway serving without the front door, in tests).
func bodyBudgetFrom(ctx context.Context, fallback *bodyBudget) *bodyBudget {
	if b, ok := ctx.Value(bodyBudgetKey{}).(*bodyBudget); ok {
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
// body from the bound on bytes of request bodies in progress
// (bodyBudget) before any of it is read (429 with Retry-After over the
// bound), and hands the gateway the reservation, which it cuts to the
// body's size once read. A JSON flood is thus refused before its bodies
// cost memory or CPU. Paths outside /v1/ (/healthz, /openapi.json) are
// open to everyone; no route there takes a body and the gateway never
// reads one. The gRPC side checks the call again with the credentials the
// gateway forwards.
func (f *frontDoor) admitHTTP(next http.Handler, limits *callLimits, maxBytes int64) http.Handler {
	budget := newBodyBudget(maxBytes)
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
			f.refusals.add(r.Context(), listenerHTTP, refusedCredentials)
			f.log.DebugContext(r.Context(), "call refused: no valid credentials", slog.String("method", r.Method), slog.String("listener", listenerHTTP))
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
			paid, err := budget.reserve(r.ContentLength)
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
