package main

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// A query parameter the route's request does not have is refused with
// 400, as an unknown field of a JSON body is, before the call is made:
// GitHub's per_page and page (pointed to page_size and page_token), a
// typo, any parameter on a route that takes none. Parameters the route
// takes, by proto or JSON name, are served.
func TestGatewayRefusesUnknownQueryParameters(t *testing.T) {
	b := startBroker(t, devConfig(t))
	const scope = "/v1/repos/octo-org/hello-world/actions/secrets"
	for i := range 3 {
		if code, m := b.do(t, "PUT", fmt.Sprintf("%s/S%d", scope, i), `{"value":"x"}`); code != http.StatusCreated {
			t.Fatalf("put: %d %v", code, m)
		}
	}
	tests := []struct {
		name, method, path string
		status             int
		message            string // in the 400's message
		secrets            int    // in a 200 listing, when > 0
	}{
		{"page_size", "GET", scope + "?page_size=1", 200, "", 1},
		{"pageSize", "GET", scope + "?pageSize=1", 200, "", 1},
		{"no query", "GET", scope, 200, "", 3},
		{"per_page", "GET", scope + "?per_page=1", 400, `unknown query parameter "per_page": this API pages with page_size and page_token`, 0},
		{"page", "GET", scope + "?page_size=1&page=2", 400, `unknown query parameter "page": this API pages with page_size`, 0},
		{"typo", "GET", scope + "?page_sise=1", 400, `unknown query parameter "page_sise"`, 0},
		{"path variable", "GET", scope + "?parent=orgs/octo-org/actions", 400, `unknown query parameter "parent"`, 0},
		{"route without parameters", "GET", scope + "/S0?per_page=1", 400, `unknown query parameter "per_page"`, 0},
		{"long name", "GET", scope + "/S0?" + strings.Repeat("k", 300) + "=1", 400, `unknown query parameter "` + strings.Repeat("k", 64) + `..."`, 0},
		{"body route", "PUT", scope + "/S0?visibility=all", 400, `unknown query parameter "visibility"`, 0},
		{"health", "GET", "/healthz?service=", 200, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := ""
			if tt.method == "PUT" {
				body = `{"value":"y"}`
			}
			code, m := b.do(t, tt.method, tt.path, body)
			if code != tt.status {
				t.Fatalf("%s %s: %d %v, want %d", tt.method, tt.path, code, m, tt.status)
			}
			if msg, _ := m["message"].(string); tt.message != "" && !strings.Contains(msg, tt.message) {
				t.Errorf("message %q, want it to hold %q", msg, tt.message)
			}
			if tt.secrets > 0 {
				if got, _ := m["secrets"].([]any); len(got) != tt.secrets {
					t.Errorf("%d secrets, want %d", len(got), tt.secrets)
				}
			}
		})
	}
}
