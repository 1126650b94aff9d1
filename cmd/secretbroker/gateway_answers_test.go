package main

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// Tests of rough edges of the JSON API a reviewer walking through the
// README found (2026-11-28); each failed before its fix.

// planted stands for a secret value in a request: no answer may quote it.
const planted = "PLANTED-s3cr3t-4242"

// TestGatewayNoRoute: a path no route matches is a 404 that says what the
// API's paths look like, with a hint for an environment name holding an
// unescaped "/" (as the gRPC API gives one) and for an operation's full
// name pasted as its id; it quotes nothing of the path. 405 keeps its
// Allow header; a path outside /v1/ stays a bare 404.
func TestGatewayNoRoute(t *testing.T) {
	b := startBroker(t, devConfig(t))
	const shapes = "repos/{owner}/{repo}/environments/{environment}/secrets/{name}"
	const escapeHint = "escaped as %2F"
	for _, tt := range []struct {
		name, method, path, body string
		code                     int
		want, notWant            []string
		allow                    string
	}{
		{"environment with an unescaped slash", http.MethodPut,
			"/v1/repos/octo-org/hello-world/environments/stage-qq/eu-zz/secrets/X", `{"value":"` + planted + `"}`,
			http.StatusNotFound, []string{"no route matches", shapes, escapeHint}, []string{"stage-qq", "eu-zz", planted}, ""},
		{"environment list with an unescaped slash", http.MethodGet,
			"/v1/repos/octo-org/hello-world/environments/stage-qq/eu-zz/secrets", "",
			http.StatusNotFound, []string{"no route matches", escapeHint}, []string{"stage-qq", "eu-zz"}, ""},
		{"secret for secrets", http.MethodPut,
			"/v1/repos/octo-org/hello-world/actions/secret/X", `{"value":"` + planted + `"}`,
			http.StatusNotFound, []string{"no route matches", "/v1/repos/{owner}/{repo}/{actions|agents}/secrets/{name}",
				"/v1/orgs/{org}/{actions|agents}/secrets/{name}", "/v1/operations/{id}"}, []string{escapeHint, "hello-world", planted}, ""},
		{"orgz", http.MethodGet, "/v1/orgz/octo-org/actions/secrets/X", "",
			http.StatusNotFound, []string{"no route matches", shapes}, []string{"orgz", escapeHint}, ""},
		{"operation's full name as its id", http.MethodGet, "/v1/operations/operations/abc", "",
			http.StatusNotFound, []string{"no route matches", `without \"operations/\"`}, []string{"abc"}, ""},
		{"a long path, a bounded answer", http.MethodGet, "/v1/" + strings.Repeat("segment-zz/", 500), "",
			http.StatusNotFound, []string{"no route matches"}, []string{"segment-zz"}, ""},
		{"outside /v1/", http.MethodGet, "/v2/orgs/octo-org/actions/secrets", "",
			http.StatusNotFound, []string{"Not Found"}, []string{"no route matches"}, ""},
		{"a method the path does not take", http.MethodDelete, "/v1/secrets:batchPut", "",
			http.StatusMethodNotAllowed, []string{"allowed: POST"}, nil, "POST"},
		// A last segment that is only a verb (":cancel", ":detectDrift")
		// is routed as any other segment (grpc-gateway v2.33.0; v2.32.0
		// answered 404 for the methods that have such a verb, and the
		// route's own answer for the others): an operation id or a secret
		// name, refused as one, and a method its routes do not take is a
		// 405 like any other.
		{"a bare verb as an operation id", http.MethodPost, "/v1/operations/:cancel", "{}",
			http.StatusMethodNotAllowed, []string{"allowed: GET"}, []string{"no route matches"}, "GET"},
		{"a bare verb as a secret name", http.MethodGet, "/v1/repos/octo-org/hello-world/actions/secrets/:detectDrift", "",
			http.StatusBadRequest, []string{"secret name", "may hold only letters"}, []string{"no route matches"}, ""},
		{"a bare verb as a secret name, another method", http.MethodPost, "/v1/orgs/octo-org/actions/secrets/:sync", "{}",
			http.StatusMethodNotAllowed, []string{"allowed: DELETE, GET, PUT"}, []string{"no route matches"}, "DELETE, GET, PUT"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, "http://"+b.httpAddr+tt.path, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if tt.body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			resp, err := b.http.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			raw, _ := io.ReadAll(resp.Body)
			body := string(raw)
			if resp.StatusCode != tt.code {
				t.Errorf("%d %s, want %d", resp.StatusCode, body, tt.code)
			}
			for _, w := range tt.want {
				if !strings.Contains(body, w) {
					t.Errorf("%s: want %q in it", body, w)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(body, w) {
					t.Errorf("%s: quotes %q", body, w)
				}
			}
			if got := resp.Header.Get("Allow"); got != tt.allow {
				t.Errorf("Allow %q, want %q", got, tt.allow)
			}
			if len(body) > 1000 {
				t.Errorf("a %d-byte answer", len(body))
			}
		})
	}
}

