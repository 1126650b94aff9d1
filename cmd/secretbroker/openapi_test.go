package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi2"
	"github.com/getkin/kin-openapi/openapi2conv"
	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// openAPIParamValues are the values the tests give each path parameter of
// the document, unescaped: a generated client path-escapes them. A
// parameter the document names otherwise fails the test, so the names stay
// these few, the same on every route.
var openAPIParamValues = map[string]string{
	"org":         "octo-org",
	"owner":       "octo-org",
	"repo":        "hello-world",
	"environment": "prod/eu",
	"secret":      "OPENAPI_TOKEN",
	"repository":  "hello-world",
	"operation":   "0190a1b2c3d4e5f60718",
}

// fetchOpenAPI fetches /openapi.json from the gateway at addr, checks it
// as Swagger 2.0 and converted to OpenAPI 3 with kin-openapi's validator,
// and returns both.
func fetchOpenAPI(t *testing.T, addr string) (*openapi2.T, *openapi3.T) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /openapi.json = %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var doc2 openapi2.T
	if err := json.Unmarshal(raw, &doc2); err != nil {
		t.Fatalf("decoding the Swagger 2.0 document: %v", err)
	}
	doc3, err := openapi2conv.ToV3(&doc2)
	if err != nil {
		t.Fatalf("converting to OpenAPI 3: %v", err)
	}
	if err := doc3.Validate(t.Context()); err != nil {
		t.Fatalf("the OpenAPI 3 document is not valid: %v", err)
	}
	return &doc2, doc3
}

// openAPIOperation is one operation of the document.
type openAPIOperation struct {
	path, method string
	op           *openapi3.Operation
	item         *openapi3.PathItem
}

func openAPIOperations(doc *openapi3.T) []openAPIOperation {
	var ops []openAPIOperation
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			ops = append(ops, openAPIOperation{path, method, op, item})
		}
	}
	slices.SortFunc(ops, func(a, b openAPIOperation) int {
		return strings.Compare(a.method+" "+a.path, b.method+" "+b.path)
	})
	return ops
}

// routeShape is a google.api.http template or a document path with every
// variable as "{}": "/v1/{name=orgs/*/actions/secrets/*}" and
// "/v1/orgs/{org}/actions/secrets/{secret}" are both
// "/v1/orgs/{}/actions/secrets/{}".
func routeShape(path string) string {
	path = regexp.MustCompile(`\{[^{}=]+=([^{}]*)\}`).ReplaceAllString(path, "$1")
	path = regexp.MustCompile(`\{[^{}]*\}`).ReplaceAllString(path, "*")
	return strings.ReplaceAll(path, "*", "{}")
}

