package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"net/textproto"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/secretbroker/secretbroker/gen/openapi"
	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/service"
)

// maxRequestBytes bounds a JSON gateway request's body (and, set by run,
// a gRPC request). A batch of puts is the largest request there is.
const maxRequestBytes = 16 << 20

// bodyReserve is the most memory a request body's buffer starts with. A
// larger Content-Length is only the caller's claim: the buffer grows into
// it as the bytes arrive, never before they do.
const bodyReserve = 64 << 10

const (
	// jsonMediaType is the one request body type the gateway accepts.
	jsonMediaType = "application/json"
	// reservedMetadataPrefix starts the metadata keys that only the
	// gateway itself may set (mdCaller, mdGateway).
	reservedMetadataPrefix = "x-secretbroker-"
)

// unescapingMode is how the gateway's mux, and the route probe, match and
// decode paths: "prod%2Feu" stays one path segment.
const unescapingMode = runtime.UnescapingModeAllExceptReserved

// gateway is the JSON gateway's HTTP handler: it refuses what the
// grpc-gateway mux should never see (a body that is not JSON or is too
// large, a path or query that is not UTF-8) and hands the rest to the mux.
//
// It reads a request's body only once the mux has matched a route that
// takes one (bodies, after routing), within the bound on bodies in
// progress. Any other request, to /healthz, /openapi.json, a GET or
// DELETE, the bodiless PUT of a selected repository, or a path no route
// matches, is answered as if it had no body: the body is never read, and
// net/http then discards what is left of it, up to 256 KiB, into nothing,
// or closes the connection after the answer. Its answer is the one the
// request gets without a body (200, 404, 405, ...): ignoring it is what
// grpc-gateway always did with such a body, and a client that sends "{}"
// with a bodiless PUT keeps working.
type gateway struct {
	mux *runtime.ServeMux
	// marshaler is the mux's one marshaler, for every content type.
	marshaler runtime.Marshaler
	// routes matches a request's path against every route without calling
	// anything, to say which methods a path allows.
	routes *routeProbe
	// bodyRoutes holds routeKey of each route that takes a request body.
	bodyRoutes map[string]bool
	// pathFields holds, by routeKey of a route that takes a body, the
	// request fields its path gives (name, parent): its body may not
	// (refusePathFields).
	pathFields map[string][]string
	// query holds the query parameters of each route (knownQuery).
	query queryRoutes
	// selectionRoutes holds routeKey of SetSelectedRepositories' routes,
	// whose body must name the selection (selectionRequired).
	selectionRoutes map[string]bool
	// budget bounds the bodies in progress when admitHTTP has not handed
	// the request its own (a gateway outside the front door, in tests).
	budget *byteBudget
}

// newGateway returns the JSON gateway's HTTP handler: the grpc-gateway mux
// for SecretService, calling the gRPC server over conn, with
// GET /openapi.json and GET /healthz.
func newGateway(ctx context.Context, conn grpc.ClientConnInterface, callers callerKeys) (http.Handler, error) {
	routes, err := newRouteProbe(append(serviceRoutes(),
		route{http.MethodGet, "/openapi.json"}, route{http.MethodGet, "/healthz"}))
	if err != nil {
		return nil, err
	}
	g := &gateway{
		routes:          routes,
		bodyRoutes:      make(map[string]bool),
		pathFields:      make(map[string][]string),
		selectionRoutes: make(map[string]bool),
		query:           serviceQueryRoutes(),
		budget:          newByteBudget(defaultMaxInflightBytes),
		marshaler:       newJSONMarshaler(),
	}
	g.mux = runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, g.marshaler),
		// "prod%2Feu" stays one path segment when routes are matched ...
		runtime.WithUnescapingMode(unescapingMode),
		// ... and reaches the service as the caller escaped it. A query
		// parameter the route does not take is refused. Only a route
		// that takes a body has it read.
		runtime.WithMiddlewares(g.knownQuery, g.rawPathVariables, g.bodies, g.selectionRequired),
		runtime.WithHealthzEndpoint(healthpb.NewHealthClient(conn)),
		runtime.WithForwardResponseOption(answerStatus),
		// The HTTP client is the caller the pacer queues for; only the
		// gateway says so.
		runtime.WithMetadata(callers.gatewayMetadata),
		runtime.WithIncomingHeaderMatcher(incomingHeader),
		runtime.WithOutgoingHeaderMatcher(outgoingHeader),
		runtime.WithOutgoingTrailerMatcher(outgoingTrailer),
		runtime.WithErrorHandler(errorWithRetryAfter),
		runtime.WithRoutingErrorHandler(g.routingError),
		// A form POST is not a GET in disguise.
		runtime.WithDisablePathLengthFallback(),
	)
	if err := secretbrokerv1.RegisterSecretServiceHandlerClient(ctx, g.mux, secretbrokerv1.NewSecretServiceClient(conn)); err != nil {
		return nil, fmt.Errorf("registering the gateway: %w", err)
	}
	if err := g.mux.HandlePath(http.MethodGet, "/openapi.json", serveOpenAPI); err != nil {
		return nil, fmt.Errorf("registering /openapi.json: %w", err)
	}
	for _, rt := range serviceBodyRoutes() {
		key := routeKey(rt.method, rt.path)
		g.bodyRoutes[key] = true
		for _, m := range patternVar.FindAllStringSubmatch(key, -1) {
			g.pathFields[key] = append(g.pathFields[key], m[1])
		}
	}
	for _, rt := range methodRoutes(secretbrokerv1.SecretService_SetSelectedRepositories_FullMethodName) {
		g.selectionRoutes[routeKey(rt.method, rt.path)] = true
	}
	return g, nil
}

