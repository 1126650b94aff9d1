package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/secretbroker/secretbroker/service/identity/identitytest"
)

// walkOrder is when TestOpenAPIEveryRouteOnTheBroker sends an operation:
// the secrets are created first and deleted last, so that every call in
// between finds them.
func walkOrder(o openAPIOperation) int {
	rpc := strings.TrimRight(strings.TrimPrefix(o.op.OperationID, "SecretService_"), "0123456789")
	switch rpc {
	case "PutSecret", "BatchPutSecrets":
		return 0
	case "DeleteSecret", "BatchDeleteSecrets":
		return 3
	case "RemoveSelectedRepository":
		return 2
	}
	return 1
}

// walkBodies are the JSON bodies TestOpenAPIEveryRouteOnTheBroker sends,
// by RPC, each one a JSON user would send to succeed; a path's own fields
// are never in its body.
var walkBodies = map[string]string{
	"PutSecret":               `{"value":"openapi-plain"}`,
	"PutSecret/orgs":          `{"value":"openapi-plain","visibility":"selected","selected_repository_ids":[]}`,
	"SyncSecrets/orgs":        `{"secrets":{"OPENAPI_TOKEN":"openapi-plain"},"dry_run":true,"visibility":"selected"}`,
	"SetSelectedRepositories": `{"selected_repository_ids":["1296269"]}`,
	"SyncSecrets":             `{"secrets":{"OPENAPI_TOKEN":"openapi-plain"},"dry_run":true}`,
	"BatchPutSecrets":         `{"requests":[{"name":"orgs/octo-org/actions/secrets/OPENAPI_BATCH","value":"openapi-plain","visibility":"private"}],"async":true}`,
	"BatchDeleteSecrets":      `{"names":["orgs/octo-org/actions/secrets/OPENAPI_BATCH"]}`,
	"CancelOperation":         `{}`,
	"WaitOperation":           `{"timeout":"5s"}`,
}

// walkQuery are the values TestOpenAPIEveryRouteOnTheBroker gives the
// document's query parameters: every one the document offers is sent, and
// must be taken.
var walkQuery = map[string]string{
	"page_size":     "10",
	"page_token":    "",
	"not_done":      "false",
	"repository_id": "1296269",
	"service":       "secretbroker.v1.SecretService", // GET /healthz
}

