package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// TestGatewayNotFoundNamesTheResource: GitHub's 404 reaches a JSON
// caller as a 404 whose message names what was missing by its resource
// name (a scope, or the secret), in a single call's answer and in a
// batch's item results, quoting no value.
func TestGatewayNotFoundNamesTheResource(t *testing.T) {
	b := startBroker(t, devConfig(t))
	const cannotSee = ", or the broker's credentials cannot see it"
	scopeKey := func(scope string) string {
		return "the scope " + scope + " (or its public key) was not found on GitHub" + cannotSee
	}
	secret := func(name string) string {
		return "the secret " + name + " was not found on GitHub (nor perhaps its scope)" + cannotSee
	}
	for _, tt := range []struct {
		name, method, path, body string
		code                     int
		// item: the message is results[0]'s (a batch), not the answer's.
		item bool
		want string
	}{
		{"put, organization missing", http.MethodPut, "/v1/orgs/no-such-org/actions/secrets/FOO",
			`{"value":"` + planted + `","visibility":"all"}`, http.StatusNotFound, false, scopeKey("orgs/no-such-org/actions")},
		{"put, repository missing", http.MethodPut, "/v1/repos/octo-org/no-such-repo/actions/secrets/FOO",
			`{"value":"` + planted + `"}`, http.StatusNotFound, false, scopeKey("repos/octo-org/no-such-repo/actions")},
		{"put, environment missing", http.MethodPut, "/v1/repos/octo-org/hello-world/environments/no%2Fsuch/secrets/FOO",
			`{"value":"` + planted + `"}`, http.StatusNotFound, false, scopeKey("repos/octo-org/hello-world/environments/no%2Fsuch")},
		{"get, secret missing", http.MethodGet, "/v1/orgs/octo-org/actions/secrets/MISSING", "",
			http.StatusNotFound, false, secret("orgs/octo-org/actions/secrets/MISSING")},
		{"delete, secret missing", http.MethodDelete, "/v1/repos/octo-org/hello-world/actions/secrets/MISSING", "",
			http.StatusNotFound, false, secret("repos/octo-org/hello-world/actions/secrets/MISSING")},
		{"selected repositories, secret missing", http.MethodGet, "/v1/orgs/octo-org/actions/secrets/MISSING/repositories", "",
			http.StatusNotFound, false, "the organization secret orgs/octo-org/actions/secrets/MISSING (whose selected repositories were asked for) was not found on GitHub (nor perhaps its organization)" + cannotSee},
		{"sync, repository missing", http.MethodPost, "/v1/repos/octo-org/no-such-repo/actions/secrets:sync",
			`{"secrets":{"FOO":"` + planted + `"}}`, http.StatusNotFound, false, "the scope repos/octo-org/no-such-repo/actions was not found on GitHub" + cannotSee},
		{"batch put item, repository missing", http.MethodPost, "/v1/secrets:batchPut",
			`{"requests":[{"name":"repos/octo-org/no-such-repo/actions/secrets/FOO","value":"` + planted + `"}]}`,
			http.StatusOK, true, scopeKey("repos/octo-org/no-such-repo/actions")},
		{"batch delete item, secret missing", http.MethodPost, "/v1/secrets:batchDelete",
			`{"names":["orgs/octo-org/actions/secrets/MISSING"]}`,
			http.StatusOK, true, secret("orgs/octo-org/actions/secrets/MISSING")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, body := httpDo(t, b.http, tt.method, "http://"+b.httpAddr+tt.path, "", tt.body)
			if code != tt.code {
				t.Fatalf("%d %s, want %d", code, body, tt.code)
			}
			var answer struct {
				Code    json.RawMessage `json:"code"`
				Message string          `json:"message"`
				Results []struct {
					Code    string `json:"code"`
					Message string `json:"message"`
				} `json:"results"`
			}
			if err := json.Unmarshal([]byte(body), &answer); err != nil {
				t.Fatalf("%s: %v", body, err)
			}
			got := answer.Message
			if tt.item {
				if len(answer.Results) != 1 || answer.Results[0].Code != "NOT_FOUND" {
					t.Fatalf("%s: want one NOT_FOUND item", body)
				}
				got = answer.Results[0].Message
			}
			if got != tt.want {
				t.Errorf("message %q,\n want %q", got, tt.want)
			}
			if strings.Contains(body, planted) {
				t.Errorf("the answer quotes the value: %s", body)
			}
		})
	}
}