// selectionRequired refuses a SetSelectedRepositories request whose body
// does not name the selection (selected_repository_ids or
// selected_repositories), as GitHub refuses a PUT without
// selected_repository_ids: the decoded request could not tell a missing
// selection from an empty one, and an empty one clears every repository.
// A selection given as null does not name it either.
// `{"selected_repository_ids": []}` still clears on purpose. (Over gRPC
// an empty list is the request to clear: proto3 has no other.)
func (g *gateway) selectionRequired(next runtime.HandlerFunc) runtime.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request, params map[string]string) {
		if r.Method != http.MethodPut { // the cheap test first: every call passes here
			next(w, r, params)
			return
		}
		pat, ok := runtime.HTTPPattern(r.Context())
		if !ok || !g.selectionRoutes[r.Method+" "+pat.String()] {
			next(w, r, params)
			return
		}
		var fields map[string]json.RawMessage
		if hasBody(r) {
			body, err := io.ReadAll(r.Body) // read whole already (bodies)
			if err != nil {
				g.fail(w, r, status.Errorf(codes.InvalidArgument, "reading the request body: %v", err))
				return
			}
			rb := newReadBody(body)
			if old, ok := r.Body.(*readBody); ok {
				rb.pathFields = old.pathFields
			}
			r2 := *r
			r2.Body = rb
			r = &r2
			_ = json.Unmarshal(body, &fields)
			if fields == nil {
				next(w, r, params) // not an object: the decoder says why
				return
			}
		}
		named := false
		for k, v := range fields {
			switch k {
			case "selected_repository_ids", "selectedRepositoryIds", "selected_repositories", "selectedRepositories":
				// null names nothing: a script whose variable came out
				// empty must not clear the selection.
				named = named || !bytes.Equal(bytes.TrimSpace(v), []byte("null"))
			case "name":
			default:
				next(w, r, params) // a field it does not have: the decoder names it
				return
			}
		}
		if named {
			next(w, r, params)
			return
		}
		g.fail(w, r, status.Error(codes.InvalidArgument,
			"selected_repository_ids: is required (or selected_repositories); send [] to clear the selection"))
	}
}

// ServeHTTP checks the request's path, query and Content-Type and hands
// it to the mux, whose bodies middleware reads the body of a route that
// takes one. A refused request never reaches the gRPC server.
func (g *gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := checkRequestURL(r.URL); err != nil {
		g.fail(w, r, err)
		return
	}
	if err := checkContentType(r); err != nil {
		g.fail(w, r, err)
		return
	}
	g.mux.ServeHTTP(w, r)
}

// bodies is the mux middleware that reads a request's body whole when the
// route the mux matched takes one (readBody), before the route's handler
// runs, and hands every other route the request without its body, unread.
func (g *gateway) bodies(next runtime.HandlerFunc) runtime.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request, params map[string]string) {
		if !hasBody(r) {
			next(w, r, params)
			return
		}
		if !g.takesBody(r) {
			// Never read (as GitHub ignores it), so it costs nothing of
			// the budget admitHTTP took it from.
			if paid := bodyPaid(r.Context()); paid != nil {
				paid.release()
			}
			r2 := *r
			r2.Body, r2.ContentLength = http.NoBody, 0
			next(w, &r2, params)
			return
		}
		r, release, err := g.readBody(w, r)
		if err != nil {
			g.fail(w, r, err)
			return
		}
		defer release()
		if rb, ok := r.Body.(*readBody); ok {
			pat, _ := runtime.HTTPPattern(r.Context())
			rb.pathFields = g.pathFields[r.Method+" "+pat.String()]
		}
		next(w, r, params)
	}
}

// takesBody reports whether the route the mux matched for r takes a
// request body.
func (g *gateway) takesBody(r *http.Request) bool {
	pat, ok := runtime.HTTPPattern(r.Context())
	return ok && g.bodyRoutes[r.Method+" "+pat.String()]
}

// hasBody reports whether r comes with a body, empty or not: a
// Content-Length other than 0, or none (chunked).
func hasBody(r *http.Request) bool {
	return r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody
}

// bareVar matches a single-segment variable in a path template, "{repository}".
var bareVar = regexp.MustCompile(`\{([^{}=]+)\}`)

// routeKey is the method and path template of a route as the mux's
// pattern spells the template ("{repository}" as "{repository=*}"): the
// key of bodyRoutes, and what takesBody builds from a matched pattern.
func routeKey(method, template string) string {
	return method + " " + bareVar.ReplaceAllString(template, "{$1=*}")
}

// fail answers r with err in the gateway's error shape, {"code": ...,
// "message": ..., "details": [...]}, through the mux's error handler.
// (runtime.MarshalerForRequest would find the same marshaler, but logs
// each Content-Type it cannot parse.)
func (g *gateway) fail(w http.ResponseWriter, r *http.Request, err error) {
	runtime.HTTPError(r.Context(), g.mux, g.marshaler, w, r, err)
}

// httpError is err, a gRPC status error, answered with HTTP status code.
func httpError(code int, err error) error {
	return &runtime.HTTPStatusError{HTTPStatus: code, Err: err}
}

// checkRequestURL refuses a path or query that does not decode to valid
// UTF-8: the gRPC client could not marshal it into a request (a 500).
func checkRequestURL(u *url.URL) error {
	if !utf8.ValidString(u.Path) || !utf8.ValidString(escapedPath(u)) {
		return status.Error(codes.InvalidArgument, "the request path is not valid UTF-8")
	}
	if u.RawQuery == "" {
		return nil
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "the query string is malformed: %v", err)
	}
	for k, vs := range q {
		if !utf8.ValidString(k) || slices.ContainsFunc(vs, func(v string) bool { return !utf8.ValidString(v) }) {
			return status.Error(codes.InvalidArgument, "the query string is not valid UTF-8")
		}
	}
	return nil
}

// checkContentType refuses a POST, PUT or PATCH whose body is not JSON: a
// browser may send a text/plain or form POST to any origin without asking
// first (a CORS "simple request"), and none of those may reach the API. A
// request without a body needs no Content-Type, but one it sends must be
// JSON's.
func checkContentType(r *http.Request) error {
	switch r.Method {
	case http.MethodPost, http.MethodPut, http.MethodPatch:
	default:
		return nil
	}
	cts := r.Header.Values("Content-Type")
	if len(cts) == 0 && r.ContentLength == 0 {
		return nil
	}
	unsupported := httpError(http.StatusUnsupportedMediaType, status.Error(codes.InvalidArgument,
		"the request body must be JSON, sent with Content-Type: "+jsonMediaType))
	if len(cts) != 1 {
		return unsupported
	}
	// Any parameter, charset included, is accepted: the body is decoded as
	// JSON (UTF-8) whatever it says, and invalid UTF-8 is refused there.
	mt, _, err := mime.ParseMediaType(cts[0])
	if err != nil || mt != jsonMediaType {
		return unsupported
	}
	return nil
}

