package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// pathParams returns the names and descriptions of the path parameters of
// method at path in doc, in order.
func pathParams(t *testing.T, doc []byte, path, method string) (names, descs []string) {
	t.Helper()
	var d struct {
		Paths map[string]map[string]struct {
			Parameters []struct{ Name, In, Description string }
		}
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		t.Fatal(err)
	}
	op, ok := d.Paths[path][method]
	if !ok {
		t.Fatalf("no %s %s in %s", method, path, doc)
	}
	for _, p := range op.Parameters {
		names = append(names, p.Name+"@"+p.In)
		descs = append(descs, p.Description)
	}
	return names, descs
}

func TestFix(t *testing.T) {
	for _, tt := range []struct {
		name, doc     string
		path, method  string
		wantParams    string // name@in, comma separated, in order
		wantErr       string
		wantDescribed bool
	}{
		{
			name: "repos/*/* named owner and repo",
			doc: `{"swagger":"2.0","paths":{"/v1/repos/{repo}/{{repo}}/actions/secrets/{secret}":{"get":{"parameters":[
				{"name":"secret","in":"path"},{"name":"repo","in":"path"},{"name":"{repo}","in":"path"},{"name":"page_size","in":"query"}]}}}}`,
			path: "/v1/repos/{owner}/{repo}/actions/secrets/{secret}", method: "get",
			wantParams: "owner@path,repo@path,secret@path,page_size@query", wantDescribed: true,
		},
		{
			name: "a described parameter keeps its description",
			doc: `{"paths":{"/v1/orgs/{org}/x/{repository_id}":{"put":{"parameters":[
				{"name":"repository_id","in":"path","description":"mine"},{"name":"org","in":"path"},{"name":"body","in":"body"}]}}}}`,
			path: "/v1/orgs/{org}/x/{repository_id}", method: "put",
			wantParams: "org@path,repository_id@path,body@body",
		},
		{
			name: "a verb path without parameters",
			doc:  `{"paths":{"/v1/secrets:batchPut":{"post":{"parameters":[{"name":"body","in":"body"}]}}}}`,
			path: "/v1/secrets:batchPut", method: "post",
			wantParams: "body@body",
		},
		{
			name:    "doubled names after an unknown literal",
			doc:     `{"paths":{"/v1/projects/{project}/{{project}}":{"get":{"parameters":[{"name":"project","in":"path"},{"name":"{project}","in":"path"}]}}}}`,
			wantErr: `no names for the two segments after "projects"`,
		},
		{
			name:    "a doubled name left over",
			doc:     `{"paths":{"/v1/{{x}}":{"get":{}}}}`,
			wantErr: "a doubled parameter name is left",
		},
		{
			name:    "a template variable without its parameter",
			doc:     `{"paths":{"/v1/orgs/{org}/secrets/{secret}":{"get":{"parameters":[{"name":"org","in":"path"}]}}}}`,
			wantErr: "no parameter for the path's {secret}",
		},
		{
			name:    "a path parameter not in the template",
			doc:     `{"paths":{"/v1/orgs/{org}":{"get":{"parameters":[{"name":"org","in":"path"},{"name":"name_1","in":"path"}]}}}}`,
			wantErr: `path parameter "name_1" is not in the path`,
		},
		{
			name: "a {repository} path drops the repository_id it stands for",
			doc: `{"paths":{"/v1/orgs/{org}/actions/secrets/{secret}/repositories/{repository}":{"put":{"parameters":[
				{"name":"org","in":"path"},{"name":"secret","in":"path"},{"name":"repository","in":"path"},{"name":"repository_id","in":"query"}]}}}}`,
			path: "/v1/orgs/{org}/actions/secrets/{secret}/repositories/{repository}", method: "put",
			wantParams: "org@path,secret@path,repository@path",
		},
		{
			name: "repository_id stays where no {repository} stands for it",
			doc: `{"paths":{"/v1/orgs/{org}":{"get":{"parameters":[
				{"name":"org","in":"path"},{"name":"repository_id","in":"query"}]}}}}`,
			path: "/v1/orgs/{org}", method: "get",
			wantParams: "org@path,repository_id@query",
		},
		{
			name:    "no paths",
			doc:     `{"swagger":"2.0"}`,
			wantErr: "no paths object",
		},
		{
			name:    "not JSON",
			doc:     `{"paths":`,
			wantErr: "decoding the document",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out, err := fix([]byte(tt.doc))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("fix = %v, want an error with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasSuffix(string(out), "}\n") {
				t.Errorf("the output does not end with a newline")
			}
			names, descs := pathParams(t, out, tt.path, tt.method)
			if got := strings.Join(names, ","); got != tt.wantParams {
				t.Errorf("parameters %s, want %s", got, tt.wantParams)
			}
			if tt.wantDescribed {
				for i, n := range names {
					if strings.HasSuffix(n, "@path") && descs[i] == "" {
						t.Errorf("%s has no description", n)
					}
				}
			}
			if strings.Contains(tt.name, "keeps") && descs[1] != "mine" {
				t.Errorf("repository_id's description became %q", descs[1])
			}
			again, err := fix(out)
			if err != nil || string(again) != string(out) {
				t.Errorf("fix is not idempotent: %v\n%s\n%s", err, out, again)
			}
		})
	}
}

func TestFixFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "doc.json")
	if err := os.WriteFile(file, []byte(`{"paths":{"/v1/repos/{repo}/{{repo}}":{"get":{"parameters":[{"name":"repo","in":"path"},{"name":"{repo}","in":"path"}]}}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := fixFile(file); err != nil {
		t.Fatal(err)
	}
	out, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if names, _ := pathParams(t, out, "/v1/repos/{owner}/{repo}", "get"); strings.Join(names, ",") != "owner@path,repo@path" {
		t.Errorf("rewritten parameters %v", names)
	}
	if err := fixFile(filepath.Join(t.TempDir(), "missing.json")); err == nil {
		t.Error("fixFile of a missing file succeeded")
	}
}

// TestFixNullable checks that the properties the gateway answers null
// when unset (singular message fields outside a oneof: a $ref, a
// Timestamp, a Duration) are marked x-nullable, a $ref wrapped in allOf
// with its description kept, and that no other property is.
func TestFixNullable(t *testing.T) {
	doc := `{"paths":{},"definitions":{
		"secretbrokerV1Operation":{"type":"object","properties":{"name":{"type":"string"},
			"error":{"$ref":"#/definitions/rpcStatus","description":"why"},"done":{"type":"boolean"}}},
		"v1Secret":{"type":"object","properties":{"name":{"type":"string"},"updated_at":{"type":"string","format":"date-time"}}},
		"v1BatchPutSecretsResult":{"type":"object","properties":{"retry_after":{"type":"string"},"code":{"$ref":"#/definitions/rpcCode"}}},
		"v1PutSecretRequest":{"type":"object","properties":{"value":{"type":"string"},"selected_repository_ids":{"type":"array"}}},
		"rpcStatus":{"type":"object","properties":{"code":{"type":"integer"},"details":{"type":"array"}}},
		"protobufAny":{"type":"object","properties":{"@type":{"type":"string"}}},
		"rpcCode":{"type":"string","enum":["OK"]}}}`
	out, err := fix([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Definitions map[string]struct {
			Properties map[string]map[string]any
		}
	}
	if err := json.Unmarshal(out, &d); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{
		"secretbrokerV1Operation.error": true, "v1Secret.updated_at": true, "v1BatchPutSecretsResult.retry_after": true,
	}
	for dn, def := range d.Definitions {
		for pn, p := range def.Properties {
			key := dn + "." + pn
			if got := p["x-nullable"] == true; got != want[key] {
				t.Errorf("%s: x-nullable %v, want %v", key, got, want[key])
			}
		}
	}
	errProp := d.Definitions["secretbrokerV1Operation"].Properties["error"]
	if _, ok := errProp["$ref"]; ok || errProp["description"] != "why" {
		t.Errorf("error: %v, want its $ref in allOf and its description kept", errProp)
	}
	if allOf, _ := errProp["allOf"].([]any); len(allOf) != 1 || allOf[0].(map[string]any)["$ref"] != "#/definitions/rpcStatus" {
		t.Errorf("error's allOf: %v", errProp["allOf"])
	}
	again, err := fix(out)
	if err != nil || string(again) != string(out) {
		t.Errorf("fix is not idempotent: %v", err)
	}

	if _, err := fix([]byte(`{"paths":{},"definitions":{"x":{"properties":{"no_such_field_anywhere":{"type":"string"}}}}}`)); err == nil ||
		!strings.Contains(err.Error(), "no message has the fields") {
		t.Errorf("a definition no message holds: %v, want an error", err)
	}
}

// TestFixResponseHeaders checks that every operation's 401, 429 and 503
// get the headers the gateway sends with them, that a header the
// generator wrote is kept, and that other answers get none.
func TestFixResponseHeaders(t *testing.T) {
	doc := `{"paths":{"/v1/operations":{"get":{"responses":{"200":{},"401":{},"429":{"headers":{"X-Mine":{"type":"string"}}},"503":{}}}}}}`
	out, err := fix([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Paths map[string]map[string]struct {
			Responses map[string]struct{ Headers map[string]map[string]any }
		}
	}
	if err := json.Unmarshal(out, &d); err != nil {
		t.Fatal(err)
	}
	resps := d.Paths["/v1/operations"]["get"].Responses
	for code, want := range map[string]string{"200": "", "401": "WWW-Authenticate", "429": "X-Mine,Retry-After", "503": "Retry-After"} {
		var got []string
		for _, name := range []string{"WWW-Authenticate", "X-Mine", "Retry-After"} {
			if resps[code].Headers[name] != nil {
				got = append(got, name)
			}
		}
		if strings.Join(got, ",") != want || len(resps[code].Headers) != len(got) {
			t.Errorf("%s: headers %v, want %s", code, resps[code].Headers, want)
		}
	}
	if typ := resps["429"].Headers["Retry-After"]["type"]; typ != "integer" {
		t.Errorf("Retry-After's type %v, want integer", typ)
	}
}

// TestFixGatewayRefusals checks that 415 goes to every POST, PUT and PATCH
// and 413 only to those that take a body, both as google.rpc.Status, that
// a response the generator wrote is kept, and that no other operation gets
// either.
func TestFixGatewayRefusals(t *testing.T) {
	body := `{"name":"body","in":"body"}`
	doc := `{"paths":{
		"/v1/a":{"put":{"parameters":[` + body + `],"responses":{"200":{}}},"get":{"responses":{"200":{}}},"delete":{"responses":{"200":{}}}},
		"/v1/b":{"put":{"responses":{"200":{}}},"post":{"parameters":[` + body + `],"responses":{"415":{"description":"mine"}}}},
		"/v1/c":{"patch":{"parameters":[` + body + `],"responses":{}}}}}`
	out, err := fix([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Paths map[string]map[string]struct {
			Responses map[string]struct {
				Description string
				Schema      map[string]any
			}
		}
	}
	if err := json.Unmarshal(out, &d); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		path, method string
		want         string // the refusals documented, comma separated
	}{
		{"/v1/a", "put", "413,415"},
		{"/v1/a", "get", ""},
		{"/v1/a", "delete", ""},
		{"/v1/b", "put", "415"},
		{"/v1/b", "post", "413,415"},
		{"/v1/c", "patch", "413,415"},
	} {
		resps := d.Paths[tt.path][tt.method].Responses
		var got []string
		for _, code := range []string{"413", "415"} {
			r, ok := resps[code]
			if !ok {
				continue
			}
			got = append(got, code)
			if r.Description != "mine" && (r.Schema["$ref"] != "#/definitions/rpcStatus" || r.Description == "") {
				t.Errorf("%s %s %s: %+v, want a described google.rpc.Status", tt.method, tt.path, code, r)
			}
		}
		if strings.Join(got, ",") != tt.want {
			t.Errorf("%s %s: refusals %v, want %s", tt.method, tt.path, got, tt.want)
		}
	}
	if got := d.Paths["/v1/b"]["post"].Responses["415"].Description; got != "mine" {
		t.Errorf("the generated 415 became %q", got)
	}
}

// TestFixExtraPaths checks that GET /healthz and its answer's definition
// are added, open to every caller, idempotently, and that a generated
// path or definition of the same name that differs fails.
func TestFixExtraPaths(t *testing.T) {
	out, err := fix([]byte(`{"paths":{}}`))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Paths map[string]map[string]struct {
			Security  []any
			Responses map[string]struct{ Schema map[string]any }
		}
		Definitions map[string]any
	}
	if err := json.Unmarshal(out, &d); err != nil {
		t.Fatal(err)
	}
	get, ok := d.Paths["/healthz"]["get"]
	if !ok || get.Security == nil || len(get.Security) != 0 {
		t.Fatalf("GET /healthz: %+v, want it with an empty security list", d.Paths["/healthz"])
	}
	if ref := get.Responses["200"].Schema["$ref"]; ref != "#/definitions/v1HealthCheckResponse" || d.Definitions["v1HealthCheckResponse"] == nil {
		t.Errorf("200 answers %v; definitions %v", ref, d.Definitions)
	}
	doc, ok := d.Paths["/openapi.json"]["get"]
	if !ok || doc.Security == nil || len(doc.Security) != 0 {
		t.Fatalf("GET /openapi.json: %+v, want it with an empty security list", d.Paths["/openapi.json"])
	}
	if typ := doc.Responses["200"].Schema["type"]; typ != "object" {
		t.Errorf("GET /openapi.json's 200 answers %v, want an object", doc.Responses["200"].Schema)
	}
	again, err := fix(out)
	if err != nil || string(again) != string(out) {
		t.Errorf("fix is not idempotent: %v", err)
	}
	for _, doc := range []string{
		`{"paths":{"/healthz":{"get":{}}}}`,
		`{"paths":{"/openapi.json":{"get":{}}}}`,
		`{"paths":{},"definitions":{"v1HealthCheckResponse":{"type":"object"}}}`,
	} {
		if _, err := fix([]byte(doc)); err == nil || !strings.Contains(err.Error(), "generated already") {
			t.Errorf("%s: %v, want an error", doc, err)
		}
	}
}

// TestFixMethodNotAllowed checks that the 405 a path answers to a method it
// does not list is a root response definition with the Allow header, named
// once at the end of the info's description, added idempotently, and that
// a generated response of that name that differs fails.
func TestFixMethodNotAllowed(t *testing.T) {
	for _, tt := range []struct{ name, doc, wantDesc string }{
		{"no description", `{"paths":{}}`, strings.TrimPrefix(methodNotAllowedNote, " ")},
		{"a description", `{"info":{"description":"The API."},"paths":{}}`, "The API." + methodNotAllowedNote},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out, err := fix([]byte(tt.doc))
			if err != nil {
				t.Fatal(err)
			}
			var d struct {
				Info      struct{ Description string }
				Paths     map[string]map[string]struct{ Responses map[string]any }
				Responses map[string]struct {
					Schema  map[string]any
					Headers map[string]struct{ Type string }
				}
			}
			if err := json.Unmarshal(out, &d); err != nil {
				t.Fatal(err)
			}
			if d.Info.Description != tt.wantDesc {
				t.Errorf("description %q, want %q", d.Info.Description, tt.wantDesc)
			}
			r, ok := d.Responses[methodNotAllowedName]
			if !ok || r.Schema["$ref"] != "#/definitions/rpcStatus" || r.Headers["Allow"].Type != "string" {
				t.Errorf("responses %+v, want %s: a google.rpc.Status with an Allow header", d.Responses, methodNotAllowedName)
			}
			for path, ops := range d.Paths {
				for method, op := range ops {
					if _, ok := op.Responses["405"]; ok {
						t.Errorf("%s %s documents a 405: an operation never answers it for its own method", method, path)
					}
				}
			}
			again, err := fix(out)
			if err != nil || string(again) != string(out) {
				t.Errorf("fix is not idempotent: %v", err)
			}
		})
	}
	if _, err := fix([]byte(`{"paths":{},"responses":{"MethodNotAllowed":{"description":"x"}}}`)); err == nil ||
		!strings.Contains(err.Error(), "generated already") {
		t.Errorf("a generated MethodNotAllowed that differs: %v, want an error", err)
	}
}
