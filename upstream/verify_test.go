package upstream

import (
	"net/http"
	"strings"
	"testing"
)

func TestVerifyCredential(t *testing.T) {
	tests := []struct {
		name        string
		rep         reply
		wantErr     bool
		wantRefused int // 0: not a refusal
	}{
		{"accepted", reply{Body: `{"resources":{"core":{"limit":5000}},"rate":{"limit":5000}}`}, false, 0},
		{"GHES with rate limits off", reply{Status: 404, Body: `{"message":"Rate limiting is not enabled."}`}, false, 0},
		{"bad credentials", reply{Status: 401, Body: `{"message":"Bad credentials ` + testToken + `"}`}, true, 401},
		{"forbidden", reply{Status: 403, Body: `{"message":"Resource not accessible by integration"}`}, true, 403},
		{"rate limited", reply{Status: 403, Header: map[string]string{"X-Ratelimit-Remaining": "0", "X-Ratelimit-Reset": "1"},
			Body: `{"message":"API rate limit exceeded"}`}, true, 0},
		{"server error", reply{Status: 500, Body: `{"message":"boom"}`}, true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t, fixed(tt.rep))
			c := newClient(t, Config{BaseURL: f.URL + "/api/v3", Pacing: &Pacing{MaxAttempts: 1}})
			err := c.VerifyCredential(t.Context())
			if (err != nil) != tt.wantErr {
				t.Fatalf("VerifyCredential = %v, want error %v", err, tt.wantErr)
			}
			status, refused := CredentialRefused(err)
			if refused != (tt.wantRefused != 0) || status != tt.wantRefused {
				t.Errorf("CredentialRefused(%v) = %d %v, want %d", err, status, refused, tt.wantRefused)
			}
			if err != nil && strings.Contains(err.Error(), testToken) {
				t.Errorf("the error holds the token")
			}
			hits := f.Hits()
			if len(hits) != 1 {
				t.Fatalf("%d requests, want 1", len(hits))
			}
			h := hits[0]
			if h.Method != http.MethodGet || h.EscapedPath != "/api/v3/rate_limit" {
				t.Errorf("request %s %s, want GET /api/v3/rate_limit", h.Method, h.EscapedPath)
			}
			if h.Header.Get("Authorization") != "Bearer "+testToken {
				t.Errorf("no bearer token sent")
			}
		})
	}

	t.Run("unreachable", func(t *testing.T) {
		f := newFake(t, fixed(reply{}))
		c := newClient(t, Config{BaseURL: f.URL, Pacing: &Pacing{MaxAttempts: 1}})
		f.Close()
		err := c.VerifyCredential(t.Context())
		if err == nil {
			t.Fatal("VerifyCredential against a closed server = nil")
		}
		if _, refused := CredentialRefused(err); refused {
			t.Errorf("an unreachable GitHub counts as refusing the token: %v", err)
		}
	})
	if _, refused := CredentialRefused(nil); refused {
		t.Error("CredentialRefused(nil) is a refusal")
	}
}