// readBody reads r's body whole, at most maxRequestBytes of it, and returns
// r with the body in memory and the function that gives back what the body
// cost from the bound on bodies in progress: a body too large is refused
// whole (413), by its Content-Length before a byte of it is read, and
// always before the mux decodes any of it. The body's cost is taken
// before it is read: 429 with Retry-After when the bound lacks it.
func (g *gateway) readBody(w http.ResponseWriter, r *http.Request) (*http.Request, func(), error) {
	if r.ContentLength > maxRequestBytes {
		return r, nil, tooLarge(maxRequestBytes)
	}
	ctx := r.Context()
	res, release := bodyPaid(ctx), func() {}
	if res == nil {
		budget := bodyBudgetFrom(ctx, g.budget)
		var err error
		if res, err = budget.reserve("", budget.cost(r.ContentLength)); err != nil {
			return r, nil, err
		}
		release = res.release
		ctx = context.WithValue(ctx, bodyPaidKey{}, res) // for localConn (keepDecoded)
	}
	body, err := readBodyBytes(http.MaxBytesReader(w, r.Body, maxRequestBytes), r.ContentLength)
	if err != nil {
		release()
		if mbe, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return r, nil, tooLarge(mbe.Limit)
		}
		return r, nil, status.Errorf(codes.InvalidArgument, "reading the request body: %v", err)
	}
	// A body of unknown length was paid for as the largest: it now costs
	// what it is.
	res.shrink(res.b.cost(int64(len(body))))
	r2 := r.WithContext(ctx) // a copy of r
	r2.Body = newReadBody(body)
	r2.ContentLength = int64(len(body))
	return r2, release, nil
}

// readBody is a request body read whole (readBody): its reader, and the
// bytes themselves, which the JSON decoder parses in place (NewDecoder).
// Once read to its end (the gateway drains a body after decoding it) it
// lets go of the bytes, so that a call does not keep its body alive for
// as long as it runs: only its decoded request (bodyCostFactor).
type readBody struct {
	r    *bytes.Reader
	data []byte
	// pathFields are the request fields the route's path gives, which the
	// body may not set (refusePathFields).
	pathFields []string
}

func newReadBody(data []byte) *readBody { return &readBody{r: bytes.NewReader(data), data: data} }

func (b *readBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if b.r.Len() == 0 {
		b.data = nil
		b.r.Reset(nil)
	}
	return n, err
}

func (*readBody) Close() error { return nil }

// unread returns the body's bytes when none has been read yet.
func (b *readBody) unread() ([]byte, bool) {
	return b.data, b.r.Len() == len(b.data)
}

// errBodyOverrun is readBodyBytes' error for a body longer than it said.
var errBodyOverrun = errors.New("the body is longer than its Content-Length")