// TestOpenAPIDocument checks the served document with kin-openapi, and
// that it holds one operation per route, each with its real segments, and
// sends every route, built from the document as a client generator would
// build it, through the gateway to the RPC the document names.
func TestOpenAPIDocument(t *testing.T) {
	f := startFakeBackend(t)
	doc2, doc3 := fetchOpenAPI(t, f.addr)

	if doc2.Info.Title != "secretbroker" || doc2.Info.Version != "v1" {
		t.Errorf("info: title %q version %q, want secretbroker v1", doc2.Info.Title, doc2.Info.Version)
	}

	ops := openAPIOperations(doc3)
	t.Run("one path per route", func(t *testing.T) {
		var want, got []string
		// The RPCs' routes, the gateway's health check and this document.
		for _, rt := range append(serviceRoutes(), route{http.MethodGet, "/healthz"}, route{http.MethodGet, "/openapi.json"}) {
			want = append(want, rt.method+" "+routeShape(rt.path))
		}
		for _, o := range ops {
			got = append(got, o.method+" "+routeShape(o.path))
		}
		slices.Sort(want)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("document routes:\n%s\nproto routes:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	})

	t.Run("responses", func(t *testing.T) {
		for _, o := range ops {
			if !strings.HasPrefix(o.path, "/v1/") {
				continue // /healthz, /openapi.json: no RPC of the API (TestOpenAPIEveryRouteOnTheBroker, TestOpenAPIAuth)
			}
			for _, code := range []int{400, 401, 403, 404, 409, 429, 503} {
				r := o.op.Responses.Status(code)
				if r == nil || r.Value == nil || r.Value.Content.Get("application/json") == nil ||
					r.Value.Content.Get("application/json").Schema.Ref != "#/components/schemas/rpcStatus" {
					t.Errorf("%s %s: response %d is not a documented google.rpc.Status", o.method, o.path, code)
				}
			}
			created := o.op.Responses.Status(http.StatusCreated)
			isPut := strings.HasPrefix(o.op.OperationID, "SecretService_PutSecret")
			if isPut != (created != nil) {
				t.Errorf("%s %s (%s): documents 201: %v", o.method, o.path, o.op.OperationID, created != nil)
			}
			if isPut && created.Value.Content.Get("application/json").Schema.Ref != "#/components/schemas/v1PutSecretResponse" {
				t.Errorf("%s %s: 201 is not a PutSecretResponse", o.method, o.path)
			}
			// The calls that answer nothing answer 204, as GitHub does.
			noContent := o.op.Responses.Status(http.StatusNoContent)
			empty := false
			for _, prefix := range []string{"SecretService_DeleteSecret", "SecretService_SetSelectedRepositories",
				"SecretService_AddSelectedRepository", "SecretService_RemoveSelectedRepository"} {
				empty = empty || strings.HasPrefix(o.op.OperationID, prefix)
			}
			if empty != (noContent != nil) {
				t.Errorf("%s %s (%s): documents 204: %v", o.method, o.path, o.op.OperationID, noContent != nil)
			}
			// protoc-gen-openapiv2 gives every response a schema, "{}" when
			// none is set: a 204's is that, no shape.
			if noContent != nil {
				if mt := noContent.Value.Content.Get("application/json"); mt != nil && mt.Schema != nil &&
					(mt.Schema.Ref != "" || len(mt.Schema.Value.Properties) > 0 || mt.Schema.Value.Type != nil) {
					t.Errorf("%s %s: 204 documents a body shape", o.method, o.path)
				}
			}
		}
	})

	t.Run("visibility enums", func(t *testing.T) {
		for _, tt := range []struct {
			schema string
			want   []any
		}{
			{"v1Secret", []any{"", "all", "private", "selected"}},
			{"SecretServicePutSecretBody", []any{"all", "private", "selected"}},
			{"v1PutSecretRequest", []any{"all", "private", "selected"}},
		} {
			s := doc3.Components.Schemas[tt.schema]
			if s == nil || s.Value.Properties["visibility"] == nil {
				t.Errorf("%s has no visibility", tt.schema)
				continue
			}
			if got := s.Value.Properties["visibility"].Value.Enum; !slices.Equal(got, tt.want) {
				t.Errorf("%s.visibility enum %v, want %v", tt.schema, got, tt.want)
			}
			// Fields are snake_case, as the gateway serves them.
			for name := range s.Value.Properties {
				if strings.ToLower(name) != name {
					t.Errorf("%s.%s is not snake_case", tt.schema, name)
				}
			}
		}
	})

	client := &http.Client{Timeout: 30 * time.Second}
	for _, o := range ops {
		if !strings.HasPrefix(o.path, "/v1/") {
			continue // /healthz, /openapi.json reach no RPC of the API
		}
		t.Run(o.method+" "+o.path, func(t *testing.T) {
			req, params := openAPIRequest(t, f.addr, o)
			route := &routers.Route{Spec: doc3, Path: o.path, PathItem: o.item, Method: o.method, Operation: o.op}
			in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
				Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
			if err := openapi3filter.ValidateRequest(t.Context(), in); err != nil {
				t.Fatalf("the request does not match its own document: %v", err)
			}
			// ValidateRequest read the body; send it again.
			req, _ = openAPIRequest(t, f.addr, o)
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusMethodNotAllowed {
				t.Fatalf("%s %s = %d %s: the gateway does not route it", req.Method, req.URL.RawPath, resp.StatusCode, body)
			}
			calls := f.take()
			if len(calls) != 1 {
				t.Fatalf("%d calls reached the service, want 1", len(calls))
			}
			rpc := strings.TrimRight(strings.TrimPrefix(o.op.OperationID, "SecretService_"), "0123456789")
			if want := "/secretbroker.v1.SecretService/" + rpc; calls[0].method != want {
				t.Errorf("reached %s, want %s", calls[0].method, want)
			}
			checkRoutedRequest(t, req, calls[0].req, params)
			// The error answer (Unimplemented from the fake) is the
			// document's google.rpc.Status.
			// A 204 has no body, nor a Content-Type (which the document's
			// "schema": {} would have it carry: see TestOpenAPIDocument).
			noBody := resp.StatusCode == http.StatusNoContent
			if noBody && (len(body) != 0 || resp.Header.Get("Content-Type") != "") {
				t.Errorf("204 with a body %q or a Content-Type %q", body, resp.Header.Get("Content-Type"))
			}
			rin := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: resp.StatusCode,
				Header: resp.Header, Options: &openapi3filter.Options{IncludeResponseStatus: true, ExcludeResponseBody: noBody}}
			rin.SetBodyBytes(body)
			if err := openapi3filter.ValidateResponse(t.Context(), rin); err != nil {
				t.Errorf("the answer %d %s does not match the document: %v", resp.StatusCode, body, err)
			}
		})
	}
}

// openAPIRequest builds o's request as a client generator would: each path
// parameter path-escaped into the document's template, a JSON body for an
// operation that takes one.
func openAPIRequest(t *testing.T, addr string, o openAPIOperation) (*http.Request, map[string]string) {
	t.Helper()
	params := map[string]string{}
	for _, p := range o.op.Parameters {
		if p.Value.In != openapi3.ParameterInPath {
			continue
		}
		v, ok := openAPIParamValues[p.Value.Name]
		if !ok {
			t.Fatalf("%s %s: path parameter %q has no test value: a name outside the documented set", o.method, o.path, p.Value.Name)
		}
		if !p.Value.Required || p.Value.Schema == nil || !p.Value.Schema.Value.Type.Is("string") {
			t.Errorf("%s %s: path parameter %q is not a required string", o.method, o.path, p.Value.Name)
		}
		if p.Value.Description == "" {
			t.Errorf("%s %s: path parameter %q has no description", o.method, o.path, p.Value.Name)
		}
		params[p.Value.Name] = v
	}
	var missing []string
	path := regexp.MustCompile(`\{([^{}]*)\}`).ReplaceAllStringFunc(o.path, func(m string) string {
		name := m[1 : len(m)-1]
		v, ok := params[name]
		if !ok {
			missing = append(missing, name)
		}
		return url.PathEscape(v)
	})
	if len(missing) > 0 {
		t.Fatalf("%s %s: no parameters for %v", o.method, o.path, missing)
	}
	var body io.Reader
	if o.op.RequestBody != nil {
		body = bytes.NewReader([]byte(`{}`))
		if o.method == http.MethodPut && strings.HasSuffix(o.path, "/repositories") {
			// SetSelectedRepositories must name the selection over JSON
			// (selectionRequired); an empty one clears it.
			body = bytes.NewReader([]byte(`{"selected_repository_ids":[]}`))
		}
	}
	req, err := http.NewRequestWithContext(context.Background(), o.method, "http://"+addr+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return req, params
}

// checkRoutedRequest checks that the RPC request the gateway made of req
// holds the resource the path names: its name or parent is the path after
// /v1/ (up to a segment boundary), escaped as the client escaped it, and a
// repository is the one in the path.
func checkRoutedRequest(t *testing.T, req *http.Request, m proto.Message, params map[string]string) {
	t.Helper()
	msg := m.ProtoReflect()
	fields := msg.Descriptor().Fields()
	path := req.URL.EscapedPath()
	if fd := firstField(fields, "name", "parent"); fd != nil && !strings.HasPrefix(path, "/v1/secrets:") {
		v := msg.Get(fd).String()
		rest, ok := strings.CutPrefix(path, "/v1/"+v)
		if v == "" || !ok || (rest != "" && !strings.HasPrefix(rest, "/") && !strings.HasPrefix(rest, ":")) {
			t.Errorf("%s %q reached the service as %s %q", req.Method, path, fd.Name(), v)
		}
		if env, ok := params["environment"]; ok && !strings.Contains(v, "/environments/"+url.PathEscape(env)+"/") &&
			!strings.HasSuffix(v, "/environments/"+url.PathEscape(env)) {
			t.Errorf("%s %q: environment %q not in %q", req.Method, path, env, v)
		}
	}
	if repo, ok := params["repository"]; ok {
		fd := fields.ByName("repository")
		if fd == nil || msg.Get(fd).String() != repo {
			t.Errorf("%s %q: repository did not reach the service as %s", req.Method, path, repo)
		}
	}
}

func firstField(fields protoreflect.FieldDescriptors, names ...protoreflect.Name) protoreflect.FieldDescriptor {
	for _, n := range names {
		if fd := fields.ByName(n); fd != nil {
			return fd
		}
	}
	return nil
}

// TestOpenAPIResponses drives the dev broker (the real service against
// the emulator) through paths built from the document and checks each
// answer against it: PutSecret's 201 on create and 200 on update, 204
// for the calls that answer nothing, the
// served field names, and visibility within its enum.
func TestOpenAPIResponses(t *testing.T) {
	b := startBroker(t, devConfig(t))
	_, doc3 := fetchOpenAPI(t, b.httpAddr)
	ops := openAPIOperations(doc3)
	find := func(method, path string) openAPIOperation {
		t.Helper()
		for _, o := range ops {
			if o.method == method && o.path == path {
				return o
			}
		}
		t.Fatalf("the document has no %s %s", method, path)
		return openAPIOperation{}
	}
	for _, tt := range []struct {
		method, path, body string
		wantStatus         int
		wantVisibility     any // in the answer, when set
	}{
		{http.MethodPut, "/v1/orgs/{org}/actions/secrets/{secret}", `{"value":"openapi-plain","visibility":"selected","selected_repository_ids":["1296270"]}`, http.StatusCreated, nil},
		{http.MethodPut, "/v1/orgs/{org}/actions/secrets/{secret}", `{"value":"openapi-plain"}`, http.StatusOK, nil},
		{http.MethodGet, "/v1/orgs/{org}/actions/secrets/{secret}", "", http.StatusOK, "selected"},
		{http.MethodGet, "/v1/orgs/{org}/actions/secrets/{secret}/repositories", "", http.StatusOK, nil},
		{http.MethodPut, "/v1/repos/{owner}/{repo}/environments/{environment}/secrets/{secret}", `{"value":"openapi-plain"}`, http.StatusCreated, nil},
		{http.MethodGet, "/v1/repos/{owner}/{repo}/environments/{environment}/secrets/{secret}", "", http.StatusOK, ""},
		{http.MethodGet, "/v1/repos/{owner}/{repo}/environments/{environment}/secrets", "", http.StatusOK, nil},
		{http.MethodGet, "/v1/repos/{owner}/{repo}/actions/secrets/public-key", "", http.StatusOK, nil},
		{http.MethodPut, "/v1/orgs/{org}/actions/secrets/{secret}/repositories", `{"selected_repository_ids":["1296269"]}`, http.StatusNoContent, nil},
		{http.MethodDelete, "/v1/repos/{owner}/{repo}/environments/{environment}/secrets/{secret}", "", http.StatusNoContent, nil},
		{http.MethodGet, "/v1/orgs/{org}/actions/secrets/MISSING", "", http.StatusNotFound, nil},
	} {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			docPath := tt.path
			if strings.HasSuffix(docPath, "/MISSING") {
				docPath = strings.TrimSuffix(docPath, "MISSING") + "{secret}"
			}
			o := find(tt.method, docPath)
			req, params := openAPIRequest(t, b.httpAddr, o)
			if docPath != tt.path {
				params["secret"] = "MISSING"
				req.URL.Path = strings.Replace(req.URL.Path, "/OPENAPI_TOKEN", "/MISSING", 1)
				req.URL.RawPath = strings.Replace(req.URL.RawPath, "/OPENAPI_TOKEN", "/MISSING", 1)
			}
			if tt.body != "" {
				req.Body = io.NopCloser(strings.NewReader(tt.body))
				req.ContentLength = int64(len(tt.body))
			}
			resp, body := sendRead(t, b.http, req)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("%s %s = %d %s, want %d", req.Method, req.URL.EscapedPath(), resp.StatusCode, body, tt.wantStatus)
			}
			if strings.Contains(string(body), "openapi-plain") {
				t.Fatalf("the answer holds the secret's value: %s", body)
			}
			// A 204 has no body, nor a Content-Type (which the document's
			// "schema": {} would have it carry: see TestOpenAPIDocument).
			if resp.StatusCode == http.StatusNoContent && (len(body) != 0 || resp.Header.Get("Content-Type") != "") {
				t.Errorf("204 with a body %q or a Content-Type %q", body, resp.Header.Get("Content-Type"))
			}
			if err := validateAnswer(t.Context(), doc3, o, req, params, resp, body); err != nil {
				t.Errorf("the answer %d %s does not match the document: %v", resp.StatusCode, body, err)
			}
			if tt.wantVisibility != nil {
				var m map[string]any
				if err := json.Unmarshal(body, &m); err != nil || m["visibility"] != tt.wantVisibility {
					t.Errorf("visibility %v (%v), want %q", m["visibility"], err, tt.wantVisibility)
				}
			}
		})
	}
}

