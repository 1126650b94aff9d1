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
