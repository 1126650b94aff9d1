package upstream

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
)

// A repository renamed (or transferred) keeps its id; a new repository
// made under the old name gets another. The legacy routes address an
// environment by repository id: once acme/api is renamed to acme/old-api
// and a new acme/api is made, a call for acme/api's environment must reach
// the new repository (id 5353), never the renamed one (id 4242), whose
// environment of the same name another team may own.
//
// A cached id forgotten only on a 404 would outlive the rename (the
// renamed repository's id still exists, with the environment): each call
// asks GitHub for the name's id again (checkRepositoryID).
func TestLegacyRoutesRenamedRepository(t *testing.T) {
	var renamed atomic.Bool
	f := newFake(t, func(r *http.Request) reply {
		p := r.URL.EscapedPath()
		switch {
		case p == "/api/v3/repos/acme/api" && !renamed.Load():
			return reply{Body: `{"id":4242,"name":"api","full_name":"acme/api"}`}
		case p == "/api/v3/repos/acme/api":
			return reply{Body: `{"id":5353,"name":"api","full_name":"acme/api"}`}
		case p == "/api/v3/repos/acme/old-api" && renamed.Load():
			return reply{Body: `{"id":4242,"name":"old-api","full_name":"acme/old-api"}`}
		case strings.HasPrefix(p, "/api/v3/repositories/"):
			if strings.HasSuffix(p, "/public-key") {
				return reply{Body: `{"key_id":"k1","key":"a2V5"}`}
			}
			if r.Method == http.MethodPut {
				return reply{Status: 204}
			}
			return reply{Body: secretListJSON}
		}
		return reply{Status: 404, Body: `{"message":"Not Found"}`}
	})
	c := newClient(t, Config{BaseURL: f.URL + "/api/v3", LegacyRoutes: true})
	ctx := t.Context()
	if _, err := c.GetPublicKey(ctx, envActions); err != nil {
		t.Fatal(err)
	}
	renamed.Store(true)
	before := len(f.Hits())
	if _, err := c.PutSecret(ctx, envActions, "DB_PASSWORD", PutSecretBody{EncryptedValue: "eA==", KeyID: "k1"}); err != nil {
		t.Fatal(err)
	}
	wrote := false
	for _, h := range f.Hits()[before:] {
		if strings.HasPrefix(h.EscapedPath, "/api/v3/repositories/4242/") {
			t.Errorf("%s %s: acme/api's environment written through the id of the repository renamed away (4242), want acme/api's current id 5353", h.Method, h.EscapedPath)
		}
		wrote = wrote || h.Method == http.MethodPut && h.EscapedPath == "/api/v3/repositories/5353/environments/prod%2Feu/secrets/DB_PASSWORD"
	}
	if !wrote {
		t.Errorf("no PUT to acme/api's current id 5353: %+v", f.Hits()[before:])
	}
}