// TestGatewayBodyErrorsNameTheField: a oneof set twice, a duration or a
// type that is not the field's, a string that is not UTF-8 are refused
// naming the field, never quoting the value (they said only "request
// body is not a valid JSON request").
func TestGatewayBodyErrorsNameTheField(t *testing.T) {
	b := startBroker(t, devConfig(t))
	const secret = "/v1/repos/octo-org/hello-world/actions/secrets/BODY_ERR"
	const wait = "/v1/operations/abc:wait"
	const duration = `timeout: want a duration such as \"30s\"`
	for _, tt := range []struct {
		name, method, path, body, want string
	}{
		{"timeout not a duration", http.MethodPost, wait, `{"timeout":"` + planted + `"}`, "line 1 column 12: " + duration},
		{"timeout a number", http.MethodPost, wait, `{"timeout":4242}`, duration},
		{"timeout out of range", http.MethodPost, wait, `{"timeout":"-4242424242424s"}`, duration},
		// Positions count lines, and runes in a line (as protojson does).
		{"timeout on another line", http.MethodPost, wait, "{\n \"timeout\" :\n\t[4242]}", "line 3 column 2: " + duration},
		{"timeout after two-byte runes", http.MethodPost, wait, `{"name":"operations/éé","timeout":4242}`, "line 1 column 35: " + duration},
		{"value and encrypted_value", http.MethodPut, secret,
			`{"value":"` + planted + `","encrypted_value":"` + planted + `"}`, "value and encrypted_value: set only one"},
		{"encryptedValue and value", http.MethodPut, secret,
			`{"encryptedValue":"` + planted + `","value":"` + planted + `"}`, "value and encrypted_value: set only one"},
		{"value not UTF-8", http.MethodPut, secret, `{"value":"` + planted + "\xff\"}", "value: is not valid UTF-8"},
		{"sync secrets not an object", http.MethodPost, "/v1/repos/octo-org/hello-world/actions/secrets:sync",
			`{"secrets":"` + planted + `"}`, "secrets: want a JSON object"},
		{"a sync secret's value not a string", http.MethodPost, "/v1/repos/octo-org/hello-world/actions/secrets:sync",
			`{"secrets":{"A":["` + planted + `"]}}`, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, body := httpDo(t, b.http, tt.method, "http://"+b.httpAddr+tt.path, "", tt.body)
			if code != http.StatusBadRequest || !strings.Contains(body, tt.want) {
				t.Errorf("%d %s, want 400 saying %s", code, body, tt.want)
			}
			if strings.Contains(body, planted) || strings.Contains(body, "4242") {
				t.Errorf("%s quotes the value", body)
			}
		})
	}
}