// readBodyBytes reads body to its end. declared is its Content-Length, or
// -1 when unknown. The buffer starts at no more than bodyReserve, whatever
// declared claims, and doubles each time the bytes read fill it, up to
// declared (maxRequestBytes when unknown) and one byte more to see the
// end: memory follows the bytes that arrived, not the bytes announced.
func readBodyBytes(body io.Reader, declared int64) ([]byte, error) {
	limit := declared
	if limit < 0 || limit > maxRequestBytes {
		limit = maxRequestBytes
	}
	limit++
	buf := make([]byte, 0, min(limit, bodyReserve))
	for {
		if len(buf) == cap(buf) {
			if int64(len(buf)) == limit {
				return nil, errBodyOverrun
			}
			grown := make([]byte, len(buf), min(2*int64(cap(buf)), limit))
			copy(grown, buf)
			buf = grown
		}
		n, err := body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// tooLarge is the error for a body over limit bytes: HTTP 413.
func tooLarge(limit int64) error {
	size := strconv.FormatInt(limit, 10) + " bytes"
	if limit%(1<<20) == 0 {
		size = strconv.FormatInt(limit>>20, 10) + " MiB"
	}
	return httpError(http.StatusRequestEntityTooLarge,
		status.Errorf(codes.InvalidArgument, "request body is larger than the %s limit", size))
}

// incomingHeader forwards a caller's Grpc-Metadata-* headers as metadata
// (runtime.LegacyHeaderMatcher's rule, grpc-gateway's default before
// v2.33.0, whose default forwards none of them), except the metadata the gateway
// sets itself: a caller's Grpc-Metadata-X-Secretbroker-Caller header
// would otherwise reach the gRPC server beside the gateway's own. The
// Authorization header reaches it as "authorization" (grpc-gateway passes
// that header on whatever the matcher says), and is the only source of
// it: Grpc-Metadata-Authorization would add a second value. The standard
// HTTP headers the default matcher also forwards, as "grpcgateway-"
// keys, are not: nothing in the service reads them, and one of them
// would be a second copy of the caller's bearer token. Nor is trace
// context (traceKey).
func incomingHeader(key string) (string, bool) {
	// The legacy matcher is asked about Grpc-Metadata-* headers only: for
	// each standard header it would build a "grpcgateway-" key, on every
	// request, to be refused below.
	if !strings.HasPrefix(textproto.CanonicalMIMEHeaderKey(key), runtime.MetadataHeaderPrefix) {
		return "", false
	}
	md, ok := runtime.LegacyHeaderMatcher(key)
	if !ok || strings.HasPrefix(md, runtime.MetadataPrefix) || reservedKey(md) || traceKey(md) {
		return "", false
	}
	return md, true
}

// traceKey reports whether metadata key k (as the header matcher returns
// it) carries trace context. The caller's Traceparent header reaches the
// HTTP span, and that span's context reaches the gRPC server span as a
// connection's client would send it; a caller's Grpc-Metadata-Traceparent
// (or tracestate, baggage, grpc-trace-bin) would replace it, and put the
// call's server span, log lines and audit record in a trace of the
// caller's choosing, apart from its HTTP span.
func traceKey(k string) bool {
	switch strings.ToLower(k) {
	case "traceparent", "tracestate", "baggage", "grpc-trace-bin":
		return true
	}
	return false
}

// outgoingHeader is grpc-gateway's default for the header metadata of an
// answer (each key as a Grpc-Metadata-* header) without content-type,
// which the gRPC transport sets on every answer and which says nothing
// to a JSON caller: the answer's own Content-Type is the JSON one; and
// without binary (-bin) keys, whose raw bytes are no HTTP field value.
func outgoingHeader(key string) (string, bool) {
	if !answerKey(key) {
		return "", false
	}
	return runtime.MetadataHeaderPrefix + key, true
}

// answerKey reports whether an answer's metadata key k goes to a JSON
// caller (as a header or a trailer): not content-type, and no binary
// (-bin) key.
func answerKey(k string) bool {
	return k != "content-type" && !strings.HasSuffix(k, "-bin")
}

// outgoingTrailer is grpc-gateway's default for the trailer metadata of
// an answer (each key as a Grpc-Trailer-* trailer, sent to a caller that
// asks with TE: trailers) without content-type and without binary keys:
// grpc-status-details-bin holds raw protobuf bytes, which are no HTTP
// field value (a client then fails to read the answer, a 429's
// included), and the details are in the answer's body already.
func outgoingTrailer(key string) (string, bool) {
	if !answerKey(key) {
		return "", false
	}
	return runtime.MetadataTrailerPrefix + key, true
}

// reservedKey reports whether metadata key k, lowercased, is one only
// the gateway sets (x-secretbroker-*, authorization). An ASCII key (every
// header name net/http accepts) is compared without lowercasing a copy.
func reservedKey(k string) bool {
	for i := range len(k) {
		if k[i] >= utf8.RuneSelf {
			lower := strings.ToLower(k)
			return strings.HasPrefix(lower, reservedMetadataPrefix) || lower == "authorization"
		}
	}
	return len(k) >= len(reservedMetadataPrefix) && strings.EqualFold(k[:len(reservedMetadataPrefix)], reservedMetadataPrefix) ||
		strings.EqualFold(k, "authorization")
}

// errorWithRetryAfter is runtime.DefaultHTTPErrorHandler that also sends
// the standard Retry-After header, in whole seconds rounded up, when the
// status carries a google.rpc.RetryInfo detail (429 and 503 answers), and
// answers GitHub's own 409 Conflict, which the service gives as
// FAILED_PRECONDITION with an ErrorInfo saying so
// (service.IsGitHubConflict), with 409 as GitHub did, not grpc-gateway's
// 400 for FAILED_PRECONDITION.
func errorWithRetryAfter(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	if d, ok := retryDelay(err); ok {
		w.Header().Set("Retry-After", strconv.FormatInt(ceilSeconds(d), 10))
	}
	if _, ok := errors.AsType[*runtime.HTTPStatusError](err); !ok {
		if st, ok := status.FromError(err); ok && service.IsGitHubConflict(st) {
			err = httpError(http.StatusConflict, err)
		}
	}
	runtime.DefaultHTTPErrorHandler(ctx, mux, m, w, r, err)
}

// retryDelay returns the delay of err's RetryInfo detail, if it has one.
func retryDelay(err error) (time.Duration, bool) {
	if hse, ok := errors.AsType[*runtime.HTTPStatusError](err); ok {
		err = hse.Err
	}
	st, ok := status.FromError(err)
	if !ok {
		return 0, false
	}
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay().IsValid() {
			return ri.GetRetryDelay().AsDuration(), true
		}
	}
	return 0, false
}

// ceilSeconds is d in whole seconds, rounded up; 0 for d <= 0.
func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	s := int64(d / time.Second)
	if d%time.Second != 0 {
		s++
	}
	return s
}

// routingError answers a path no route matches with 404 and a path that a
// route matches for other methods with 405 Method Not Allowed and an Allow
// header (grpc-gateway's default is 501 Not Implemented). A 404 under /v1/
// says what the API's paths look like (noRouteMessage).
func (g *gateway) routingError(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, httpStatus int) {
	if httpStatus == http.StatusNotFound {
		if msg, ok := noRouteMessage(escapedPath(r.URL)); ok {
			runtime.HTTPError(ctx, mux, m, w, r, httpError(http.StatusNotFound, status.Error(codes.NotFound, msg)))
			return
		}
	}
	if httpStatus != http.StatusMethodNotAllowed && httpStatus != http.StatusNotImplemented {
		runtime.DefaultRoutingErrorHandler(ctx, mux, m, w, r, httpStatus)
		return
	}
	msg := "the method is not allowed on this path"
	if allow := g.routes.allowed(r); len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		msg += " (allowed: " + strings.Join(allow, ", ") + ")"
	}
	runtime.HTTPError(ctx, mux, m, w, r, httpError(http.StatusMethodNotAllowed, status.Error(codes.Unimplemented, msg)))
}

// noRouteResources is what a 404 under /v1/ lists: the API's resources.
const noRouteResources = "no route matches this path: secrets are /v1/orgs/{org}/{actions|agents}/secrets/{name}, " +
	"/v1/repos/{owner}/{repo}/{actions|agents}/secrets/{name} and " +
	"/v1/repos/{owner}/{repo}/environments/{environment}/secrets/{name}, " +
	"operations /v1/operations/{id} (every route is in GET /openapi.json)"

