package seedconformance

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
)

// TestPutSettingsOnly: where the seed leaves encrypted_value and key_id
// optional (github.com's Actions organization secrets, 003:215/219), a
// PutSecret without a value changes an existing secret's visibility and
// selection with one PUT that carries neither, and GitHub keeps the
// value. Where the seeds mark them Required (Agents, 001:215/219; GHES
// 3.21, 000:218/222) and for a secret that does not exist, the broker
// refuses the put and sends no write.
func TestPutSettingsOnly(t *testing.T) {
	noValue := func(name, visibility string, ids ...int64) *secretbrokerv1.PutSecretRequest {
		return &secretbrokerv1.PutSecretRequest{Name: name, Visibility: visibility, SelectedRepositoryIds: ids}
	}
	cases := []struct {
		name  string
		o     setup
		app   string
		req   func(name string) *secretbrokerv1.PutSecretRequest
		code  codes.Code
		want  []int64 // selection after the put (code OK)
		wantV string  // visibility after the put (code OK)
	}{
		{"visibility", setup{}, "actions", func(n string) *secretbrokerv1.PutSecretRequest { return noValue(n, "all") }, codes.OK, nil, "all"},
		{"selection", setup{}, "actions", func(n string) *secretbrokerv1.PutSecretRequest {
			return noValue(n, "selected", helloWorldID, otherID)
		}, codes.OK, []int64{helloWorldID, otherID}, "selected"},
		{"does not exist", setup{}, "actions", func(string) *secretbrokerv1.PutSecretRequest {
			return noValue("orgs/octo-org/actions/secrets/NEVER", "all")
		}, codes.NotFound, nil, ""},
		{"agents", setup{}, "agents", func(n string) *secretbrokerv1.PutSecretRequest { return noValue(n, "all") }, codes.InvalidArgument, nil, ""},
		{"ghes 3.21", setup{ghes: true}, "actions", func(n string) *secretbrokerv1.PutSecretRequest { return noValue(n, "all") }, codes.InvalidArgument, nil, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			run(t, c.o, func(t *testing.T, e *env) {
				key, name := orgScope(c.app), "orgs/octo-org/"+c.app+"/secrets/S"
				e.put(t, name, planted, "selected", helloWorldID)
				mark := e.gh.mark()
				_, err := e.srv.PutSecret(context.Background(), c.req(name))
				wantCode(t, err, c.code)
				var puts []request
				for _, r := range writes(e.gh.requests(mark)) {
					if r.method == http.MethodPut {
						puts = append(puts, r)
					}
				}
				s, _ := e.gh.secret(key, "S")
				if s.value != planted {
					t.Errorf("GitHub holds another value after the put without one")
				}
				if c.code != codes.OK {
					if len(puts) != 0 {
						t.Errorf("refused, yet sent %v", puts)
					}
					return
				}
				if len(puts) != 1 {
					t.Fatalf("PUTs %v, want one", puts)
				}
				if w := puts[0].wire; strings.Contains(w, "encrypted_value") || strings.Contains(w, "key_id") {
					t.Errorf("the PUT carries a value or key_id:\n%s", w)
				}
				slices.Sort(s.selected)
				if s.visibility != c.wantV || !slices.Equal(s.selected, c.want) {
					t.Errorf("GitHub holds visibility %q, selection %v; want %q, %v", s.visibility, s.selected, c.wantV, c.want)
				}
			})
		})
	}
}