// TestOpenAPIEveryRouteOnTheBroker sends every operation of the served
// document, with every query parameter it documents, its path built from the document as a generated client builds
// it, its body a JSON user's, to the dev broker (the real service against
// the emulator), and checks that each succeeds with a status the document
// names for success and an answer its schema accepts: the whole API as a
// JSON user reads it from /openapi.json, and not only its errors.
func TestOpenAPIEveryRouteOnTheBroker(t *testing.T) {
	b := startBroker(t, devConfig(t))
	_, doc3 := fetchOpenAPI(t, b.httpAddr)
	ops := openAPIOperations(doc3)
	slices.SortStableFunc(ops, func(x, y openAPIOperation) int { return walkOrder(x) - walkOrder(y) })
	operation := "" // the batch's operation, once BatchPutSecrets made it
	for _, o := range ops {
		rpc := strings.TrimRight(strings.TrimPrefix(o.op.OperationID, "SecretService_"), "0123456789")
		t.Run(o.method+" "+o.path, func(t *testing.T) {
			req, params := openAPIRequest(t, b.httpAddr, o)
			q := req.URL.Query()
			for _, p := range o.op.Parameters {
				if p.Value.In != openapi3.ParameterInQuery {
					continue
				}
				v, ok := walkQuery[p.Value.Name]
				if !ok {
					t.Fatalf("query parameter %q has no test value", p.Value.Name)
				}
				q.Set(p.Value.Name, v)
			}
			req.URL.RawQuery = q.Encode()
			if _, ok := params["operation"]; ok {
				if operation == "" {
					t.Fatal("no operation: BatchPutSecrets did not run first")
				}
				params["operation"] = operation
				req.URL.Path = strings.Replace(req.URL.Path, openAPIParamValues["operation"], operation, 1)
				req.URL.RawPath = ""
			}
			send, ok := walkBodies[rpc]
			if b, orgs := walkBodies[rpc+"/orgs"]; orgs && strings.HasPrefix(o.path, "/v1/orgs/") {
				send = b
			}
			if ok && o.op.RequestBody != nil {
				req.Body = io.NopCloser(strings.NewReader(send))
				req.ContentLength = int64(len(send))
			}
			resp, body := sendRead(t, b.http, req)
			if resp.StatusCode/100 != 2 {
				t.Fatalf("%s %s = %d %s", req.Method, req.URL.EscapedPath(), resp.StatusCode, body)
			}
			if strings.Contains(string(body), "openapi-plain") {
				t.Fatalf("the answer holds the secret's value: %s", body)
			}
			if rpc == "BatchPutSecrets" {
				var m struct{ Operation struct{ Name string } }
				if err := json.Unmarshal(body, &m); err != nil || !strings.HasPrefix(m.Operation.Name, "operations/") {
					t.Fatalf("BatchPutSecrets answered no operation: %s (%v)", body, err)
				}
				operation, _ = url.PathUnescape(strings.TrimPrefix(m.Operation.Name, "operations/"))
			}
			if err := validateAnswer(t.Context(), doc3, o, req, params, resp, body); err != nil {
				t.Errorf("the answer does not match the document: %v\n%d %s", err, resp.StatusCode, body)
			}
		})
	}

	// The gateway's refusals before any RPC runs, of every operation they
	// apply to (gateway.ServeHTTP, readBody): 415 to a POST, PUT or PATCH
	// whose body is not JSON, 413 to a body over the limit on a route
	// that takes one.
	for _, o := range ops {
		if o.method != http.MethodPost && o.method != http.MethodPut && o.method != http.MethodPatch {
			continue
		}
		t.Run("refused "+o.method+" "+o.path, func(t *testing.T) {
			req, params := openAPIRequest(t, b.httpAddr, o)
			req.Body, req.ContentLength = io.NopCloser(strings.NewReader("{}")), 2
			req.Header.Set("Content-Type", "text/plain")
			resp, body := sendRead(t, b.http, req)
			if resp.StatusCode != http.StatusUnsupportedMediaType {
				t.Errorf("a text/plain body: %d %s, want 415", resp.StatusCode, body)
			} else if err := validateAnswer(t.Context(), doc3, o, req, params, resp, body); err != nil {
				t.Errorf("the 415 does not match the document: %v\n%s", err, body)
			}

			if o.op.RequestBody == nil {
				return
			}
			req, params = openAPIRequest(t, b.httpAddr, o)
			resp, body = sendTooLarge(t, b.httpAddr, req)
			if resp.StatusCode != http.StatusRequestEntityTooLarge {
				t.Errorf("a body over the limit: %d %s, want 413", resp.StatusCode, body)
			} else if err := validateAnswer(t.Context(), doc3, o, req, params, resp, body); err != nil {
				t.Errorf("the 413 does not match the document: %v\n%s", err, body)
			}
		})
	}

	// The gateway's own paths, which must be in the document: GET
	// /healthz's errors, a service the broker does not know (404) and a
	// query that is not UTF-8 (400); GET /openapi.json itself (200, its
	// query ignored) and a query that is not UTF-8 (400).
	for _, tt := range []struct {
		path, query string
		want        int
	}{
		{"/healthz", "service=no.such.Service", http.StatusNotFound},
		{"/healthz", "service=%ff", http.StatusBadRequest},
		{"/openapi.json", "", http.StatusOK},
		{"/openapi.json", "format=yaml", http.StatusOK},
		{"/openapi.json", "format=%ff", http.StatusBadRequest},
	} {
		t.Run("GET "+tt.path+"?"+tt.query, func(t *testing.T) {
			i := slices.IndexFunc(ops, func(o openAPIOperation) bool { return o.method == http.MethodGet && o.path == tt.path })
			if i < 0 {
				t.Fatalf("the document has no GET %s", tt.path)
			}
			req, params := openAPIRequest(t, b.httpAddr, ops[i])
			req.URL.RawQuery = tt.query
			resp, body := sendRead(t, b.http, req)
			if resp.StatusCode != tt.want {
				t.Fatalf("%d %s, want %d", resp.StatusCode, body, tt.want)
			}
			if err := validateAnswer(t.Context(), doc3, ops[i], req, params, resp, body); err != nil {
				t.Errorf("the %d does not match the document: %v\n%s", resp.StatusCode, err, body)
			}
		})
	}

	// A request to each path of the document, with each method that no
	// path its URL matches lists, is answered the document's
	// MethodNotAllowed (a note in the info's description names it): 405,
	// an Allow header naming exactly the methods the matching paths list
	// (a URL may match several: .../secrets/public-key is also
	// .../secrets/{secret}), and a google.rpc.Status.
	t.Run("405", func(t *testing.T) {
		const ref = "#/responses/MethodNotAllowed"
		if !strings.Contains(doc3.Info.Description, "405") || !strings.Contains(doc3.Info.Description, ref) {
			t.Errorf("the info's description does not say that a method a path does not list is answered %s: %q", ref, doc3.Info.Description)
		}
		documented := doc3.Components.Responses["MethodNotAllowed"]
		if documented == nil || documented.Value == nil || documented.Value.Content.Get("application/json") == nil ||
			documented.Value.Content.Get("application/json").Schema == nil || documented.Value.Content.Get("application/json").Schema.Value == nil {
			t.Fatalf("the document has no MethodNotAllowed response with a body schema: %v", doc3.Components.Responses)
		}
		schema := documented.Value.Content.Get("application/json").Schema
		if schema.Ref != "#/components/schemas/rpcStatus" {
			t.Errorf("MethodNotAllowed's body is %q, want google.rpc.Status", schema.Ref)
		}
		methods := []string{http.MethodDelete, http.MethodGet, http.MethodPatch, http.MethodPost, http.MethodPut}
		templates := map[string]*regexp.Regexp{} // by document path: what its URLs look like, escaped
		for path := range doc3.Paths.Map() {
			templates[path] = regexp.MustCompile("^" + regexp.MustCompile(`\\\{[^{}]*\\\}`).ReplaceAllString(regexp.QuoteMeta(path), "[^/]+") + "$")
		}
		sent := 0
		for path, item := range doc3.Paths.Map() {
			var first string
			for m := range item.Operations() {
				first = m
			}
			o := openAPIOperation{path: path, method: first, op: item.GetOperation(first), item: item}
			built, _ := openAPIRequest(t, b.httpAddr, o)
			var listed []string // by every path the URL matches
			for other, re := range templates {
				if !re.MatchString(built.URL.EscapedPath()) {
					continue
				}
				for m := range doc3.Paths.Value(other).Operations() {
					if !slices.Contains(listed, m) {
						listed = append(listed, m)
					}
				}
			}
			slices.Sort(listed)
			for _, method := range methods {
				if slices.Contains(listed, method) {
					continue
				}
				req, _ := openAPIRequest(t, b.httpAddr, o)
				req.Method, req.Body, req.ContentLength = method, nil, 0
				req.Header.Del("Content-Type")
				resp, body := sendRead(t, b.http, req)
				sent++
				if resp.StatusCode != http.StatusMethodNotAllowed {
					t.Errorf("%s %s = %d %s, want 405", method, path, resp.StatusCode, body)
					continue
				}
				for name := range documented.Value.Headers {
					if len(resp.Header.Values(name)) == 0 {
						t.Errorf("%s %s: the 405 has no %s header, which the document lists", method, path, name)
					}
				}
				if got, want := resp.Header.Get("Allow"), strings.Join(listed, ", "); got != want {
					t.Errorf("%s %s: Allow %q, want the methods the document lists, %q", method, path, got, want)
				}
				var v any
				if err := json.Unmarshal(body, &v); err != nil {
					t.Errorf("%s %s: the 405's body is not JSON: %v\n%s", method, path, err, body)
				} else if err := schema.Value.VisitJSON(v); err != nil {
					t.Errorf("%s %s: the 405 does not match the document's MethodNotAllowed: %v\n%s", method, path, err, body)
				}
			}
		}
		if sent == 0 {
			t.Error("no path of the document leaves a method out")
		}
	})

	// Over the caller's rate, every route under /v1/ answers 429 with
	// Retry-After (the front door, admitHTTP); /healthz is not limited.
	t.Run("429 over the caller's rate", func(t *testing.T) {
		cfg := devConfig(t)
		cfg.CallerRPS, cfg.CallerBurst = 0.001, 1 // one call, then one per 1,000 s
		limited := startBroker(t, cfg)
		spent := false // the burst
		for _, o := range ops {
			limitedRoute := strings.HasPrefix(o.path, "/v1/")
			if limitedRoute && !spent {
				req, _ := openAPIRequest(t, limited.httpAddr, o)
				sendRead(t, limited.http, req)
				spent = true
			}
			req, params := openAPIRequest(t, limited.httpAddr, o)
			resp, body := sendRead(t, limited.http, req)
			if limitedRoute != (resp.StatusCode == http.StatusTooManyRequests) {
				t.Errorf("%s %s = %d %s; rate-limited: %v", o.method, o.path, resp.StatusCode, body, limitedRoute)
				continue
			}
			if err := validateAnswer(t.Context(), doc3, o, req, params, resp, body); err != nil {
				t.Errorf("%s %s: the %d does not match the document: %v\n%s", o.method, o.path, resp.StatusCode, err, body)
			}
		}
	})
}