// noRouteMessage is the message of a 404 for esc, a request's escaped
// path, when it is under /v1/: the resource shapes, and a hint when the
// path looks like a known mistake. It quotes none of the path (a fixed
// text, whatever the path holds). ok is false outside /v1/.
func noRouteMessage(esc string) (msg string, ok bool) {
	rest, ok := strings.CutPrefix(esc, "/v1/")
	if !ok {
		return "", false
	}
	msg = noRouteResources
	segs := strings.Split(rest, "/")
	switch {
	// repos/{owner}/{repo}/environments/{environment}/secrets[/...]: a
	// route has at most 7 segments, and "secrets..." after the
	// environment. More, or something else there, is most often an
	// environment name holding an unescaped "/".
	case len(segs) > 5 && segs[0] == "repos" && segs[3] == "environments" &&
		(len(segs) > 7 || !strings.HasPrefix(segs[5], "secrets")):
		msg += `; an environment name holding "/" is one path segment, escaped as %2F (environment prod/eu is prod%2Feu)`
	// operations/operations/{id}: the operation's full name pasted.
	case len(segs) > 2 && segs[0] == "operations" && segs[1] == "operations":
		msg += `; {id} is the operation's name without "operations/"`
	}
	return msg, true
}

// answerStatus gives an answer GitHub's status code for it: 201 Created
// for a PutSecret that created the secret (an update stays 200 OK), and
// 204 No Content, with no body, for the calls that answer nothing
// (google.protobuf.Empty: deleting a secret, setting, adding or removing
// selected repositories).
func answerStatus(_ context.Context, w http.ResponseWriter, m proto.Message) error {
	switch r := m.(type) {
	case *secretbrokerv1.PutSecretResponse:
		if r.GetCreated() {
			w.WriteHeader(http.StatusCreated)
		}
	case *emptypb.Empty:
		// No body: grpc-gateway's "{}", written next, is refused by
		// net/http (http.ErrBodyNotAllowed), which grpc-gateway ignores.
		w.Header().Del("Content-Type")
		w.WriteHeader(http.StatusNoContent)
	}
	return nil
}

// serveOpenAPI serves the gateway's OpenAPI document.
func serveOpenAPI(w http.ResponseWriter, _ *http.Request, _ map[string]string) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, openapi.JSON)
}

// jsonMarshaler is runtime.JSONPb whose decoding errors never quote the
// body: protojson's say "invalid value for string field value: 12345",
// and 12345 may be the secret.
type jsonMarshaler struct {
	*runtime.JSONPb
}

// newJSONMarshaler is the gateway's marshaler: snake_case JSON, as
// GitHub's own, with every field present (total_count 0, created false)
// so scripts see a fixed shape; unknown fields are an error.
func newJSONMarshaler() jsonMarshaler {
	return jsonMarshaler{&runtime.JSONPb{
		MarshalOptions:   protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true},
		UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
	}}
}