// sendRead sends req with c and returns its answer, the body read whole
// and closed.
func sendRead(t *testing.T, c *http.Client, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp, bodyOf(t, resp)
}

// bodyOf reads resp's body whole and closes it.
func bodyOf(t *testing.T, resp *http.Response) []byte {
	t.Helper()
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// validateAnswer checks resp, with body, the answer to req (built for o
// with path parameters params), against the document's response for its
// status: the status is one the operation lists (not only its "default"),
// the answer carries every header that response lists, and its body
// matches the schema; a 204's body is not validated (it has none).
// (Swagger 2.0 cannot mark a header required; where the document says a
// header comes only sometimes, a 503's Retry-After, the tests send only
// answers that carry it.)
func validateAnswer(ctx context.Context, doc3 *openapi3.T, o openAPIOperation, req *http.Request, params map[string]string, resp *http.Response, body []byte) error {
	documented := o.op.Responses.Status(resp.StatusCode)
	if documented == nil || documented.Value == nil {
		return fmt.Errorf("%s %s does not document status %d", o.method, o.path, resp.StatusCode)
	}
	for name := range documented.Value.Headers {
		if len(resp.Header.Values(name)) == 0 {
			return fmt.Errorf("%s %s: the %d answer has no %s header, which the document lists", o.method, o.path, resp.StatusCode, name)
		}
	}
	route := &routers.Route{Spec: doc3, Path: o.path, PathItem: o.item, Method: o.method, Operation: o.op}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
		Options: &openapi3filter.Options{ExcludeRequestBody: true, AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
	rin := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header,
		Options: &openapi3filter.Options{IncludeResponseStatus: true, ExcludeResponseBody: resp.StatusCode == http.StatusNoContent}}
	rin.SetBodyBytes(body)
	return openapi3filter.ValidateResponse(ctx, rin)
}
