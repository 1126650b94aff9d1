package upstream_test

import (
	"testing"

	"github.com/secretbroker/secretbroker/upstream"
)

// TestPutValueOptional pins where a PUT may leave encrypted_value and
// key_id out, as the seeds give it: github.com's Actions organization and
// repository secrets at 2022-11-28 (003:215/219, 003:830/834) and the
// older GitHub Enterprise Server's (legacy routes, 004:233/237,
// 004:737/741); never environment secrets (003:1147/1151), Agents secrets
// (001:215/219), GHES 3.21 (000:218/222) or an API version no seed
// documents as optional.
func TestPutValueOptional(t *testing.T) {
	org := upstream.Scope{App: upstream.Actions, Org: "octo-org"}
	repo := upstream.Scope{App: upstream.Actions, Owner: "octo-org", Repo: "hello-world"}
	env := upstream.Scope{App: upstream.Actions, Owner: "octo-org", Repo: "hello-world", Environment: "prod"}
	agents := upstream.Scope{App: upstream.Agents, Org: "octo-org"}
	for _, c := range []struct {
		name string
		cfg  upstream.Config
		s    upstream.Scope
		want bool
	}{
		{"github.com org", upstream.Config{}, org, true},
		{"github.com repo", upstream.Config{}, repo, true},
		{"github.com env", upstream.Config{}, env, false},
		{"github.com agents", upstream.Config{}, agents, false},
		{"github.com other version", upstream.Config{APIVersionActions: "2026-03-10"}, org, false},
		{"ghes 3.21 org", upstream.Config{BaseURL: "https://ghe.example/api/v3"}, org, false},
		{"ghes 3.21 org at 2022-11-28", upstream.Config{BaseURL: "https://ghe.example/api/v3", APIVersionActions: "2022-11-28"}, org, false},
		{"ghes legacy org", upstream.Config{BaseURL: "https://ghe.example/api/v3", LegacyRoutes: true}, org, true},
		{"ghes legacy repo", upstream.Config{BaseURL: "https://ghe.example/api/v3", LegacyRoutes: true}, repo, true},
		{"ghes legacy env", upstream.Config{BaseURL: "https://ghe.example/api/v3", LegacyRoutes: true}, env, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			cl, err := upstream.New(c.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if got := cl.PutValueOptional(c.s); got != c.want {
				t.Errorf("PutValueOptional(%s) = %v, want %v", c.s, got, c.want)
			}
		})
	}
}