// Marshal is JSONPb's Marshal, with a message's JSON returned as protojson
// made it (JSONPb copies it into a buffer first, on every answer), and a
// newline after it, as curl's user expects of a text answer: the shell's
// prompt then starts on a line of its own. Every answer, an error's
// included, is written whole from Marshal's bytes (net/http counts them
// for Content-Length); no route streams.
func (m jsonMarshaler) Marshal(v any) ([]byte, error) {
	var (
		b   []byte
		err error
	)
	if msg, ok := v.(proto.Message); ok {
		b, err = m.MarshalOptions.Marshal(msg)
	} else {
		b, err = m.JSONPb.Marshal(v)
	}
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// NewDecoder returns JSONPb's decoder with its errors cleaned by
// decodeError; io.EOF (an empty body) passes as it is.
//
// A body the gateway read whole (readBody) into a message is first
// parsed in place by protojson alone, once. JSONPb's decoder parses it
// three times (encoding/json reads the value, copies it into a
// json.RawMessage, then protojson parses that): for a 1 MiB batch that
// was most of the gateway's CPU. protojson refuses what JSONPb's decoder
// refuses, data after the value included; a body it refuses is decoded
// again by JSONPb's decoder, whose error is the one answered, so answers
// are the same either way (FuzzJSONDecoderPaths).
func (m jsonMarshaler) NewDecoder(r io.Reader) runtime.Decoder {
	slow := m.streamDecoder(r)
	body, ok := r.(*readBody)
	if !ok {
		return slow
	}
	data, whole := body.unread()
	if !whole {
		return refusePathFields(slow, body.pathFields)
	}
	return refusePathFields(runtime.DecoderFunc(func(v any) error {
		msg, ok := v.(proto.Message)
		if !ok || len(bytes.TrimSpace(data)) == 0 {
			return slow.Decode(v)
		}
		if err := m.UnmarshalOptions.Unmarshal(data, msg); err == nil {
			return nil
		}
		proto.Reset(msg)
		return slow.Decode(v)
	}), body.pathFields)
}

// refusePathFields is d refusing a body that sets one of fields, the
// request fields the route's path gives (name, parent): grpc-gateway
// would overwrite it with the path's, so a body's
// "name": "repos/other/x/actions/secrets/Y" was ignored in silence. The
// OpenAPI document's body schemas (SecretServicePutSecretBody, ...) leave
// these fields out, so a body that has one has a field its route does not
// take, refused as any unknown field is, whether or not it names what the
// path names. (A field set to "" or null is unset: proto3 JSON cannot tell
// it from an absent one.)
func refusePathFields(d runtime.Decoder, fields []string) runtime.Decoder {
	if len(fields) == 0 {
		return d
	}
	return runtime.DecoderFunc(func(v any) error {
		if err := d.Decode(v); err != nil {
			return err
		}
		msg, ok := v.(proto.Message)
		if !ok {
			return nil
		}
		pm := msg.ProtoReflect()
		for _, f := range fields {
			if fd := pm.Descriptor().Fields().ByName(protoreflect.Name(f)); fd != nil && pm.Has(fd) {
				return fmt.Errorf("request body: field %q is not taken: the path gives it", f)
			}
		}
		return nil
	})
}

// streamDecoder is JSONPb's decoder of r, with its errors cleaned.
func (m jsonMarshaler) streamDecoder(r io.Reader) runtime.Decoder {
	// JSONPb's own decoder (m.JSONPb.NewDecoder), built here to keep its
	// json.Decoder at hand.
	stream := json.NewDecoder(r)
	d := runtime.DecoderWrapper{Decoder: stream, UnmarshalOptions: m.UnmarshalOptions}
	return runtime.DecoderFunc(func(v any) error {
		var (
			raw json.RawMessage
			md  protoreflect.MessageDescriptor
			err error
		)
		if msg, ok := v.(proto.Message); ok {
			// What DecoderWrapper does with a message, keeping the JSON
			// value protojson parsed: its errors' positions are in it.
			md = msg.ProtoReflect().Descriptor()
			if err = stream.Decode(&raw); err == nil {
				err = m.UnmarshalOptions.Unmarshal(raw, msg)
			}
		} else {
			err = d.Decode(v)
		}
		if err == nil {
			// A request is one JSON value: anything but white space after
			// it is refused, not ignored.
			if _, terr := stream.Token(); !errors.Is(terr, io.EOF) {
				return errors.New("request body holds more than one JSON value")
			}
			return nil
		}
		if errors.Is(err, io.EOF) {
			return err
		}
		return decodeError(err, raw, md)
	})
}

// protojsonError matches the part of a protojson error that quotes no
// value: its position and what is wrong, up to the offending token. (The
// space after "proto:" is at random a no-break space, U+00A0.)
var protojsonError = regexp.MustCompile(`^proto:[\s\x{00a0}]+(?:syntax error )?\(line (\d+):(\d+)\): (unknown field "[A-Za-z0-9_]*"|duplicate field "[A-Za-z0-9_]*"|invalid value for [a-z0-9]+ field [A-Za-z0-9_]+)`)

// protojsonPositioned matches any protojson error's position and the
// rest of its text, which decodeError reads but never quotes.
var protojsonPositioned = regexp.MustCompile(`^proto:[\s\x{00a0}]+(?:syntax error )?\(line (\d+):(\d+)\): (.*)$`)

// oneofSetTwice matches the text of protojson's error for a second field
// of a oneof: `error parsing "value", oneof pkg.Msg.payload is already
// set`.
var oneofSetTwice = regexp.MustCompile(`^error parsing .*, oneof ([A-Za-z0-9_.]+) is already set$`)

// decodeError describes a body that does not decode without quoting it:
// what it keeps of protojson's error names a field, never a value, and
// encoding/json's syntax errors quote one character at most. An error it
// does not know becomes a generic one. raw is the JSON value protojson
// parsed and md the message it parsed it into, when known: a position in
// raw names the field whose value is wrong (a duration that is not one,
// a string that is not UTF-8), and md says what the field takes.
func decodeError(err error, raw []byte, md protoreflect.MessageDescriptor) error {
	if m := protojsonError.FindStringSubmatch(err.Error()); m != nil {
		return fmt.Errorf("request body, line %s column %s: %s", m[1], m[2], snakeFieldName(m[3]))
	}
	if m := protojsonPositioned.FindStringSubmatch(err.Error()); m != nil {
		if what := protojsonWhat(m[3], raw, m[1], m[2], md); what != "" {
			return fmt.Errorf("request body, line %s column %s: %s", m[1], m[2], what)
		}
	}
	if se, ok := errors.AsType[*json.SyntaxError](err); ok {
		return fmt.Errorf("request body is not valid JSON: %w", se)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New("request body ends inside its JSON value")
	}
	return errors.New("request body is not a valid JSON request")
}

// protojsonWhat describes text, what protojson said is wrong at line:col
// of raw, in words of its own that quote nothing of text or raw but
// field names of md; "" when it has none.
func protojsonWhat(text string, raw []byte, line, col string, md protoreflect.MessageDescriptor) string {
	if m := oneofSetTwice.FindStringSubmatch(text); m != nil {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(m[1]))
		od, ok := d.(protoreflect.OneofDescriptor)
		if err != nil || !ok || od.Fields().Len() < 2 {
			return "two fields of one oneof are set: set only one"
		}
		names := make([]string, od.Fields().Len())
		for i := range names {
			names[i] = string(od.Fields().Get(i).Name())
		}
		return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1] + ": set only one"
	}
	field := fieldAt(raw, line, col, md)
	name := "a field"
	if field != nil {
		name = string(field.Name())
	}
	switch {
	case strings.HasPrefix(text, "invalid google.protobuf.Duration value"),
		strings.HasPrefix(text, "google.protobuf.Duration value out of range"):
		if field == nil {
			name = "a duration"
		}
		return name + ": " + wantDuration
	case strings.HasPrefix(text, "invalid google.protobuf.Timestamp value"),
		strings.HasPrefix(text, "google.protobuf.Timestamp value out of range"):
		if field == nil {
			name = "a timestamp"
		}
		return name + ": " + wantTimestamp
	case text == "invalid UTF-8 in string":
		if field == nil {
			return "a string is not valid UTF-8"
		}
		return name + ": is not valid UTF-8"
	case strings.HasPrefix(text, "unexpected token") && field != nil:
		return name + ": " + wantJSON(field)
	}
	return ""
}

const (
	wantDuration  = `want a duration such as "30s"`
	wantTimestamp = `want an RFC 3339 timestamp such as "2026-01-02T15:04:05Z"`
)

// wantJSON says what JSON field takes.
func wantJSON(field protoreflect.FieldDescriptor) string {
	switch {
	case field.IsList():
		return "want a JSON array"
	case field.IsMap():
		return "want a JSON object"
	}
	switch field.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		switch field.Message().FullName() {
		case "google.protobuf.Duration":
			return wantDuration
		case "google.protobuf.Timestamp":
			return wantTimestamp
		}
		return "want a JSON object"
	case protoreflect.BoolKind:
		return "want true or false"
	case protoreflect.StringKind, protoreflect.BytesKind, protoreflect.EnumKind:
		return "want a JSON string"
	}
	return "want a number"
}

