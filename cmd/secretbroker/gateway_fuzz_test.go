package main

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzGatewayPath feeds request targets through the gateway's path
// handling: the URL check, route matching as the gateway's mux does it,
// and the raw path variables. Nothing panics; a target the check accepts
// yields multi-segment variables that are text of the escaped path, valid
// UTF-8, and exactly one escaping level above what grpc-gateway decodes.
func FuzzGatewayPath(f *testing.F) {
	for _, s := range []string{
		"/v1/repos/octo-org/hello-world/environments/prod%252Feu/secrets/X",
		"/v1/repos/octo-org/hello-world/environments/prod%2Feu/secrets/X",
		"/v1/repos/o/r/environments/prod%2feu/secrets",
		"/v1/repos/o/r/environments/a%2Fb%20c/secrets/public-key?page_size=1",
		"/v1/repos/o/r/environments/caf%C3%A9/secrets/X",
		"/v1/repos/o/r/environments/café/secrets/X",
		"/v1/repos/o/r/environments/%ff/secrets/X",
		"/v1/repos/o/r/environments/\xc3%a9/secrets/X",
		"/v1/repos/o/r/environments//secrets/X",
		"/v1/orgs/o/actions/secrets/X%2525/repositories/%31%32%33",
		"/v1/orgs/o/agents/secrets/X/repositories/1?%fe=1",
		"/v1/secrets:batchPut",
		"/v1/secrets%3AbatchDelete",
		"/v1/secrets:batchPut:batchPut",
		"/v1/orgs/o/actions/secrets/:batchPut",
		"/openapi.json",
		"/",
		"",
	} {
		f.Add(s)
	}
	routes := append(serviceRoutes(), route{http.MethodGet, "/openapi.json"}, route{http.MethodGet, "/healthz"})
	probe, err := newRouteProbe(routes)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, target string) {
		u, err := url.ParseRequestURI(target)
		if err != nil {
			return // net/http answers 400 itself
		}
		urlErr := checkRequestURL(u)
		esc := escapedPath(u)
		for _, m := range probe.methods {
			req := (&http.Request{Method: m, URL: u, Header: http.Header{}}).WithContext(context.Background())
			res := probe.match(req, m)
			if !res.matched {
				continue
			}
			// Whatever the path, rawPathParams does not panic.
			_, _ = rawPathParams(res.pat, target, res.params)
			if urlErr != nil {
				continue // refused before the mux
			}
			raw, err := rawPathParams(res.pat, esc, res.params)
			if err != nil {
				t.Fatalf("%s %q matched %s but not once escaped: %v", m, target, res.pat, err)
			}
			multi := multiSegmentVars(res.pat)
			for k, v := range res.params {
				if !strings.Contains(res.pat.String(), "{"+k+"=") {
					t.Errorf("%s: variable %q is not in the pattern", res.pat, k)
				}
				isMulti := false
				for _, mv := range multi {
					isMulti = isMulti || mv == k
				}
				if !isMulti && raw[k] != v {
					t.Errorf("%s %q: single-segment %s = %q, want grpc-gateway's %q", m, target, k, raw[k], v)
				}
			}
			for _, k := range multi {
				v, ok := raw[k]
				if !ok {
					t.Fatalf("%s %q: no %s", m, target, k)
				}
				if !strings.Contains(esc, v) {
					t.Errorf("%s %q: %s = %q is not in the escaped path %q", m, target, k, v, esc)
				}
				if !utf8.ValidString(v) {
					t.Errorf("%s %q: %s = %q is not valid UTF-8", m, target, k, v)
				}
				if dec, err := url.PathUnescape(v); err != nil || dec != res.params[k] {
					t.Errorf("%s %q: %s = %q unescapes to %q (%v), grpc-gateway decoded %q", m, target, k, v, dec, err, res.params[k])
				}
			}
		}
	})
}