// TestGatewayBodyMayNotSetPathFields: a body that sets the field its
// route's path gives (name, parent) is refused, naming the field, as any
// field the OpenAPI document's body schema leaves out is; it was ignored
// in silence, the path's resource written.
func TestGatewayBodyMayNotSetPathFields(t *testing.T) {
	b := startBroker(t, devConfig(t))
	base := "http://" + b.httpAddr + "/v1/"
	const secret = "repos/octo-org/hello-world/actions/secrets/PATH_FIELD"
	for _, tt := range []struct {
		name, method, path, body string
		code                     int
		want                     string
	}{
		{"another secret's name", http.MethodPut, secret,
			`{"value":"` + planted + `","name":"repos/octo-org/other/actions/secrets/Y"}`, http.StatusBadRequest, `field \"name\"`},
		{"the same name", http.MethodPut, secret,
			`{"value":"` + planted + `","name":"` + secret + `"}`, http.StatusBadRequest, `field \"name\"`},
		{"another sync parent", http.MethodPost, "repos/octo-org/hello-world/actions/secrets:sync",
			`{"secrets":{"A":"` + planted + `"},"dry_run":true,"parent":"repos/octo-org/other/actions"}`, http.StatusBadRequest, `field \"parent\"`},
		{"an operation's name", http.MethodPost, "operations/abc:wait",
			`{"name":"operations/other"}`, http.StatusBadRequest, `field \"name\"`},
		{"a selection's name", http.MethodPut, "orgs/octo-org/actions/secrets/PATH_FIELD/repositories",
			`{"selected_repository_ids":[],"name":"orgs/octo-org/actions/secrets/OTHER"}`, http.StatusBadRequest, `field \"name\"`},
		// An empty name is an unset one (proto3 JSON): no other resource.
		{"an empty name", http.MethodPut, secret, `{"value":"` + planted + `","name":""}`, http.StatusCreated, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, body := httpDo(t, b.http, tt.method, base+tt.path, "", tt.body)
			if code != tt.code || !strings.Contains(body, tt.want) {
				t.Errorf("%d %s, want %d saying %s", code, body, tt.code, tt.want)
			}
			if strings.Contains(body, planted) {
				t.Errorf("%s quotes the value", body)
			}
			if tt.code == http.StatusBadRequest && tt.method == http.MethodPut && strings.HasPrefix(tt.path, "repos/") {
				if code, body := httpDo(t, b.http, http.MethodGet, base+tt.path, "", ""); code != http.StatusNotFound {
					t.Errorf("after a refused PUT the secret is %d %s, want 404", code, body)
				}
			}
		})
	}
}

// TestGatewayAnswersEndTheLine: every JSON answer, an error's included,
// ends with a newline (curl's output then leaves the shell's prompt on a
// line of its own), within its Content-Length.
func TestGatewayAnswersEndTheLine(t *testing.T) {
	b := startBroker(t, devConfig(t))
	for _, tt := range []struct{ method, path, body string }{
		{http.MethodGet, "/healthz", ""},
		{http.MethodGet, "/v1/repos/octo-org/hello-world/actions/secrets", ""},
		{http.MethodGet, "/v1/repos/octo-org/hello-world/actions/secrets/public-key", ""},
		{http.MethodPut, "/v1/repos/octo-org/hello-world/actions/secrets/NEWLINE", `{"value":"v"}`},
		{http.MethodGet, "/v1/repos/octo-org/hello-world/actions/secrets/MISSING", ""},
		{http.MethodGet, "/v1/nothing", ""},
		{http.MethodPost, "/v1/secrets:batchPut", `{"bogus":1}`},
		{http.MethodGet, "/openapi.json", ""},
	} {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, "http://"+b.httpAddr+tt.path, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			resp, err := b.http.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			raw, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasSuffix(string(raw), "}\n") {
				t.Errorf("%d %q does not end with a newline", resp.StatusCode, raw)
			}
			if cl := resp.Header.Get("Content-Length"); cl != "" && cl != strconv.Itoa(len(raw)) {
				t.Errorf("Content-Length %s, body %d bytes", cl, len(raw))
			}
		})
	}
}