// sendTooLarge sends req's head to the gateway at addr with a
// Content-Length one byte over maxRequestBytes and none of the body, and
// returns the answer the gateway gives by the length alone.
func sendTooLarge(t *testing.T, addr string, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	conn := dialGateway(t, addr)
	defer conn.Close()
	head := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n",
		req.Method, req.URL.RequestURI(), addr, maxRequestBytes+1)
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		t.Fatal(err)
	}
	return resp, bodyOf(t, resp)
}

// TestOpenAPIAuth checks what the document says of authentication against
// a broker that requires it: the document's one security scheme, required
// of every operation, is the Authorization header with "Bearer TOKEN";
// every route answers 401 without it, with the document's WWW-Authenticate
// header and error shape, and takes the token the scheme describes.
//
// The broker also trusts JWTs from an issuer whose keys it cannot fetch:
// a JWT is refused with 503 and Retry-After on every route that requires
// the scheme, and the broker's health is NOT_SERVING, which the open
// GET /healthz answers with 503.
func TestOpenAPIAuth(t *testing.T) {
	callers := writeFile(t, "callers.yaml", "callers:\n  - name: admin\n    token_sha256: "+sha256Hex(adminToken)+"\n")
	fetched := make(chan struct{}, 1)
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		select {
		case fetched <- struct{}{}:
		default:
		}
		http.Error(w, "keys unavailable", http.StatusServiceUnavailable)
	}))
	t.Cleanup(jwks.Close)
	b := startBroker(t, securedConfig(t, "--callers-file="+callers, "--jwt-issuer=https://kubernetes.default.svc",
		"--jwt-audience=secretbroker", "--jwt-jwks-url="+jwks.URL+"/openid/v1/jwks"))
	select {
	case <-fetched:
	case <-time.After(30 * time.Second):
		t.Fatal("the broker never fetched the JWKS")
	}
	now := time.Now()
	jwt := identitytest.NewIssuer(t, "k1").Token(t, map[string]any{"iss": "https://kubernetes.default.svc", "aud": []string{"secretbroker"},
		"sub": "system:serviceaccount:ci:deployer", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()})
	doc2, doc3 := fetchOpenAPI(t, b.httpAddr)
	scheme, ok := doc2.SecurityDefinitions["bearer"]
	if len(doc2.SecurityDefinitions) != 1 || !ok || scheme.Type != "apiKey" || scheme.In != "header" || scheme.Name != "Authorization" ||
		!strings.Contains(scheme.Description, "Bearer TOKEN") {
		t.Fatalf("security definitions %+v, want one: bearer, the Authorization header with Bearer TOKEN", doc2.SecurityDefinitions)
	}
	if len(doc2.Security) != 1 || len(doc2.Security[0]) != 1 || doc2.Security[0]["bearer"] == nil {
		t.Fatalf("security %v, want bearer required", doc2.Security)
	}
	for _, o := range openAPIOperations(doc3) {
		t.Run(o.method+" "+o.path, func(t *testing.T) {
			// An operation open to all says so with an empty security
			// list; any other keeps the document's.
			open := o.op.Security != nil && len(*o.op.Security) == 0
			if o.op.Security != nil && !open {
				t.Errorf("the operation overrides the document's security: %v", *o.op.Security)
			}
			if !open {
				if h := o.op.Responses.Status(http.StatusUnauthorized).Value.Headers["WWW-Authenticate"]; h == nil {
					t.Error("401 documents no WWW-Authenticate header")
				}
				for _, code := range []int{http.StatusTooManyRequests, http.StatusServiceUnavailable} {
					if h := o.op.Responses.Status(code).Value.Headers["Retry-After"]; h == nil || !h.Value.Schema.Value.Type.Is("integer") {
						t.Errorf("%d documents no integer Retry-After header", code)
					}
				}
			}
			for _, tok := range []string{"", adminToken} {
				req, params := openAPIRequest(t, b.httpAddr, o)
				if tok != "" {
					req.Header.Set(scheme.Name, "Bearer "+tok)
				}
				resp, body := sendRead(t, b.http, req)
				if (resp.StatusCode == http.StatusUnauthorized) != (tok == "" && !open) {
					t.Fatalf("token %v (operation open: %v): %d %s", tok != "", open, resp.StatusCode, body)
				}
				if tok != "" || open {
					continue
				}
				if got := resp.Header.Get("WWW-Authenticate"); got != `Bearer realm="secretbroker"` {
					t.Errorf("WWW-Authenticate %q", got)
				}
				if err := validateAnswer(t.Context(), doc3, o, req, params, resp, body); err != nil {
					t.Errorf("the 401 does not match the document: %v\n%s", err, body)
				}
			}
			// A JWT while the issuer's keys cannot be fetched: 503 with
			// Retry-After from the front door; /healthz, which takes no
			// credentials, answers 503 for the health it reports;
			// /openapi.json is served all the same.
			req, params := openAPIRequest(t, b.httpAddr, o)
			req.Header.Set(scheme.Name, "Bearer "+jwt)
			resp, body := sendRead(t, b.http, req)
			want := http.StatusServiceUnavailable
			if o.path == "/openapi.json" {
				want = http.StatusOK
			}
			if resp.StatusCode != want {
				t.Fatalf("a JWT before the keys load: %d %s, want %d", resp.StatusCode, body, want)
			}
			if err := validateAnswer(t.Context(), doc3, o, req, params, resp, body); err != nil {
				t.Errorf("the %d does not match the document: %v\n%s", resp.StatusCode, err, body)
			}
		})
	}
}