// fieldAt returns the field of md, or of a message md holds, whose key
// precedes the value at line:col (1-based, col counting runes as
// protojson does) of raw: `"timeout": <here>`. nil when raw has no key
// just before that position, or the key is no field of md's.
func fieldAt(raw []byte, line, col string, md protoreflect.MessageDescriptor) protoreflect.FieldDescriptor {
	l, err1 := strconv.Atoi(line)
	c, err2 := strconv.Atoi(col)
	if err1 != nil || err2 != nil || md == nil {
		return nil
	}
	i := 0
	for ; l > 1; l-- {
		nl := bytes.IndexByte(raw[i:], '\n')
		if nl < 0 {
			return nil
		}
		i += nl + 1
	}
	for ; c > 1 && i < len(raw); c-- {
		_, n := utf8.DecodeRune(raw[i:])
		i += n
	}
	before := bytes.TrimRight(raw[:i], " \t\r\n")
	before, ok := bytes.CutSuffix(before, []byte(":"))
	if !ok {
		return nil
	}
	before, ok = bytes.CutSuffix(bytes.TrimRight(before, " \t\r\n"), []byte(`"`))
	if !ok {
		return nil
	}
	// A field's name: letters, digits and "_", a bounded number of them.
	start := len(before)
	for start > 0 && len(before)-start < 64 && isNameByte(before[start-1]) {
		start--
	}
	if start == 0 || before[start-1] != '"' || start == len(before) {
		return nil
	}
	return findField(md, string(before[start:]))
}

func isNameByte(c byte) bool {
	return c == '_' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

// findField returns the field named key (its proto or JSON name) of md or
// of a message md holds, nearest first.
func findField(md protoreflect.MessageDescriptor, key string) protoreflect.FieldDescriptor {
	seen := map[protoreflect.FullName]bool{md.FullName(): true}
	for queue := []protoreflect.MessageDescriptor{md}; len(queue) > 0; queue = queue[1:] {
		fields := queue[0].Fields()
		if f := fields.ByName(protoreflect.Name(key)); f != nil {
			return f
		}
		if f := fields.ByJSONName(key); f != nil {
			return f
		}
		for i := range fields.Len() {
			f := fields.Get(i)
			if f.IsMap() {
				f = f.MapValue()
			}
			if sub := f.Message(); sub != nil && !seen[sub.FullName()] {
				seen[sub.FullName()] = true
				queue = append(queue, sub)
			}
		}
	}
	return nil
}

// invalidValueField is the field protojson names, by its lowerCamelCase
// JSON name, in an "invalid value" error.
var invalidValueField = regexp.MustCompile(`( field )([A-Za-z0-9_]+)$`)

// snakeFieldName names the field of protojson's "invalid value for T
// field keyId" as the API's JSON does, key_id (the broker's fields are
// snake_case in the proto, and protojson accepts both names).
func snakeFieldName(msg string) string {
	return invalidValueField.ReplaceAllStringFunc(msg, func(s string) string {
		var b strings.Builder
		for _, r := range s {
			if r >= 'A' && r <= 'Z' {
				b.WriteByte('_')
				r += 'a' - 'A'
			}
			b.WriteRune(r)
		}
		return b.String()
	})
}

// rawPathVariables hands the service every multi-segment path variable
// ({name}, {parent}) exactly as the caller escaped it in the path.
//
// google.api.http says that a variable spanning several segments
// ({name=repos/*/*/environments/*/secrets/*}) keeps "%2F" escaped, and
// resource names depend on it: environment "prod/eu" is "prod%2Feu", and
// the service unescapes that segment once. grpc-gateway (v2.32) instead
// unescapes each "*" segment of such a variable completely when the path
// holds an escape it must keep (".../prod/eu/..."), and otherwise matches
// the already-unescaped path (so "prod%252Feu" is "prod%2Feu", decoded
// twice by the time the service is done). This middleware matches the
// route's pattern once more against the escaped path and passes each
// multi-segment variable on raw; single-segment variables (repository_id)
// stay as grpc-gateway decoded them.
func (g *gateway) rawPathVariables(next runtime.HandlerFunc) runtime.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request, params map[string]string) {
		pat, ok := runtime.HTTPPattern(r.Context())
		if !ok {
			next(w, r, params)
			return
		}
		raw, err := rawPathParams(pat, escapedPath(r.URL), params)
		if err != nil {
			g.fail(w, r, status.Error(codes.InvalidArgument, "the request path does not match its route once escaped"))
			return
		}
		next(w, r, raw)
	}
}

// escapedPath is u's path as the request wrote it: RawPath, which net/url
// keeps when the path is not in its default encoding (and which
// grpc-gateway then matches), else Path in that default encoding.
func escapedPath(u *url.URL) string {
	if u.RawPath != "" {
		return u.RawPath
	}
	return u.EscapedPath()
}

// rawPathParams returns params with each multi-segment variable of pat
// replaced by its raw text in esc, the escaped path that pat matched.
func rawPathParams(pat runtime.Pattern, esc string, params map[string]string) (map[string]string, error) {
	if !strings.Contains(esc, "%") {
		// Nothing is escaped: what grpc-gateway matched is esc itself, and
		// its variables are the raw text already. (Most requests; the
		// match below costs about 3 µs and 20 allocations.)
		return params, nil
	}
	multi := multiSegmentVars(pat)
	if len(multi) == 0 {
		return params, nil
	}
	if !strings.HasPrefix(esc, "/") {
		return nil, runtime.ErrNotMatch
	}
	components := strings.Split(esc[1:], "/")
	// The verb is split off as ServeMux does it.
	var verb string
	if v := pat.Verb(); v != "" {
		last := components[len(components)-1]
		if i := len(last) - len(v) - 1; i > 0 && strings.HasSuffix(last, ":"+v) {
			components[len(components)-1], verb = last[:i], v
		}
	}
	// UnescapingModeLegacy captures segments without unescaping them.
	raw, err := pat.MatchAndEscape(components, verb, runtime.UnescapingModeLegacy)
	if err != nil {
		return nil, fmt.Errorf("matching %s against the escaped path: %w", pat, err)
	}
	out := maps.Clone(params)
	if out == nil {
		out = make(map[string]string, len(multi))
	}
	for _, v := range multi {
		out[v] = raw[v]
	}
	return out, nil
}

