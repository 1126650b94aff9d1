package main

import (
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
)

// A query parameter that is not a field of the route's request is refused
// (knownQuery), as an unknown field of a JSON body is: grpc-gateway would
// ignore it, and a caller used to GitHub's per_page and page, or one
// with a typo, would get the first page of the default size, every time,
// without a word.

// maxQuotedQueryKey bounds how much of an unknown query parameter's name
// an error quotes.
const maxQuotedQueryKey = 64

// queryRoutes holds, by routeKey, the query parameters each route of
// SecretService takes: the top-level fields of its request, by proto and
// JSON name, that are neither path variables nor read from the body
// (google.api.http: with body "*" there are none).
type queryRoutes map[string]map[string]bool

// pathVar matches a variable of a path template, "{name=...}" or
// "{repository}", capturing its field path.
var pathVar = regexp.MustCompile(`\{([^{}=]+)(?:=[^{}]*)?\}`)

// serviceQueryRoutes returns SecretService's queryRoutes, from its proto.
func serviceQueryRoutes() queryRoutes {
	out := queryRoutes{}
	svcs := secretbrokerv1.File_secretbroker_v1_secret_service_proto.Services()
	for i := range svcs.Len() {
		methods := svcs.Get(i).Methods()
		for j := range methods.Len() {
			m := methods.Get(j)
			rule, _ := proto.GetExtension(m.Options(), annotations.E_Http).(*annotations.HttpRule)
			out.add(m.Input(), rule)
		}
	}
	return out
}

// add records the query parameters of rule's bindings (its own and the
// additional ones) for requests of type in.
func (q queryRoutes) add(in protoreflect.MessageDescriptor, rule *annotations.HttpRule) {
	if rule == nil {
		return
	}
	for _, rt := range appendBinding(nil, rule) {
		params := map[string]bool{}
		if rule.GetBody() != "*" {
			bound := map[string]bool{rule.GetBody(): true}
			for _, v := range pathVar.FindAllStringSubmatch(rt.path, -1) {
				bound[strings.SplitN(v[1], ".", 2)[0]] = true
			}
			fields := in.Fields()
			for k := range fields.Len() {
				f := fields.Get(k)
				if !bound[string(f.Name())] {
					params[string(f.Name())], params[f.JSONName()] = true, true
				}
			}
		}
		q[routeKey(rt.method, rt.path)] = params
	}
	for _, b := range rule.GetAdditionalBindings() {
		q.add(in, b)
	}
}

// knownQuery refuses a request to a route of SecretService whose query
// names a parameter the route does not take, with INVALID_ARGUMENT. A
// request without a query (most) costs a comparison.
func (g *gateway) knownQuery(next runtime.HandlerFunc) runtime.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request, params map[string]string) {
		if r.URL.RawQuery == "" {
			next(w, r, params)
			return
		}
		pat, ok := runtime.HTTPPattern(r.Context())
		if !ok {
			next(w, r, params)
			return
		}
		taken, ok := g.query[r.Method+" "+pat.String()]
		if !ok { // not SecretService's (/healthz takes ?service=)
			next(w, r, params)
			return
		}
		q, err := url.ParseQuery(r.URL.RawQuery) // checkRequestURL parsed it already
		if err != nil {
			g.fail(w, r, status.Errorf(codes.InvalidArgument, "the query string is malformed: %v", err))
			return
		}
		for key := range q {
			if taken[strings.SplitN(key, ".", 2)[0]] {
				continue
			}
			g.fail(w, r, status.Error(codes.InvalidArgument, unknownQueryMessage(key, taken)))
			return
		}
		next(w, r, params)
	}
}

// unknownQueryMessage says that key is not a query parameter of a route
// taking those of taken, pointing GitHub's paging parameters to the
// API's own.
func unknownQueryMessage(key string, taken map[string]bool) string {
	shown := key
	if len(shown) > maxQuotedQueryKey {
		shown = shown[:maxQuotedQueryKey] + "..."
	}
	msg := "unknown query parameter " + strconv.Quote(shown)
	if (key == "per_page" || key == "page") && taken["page_size"] {
		msg += ": this API pages with page_size and page_token (the next_page_token of the previous page)"
	}
	return msg
}
