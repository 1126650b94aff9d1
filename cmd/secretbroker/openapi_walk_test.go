package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
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
}

// TestOpenAPIAuth checks what the document says of authentication against
// a broker that requires it: the document's one security scheme, required
// of every operation, is the Authorization header with "Bearer TOKEN";
// every route answers 401 without it, with the document's WWW-Authenticate
// header and error shape, and takes the token the scheme describes.
func TestOpenAPIAuth(t *testing.T) {
	callers := writeFile(t, "callers.yaml", "callers:\n  - name: admin\n    token_sha256: "+sha256Hex(adminToken)+"\n")
	b := startBroker(t, securedConfig(t, "--callers-file="+callers))
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
			if o.op.Security != nil {
				t.Errorf("the operation overrides the document's security: %v", *o.op.Security)
			}
			if h := o.op.Responses.Status(http.StatusUnauthorized).Value.Headers["WWW-Authenticate"]; h == nil {
				t.Error("401 documents no WWW-Authenticate header")
			}
			for _, code := range []int{http.StatusTooManyRequests, http.StatusServiceUnavailable} {
				if h := o.op.Responses.Status(code).Value.Headers["Retry-After"]; h == nil || !h.Value.Schema.Value.Type.Is("integer") {
					t.Errorf("%d documents no integer Retry-After header", code)
				}
			}
			for _, tok := range []string{"", adminToken} {
				req, params := openAPIRequest(t, b.httpAddr, o)
				if tok != "" {
					req.Header.Set(scheme.Name, "Bearer "+tok)
				}
				resp, body := sendRead(t, b.http, req)
				if (resp.StatusCode == http.StatusUnauthorized) != (tok == "") {
					t.Fatalf("token %v: %d %s", tok != "", resp.StatusCode, body)
				}
				if tok != "" {
					continue
				}
				if got := resp.Header.Get("WWW-Authenticate"); got != `Bearer realm="secretbroker"` {
					t.Errorf("WWW-Authenticate %q", got)
				}
				if err := validateAnswer(t.Context(), doc3, o, req, params, resp, body); err != nil {
					t.Errorf("the 401 does not match the document: %v\n%s", err, body)
				}
			}
		})
	}
}