// patternVar matches a variable in a pattern's String form:
// "{name=orgs/*/actions/secrets/*}".
var patternVar = regexp.MustCompile(`\{([^{}=]+)=([^{}]*)\}`)

// multiSegmentVars returns the variables of pat whose template spans more
// than one segment, or any number of them ("**").
func multiSegmentVars(pat runtime.Pattern) []string {
	var vars []string
	for _, m := range patternVar.FindAllStringSubmatch(pat.String(), -1) {
		if strings.Contains(m[2], "/") || strings.Contains(m[2], "**") {
			vars = append(vars, m[1])
		}
	}
	return vars
}

// route is an HTTP method and a google.api.http path template.
type route struct {
	method, path string
}

// serviceRoutes returns SecretService's HTTP bindings, as its proto
// declares them.
func serviceRoutes() []route {
	return serviceBindings(false)
}

// serviceBodyRoutes returns the bindings of serviceRoutes that take a
// request body (body: "*", or a field).
func serviceBodyRoutes() []route {
	return serviceBindings(true)
}

// methodRoutes returns the HTTP bindings of SecretService's method
// fullMethod ("/secretbroker.v1.SecretService/Name").
func methodRoutes(fullMethod string) []route {
	var out []route
	svcs := secretbrokerv1.File_secretbroker_v1_secret_service_proto.Services()
	for i := range svcs.Len() {
		methods := svcs.Get(i).Methods()
		for j := range methods.Len() {
			m := methods.Get(j)
			if "/"+string(svcs.Get(i).FullName())+"/"+string(m.Name()) != fullMethod {
				continue
			}
			rule, _ := proto.GetExtension(m.Options(), annotations.E_Http).(*annotations.HttpRule)
			out = appendRule(out, rule, false)
		}
	}
	return out
}

// serviceBindings returns SecretService's HTTP bindings, or only those
// that take a request body.
func serviceBindings(bodyOnly bool) []route {
	var out []route
	svcs := secretbrokerv1.File_secretbroker_v1_secret_service_proto.Services()
	for i := range svcs.Len() {
		methods := svcs.Get(i).Methods()
		for j := range methods.Len() {
			rule, _ := proto.GetExtension(methods.Get(j).Options(), annotations.E_Http).(*annotations.HttpRule)
			out = appendRule(out, rule, bodyOnly)
		}
	}
	return out
}

// appendRule appends rule's binding and its additional bindings to out,
// or only those of them that take a body.
func appendRule(out []route, rule *annotations.HttpRule, bodyOnly bool) []route {
	if rule == nil {
		return out
	}
	if !bodyOnly || rule.GetBody() != "" {
		out = appendBinding(out, rule)
	}
	for _, b := range rule.GetAdditionalBindings() {
		out = appendRule(out, b, bodyOnly)
	}
	return out
}

// appendBinding appends rule's own binding, without its additional ones.
func appendBinding(out []route, rule *annotations.HttpRule) []route {
	switch p := rule.GetPattern().(type) {
	case *annotations.HttpRule_Get:
		out = append(out, route{http.MethodGet, p.Get})
	case *annotations.HttpRule_Put:
		out = append(out, route{http.MethodPut, p.Put})
	case *annotations.HttpRule_Post:
		out = append(out, route{http.MethodPost, p.Post})
	case *annotations.HttpRule_Delete:
		out = append(out, route{http.MethodDelete, p.Delete})
	case *annotations.HttpRule_Patch:
		out = append(out, route{http.MethodPatch, p.Patch})
	case *annotations.HttpRule_Custom:
		out = append(out, route{p.Custom.GetKind(), p.Custom.GetPath()})
	}
	return out
}

// routeProbe is a grpc-gateway mux with the gateway's routes whose
// handlers call nothing: they report the route a request matched.
type routeProbe struct {
	mux     *runtime.ServeMux
	methods []string // sorted
}

// probeResult is what a probe's handler saw.
type probeResult struct {
	matched bool
	pat     runtime.Pattern
	params  map[string]string
}

type probeKey struct{}

func newRouteProbe(routes []route) (*routeProbe, error) {
	mux := runtime.NewServeMux(
		runtime.WithUnescapingMode(unescapingMode),
		runtime.WithDisablePathLengthFallback(),
		runtime.WithErrorHandler(func(context.Context, *runtime.ServeMux, runtime.Marshaler, http.ResponseWriter, *http.Request, error) {
		}),
		runtime.WithRoutingErrorHandler(func(context.Context, *runtime.ServeMux, runtime.Marshaler, http.ResponseWriter, *http.Request, int) {}),
	)
	p := &routeProbe{mux: mux}
	for _, rt := range routes {
		err := mux.HandlePath(rt.method, rt.path, func(_ http.ResponseWriter, r *http.Request, params map[string]string) {
			if res, ok := r.Context().Value(probeKey{}).(*probeResult); ok {
				res.matched = true
				res.pat, _ = runtime.HTTPPattern(r.Context())
				res.params = params
			}
		})
		if err != nil {
			return nil, fmt.Errorf("route %s %s: %w", rt.method, rt.path, err)
		}
		if !slices.Contains(p.methods, rt.method) {
			p.methods = append(p.methods, rt.method)
		}
	}
	slices.Sort(p.methods)
	return p, nil
}

// match routes r as if its method were method.
func (p *routeProbe) match(r *http.Request, method string) probeResult {
	var res probeResult
	r2 := r.WithContext(context.WithValue(r.Context(), probeKey{}, &res))
	r2.Method = method
	p.mux.ServeHTTP(discardResponse{}, r2)
	return res
}

// allowed returns the methods that some route allows on r's path.
func (p *routeProbe) allowed(r *http.Request) []string {
	var allow []string
	for _, m := range p.methods {
		if p.match(r, m).matched {
			allow = append(allow, m)
		}
	}
	return allow
}

// discardResponse is a ResponseWriter that drops what is written to it.
type discardResponse struct{}

func (discardResponse) Header() http.Header         { return http.Header{} }
func (discardResponse) Write(b []byte) (int, error) { return len(b), nil }
func (discardResponse) WriteHeader(int)             {}
