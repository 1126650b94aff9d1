package main

import (
	"net/http"
	"strings"
	"testing"
)

// TestGatewayPutSettingsOnly: PUT /v1/{name} with a JSON body holding
// visibility and no value changes an existing organization secret's
// visibility (200, created false, no key_id) and keeps its value; for a
// secret that does not exist it is 404, for a repository secret 400
// saying where a value may be left out.
func TestGatewayPutSettingsOnly(t *testing.T) {
	b := startBroker(t, devConfig(t))
	base := "http://" + b.httpAddr + "/v1/"
	const secret = "orgs/octo-org/actions/secrets/SETTINGS_ONLY"
	if code, body := httpDo(t, b.http, http.MethodPut, base+secret, "", `{"value":"`+planted+`","visibility":"private"}`); code != http.StatusCreated {
		t.Fatalf("create: %d %s", code, body)
	}
	for _, tt := range []struct {
		name, path, body string
		code             int
		want, not        string
	}{
		{"visibility", secret, `{"visibility":"all"}`, http.StatusOK, `"name"`, "keyId"},
		{"does not exist", "orgs/octo-org/actions/secrets/NEVER_WRITTEN", `{"visibility":"all"}`, http.StatusNotFound, "creates nothing", ""},
		{"repository secret", "repos/octo-org/hello-world/actions/secrets/SETTINGS_ONLY", `{}`, http.StatusBadRequest, "only PutSecret may leave both out", ""},
		{"no visibility", secret, `{}`, http.StatusBadRequest, "is required in a put without a value", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, body := httpDo(t, b.http, http.MethodPut, base+tt.path, "", tt.body)
			if code != tt.code || !strings.Contains(body, tt.want) || (tt.not != "" && strings.Contains(body, tt.not)) {
				t.Errorf("%d %s, want %d saying %s", code, body, tt.code, tt.want)
			}
			if strings.Contains(body, planted) {
				t.Errorf("%s quotes the value", body)
			}
		})
	}
	code, body := httpDo(t, b.http, http.MethodGet, base+secret, "", "")
	if code != http.StatusOK || !strings.Contains(body, `"visibility":"all"`) {
		t.Errorf("GET after the put: %d %s, want visibility all", code, body)
	}
}
