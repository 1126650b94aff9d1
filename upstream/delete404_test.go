package upstream

import (
	"cmp"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"golang.org/x/crypto/nacl/box"

	"github.com/secretbroker/secretbroker/upstream/emulator"
)

// deleteWorld is the emulator behind a loopback server that can turn the
// answer to the next DELETE into a 502 after the emulator handled it:
// GitHub applied the request, the client hears that it failed.
type deleteWorld struct {
	em      *emulator.Server
	c       *Client
	repoID  int64
	applied atomic.Int64 // DELETEs still to be applied and answered 502
}

func newDeleteWorld(t *testing.T) *deleteWorld {
	t.Helper()
	w := &deleteWorld{em: emulator.New(emulator.Options{Token: testToken})}
	w.repoID = w.em.AddRepo("acme", "api", false)
	ts := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodDelete && w.applied.Add(-1) >= 0 {
			w.em.ServeHTTP(httptest.NewRecorder(), r) // applied; the answer is lost
			rw.Header().Set("Content-Type", "application/json")
			rw.WriteHeader(http.StatusBadGateway)
			_, _ = rw.Write([]byte(`{"message":"Bad Gateway"}`))
			return
		}
		w.em.ServeHTTP(rw, r)
	}))
	t.Cleanup(ts.Close)
	w.c = newClient(t, Config{BaseURL: ts.URL})
	t.Cleanup(w.c.hc.CloseIdleConnections)
	return w
}

// putOrgSecret creates orgActions' secret name, visibility "selected",
// with the world's repository selected.
func (w *deleteWorld) putOrgSecret(t *testing.T, name string) {
	t.Helper()
	pk, err := w.c.GetPublicKey(t.Context(), orgActions)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.StdEncoding.DecodeString(pk.Key)
	if err != nil || len(raw) != 32 {
		t.Fatalf("public key %q: %v", pk.Key, err)
	}
	sealed, err := box.SealAnonymous(nil, []byte("value"), (*[32]byte)(raw), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	created, err := w.c.PutSecret(t.Context(), orgActions, name, PutSecretBody{
		EncryptedValue:        base64.StdEncoding.EncodeToString(sealed),
		KeyID:                 pk.KeyID,
		Visibility:            "selected",
		SelectedRepositoryIDs: []int64{w.repoID},
	})
	if err != nil || !created {
		t.Fatalf("PutSecret = %v, %v", created, err)
	}
}

// A 404 to the retry of a DELETE whose first attempt had an unknown
// outcome is success only for DeleteSecret, whose first attempt may have
// deleted the secret. Removing a repository from an organization secret
// cannot make the secret disappear: a 404 there means it never existed.
func TestRetriedDeleteAnswered404(t *testing.T) {
	for _, tc := range []struct {
		name    string
		exists  bool                                 // the org secret S exists, with the repository selected
		fault   func(*deleteWorld)                   // injects the first attempt's failure; nil for none
		call    func(*testing.T, *deleteWorld) error // the call under test
		route   string                               // the emulator route counted
		tries   int                                  // attempts the route gets; default 2
		want404 bool
	}{
		{
			name:  "remove repository from a missing secret after a 502",
			fault: canned502(emulator.RouteRemoveSelectedRepo),
			call:  removeRepo, route: emulator.RouteRemoveSelectedRepo, want404: true,
		},
		{
			name:  "remove repository from a missing secret after a dropped answer",
			fault: dropAfter(emulator.RouteRemoveSelectedRepo),
			call:  removeRepo, route: emulator.RouteRemoveSelectedRepo, want404: true,
		},
		{
			name:  "remove repository from a missing secret after a drop",
			fault: drop(emulator.RouteRemoveSelectedRepo),
			call:  removeRepo, route: emulator.RouteRemoveSelectedRepo, want404: true,
		},
		{
			name:   "remove repository after a 502 the emulator applied",
			exists: true,
			fault:  applied502,
			call:   removeRepo, route: emulator.RouteRemoveSelectedRepo,
		},
		{
			name:   "delete secret after a 502 the emulator applied",
			exists: true,
			fault:  applied502,
			call:   deleteSecret, route: emulator.RouteDeleteOrgSecret,
		},
		{
			name:   "delete secret after a dropped answer the emulator applied",
			exists: true,
			fault:  dropAfter(emulator.RouteDeleteOrgSecret),
			call:   deleteSecret, route: emulator.RouteDeleteOrgSecret,
		},
		{
			name:  "delete missing secret after a 502",
			fault: canned502(emulator.RouteDeleteOrgSecret),
			call:  deleteSecret, route: emulator.RouteDeleteOrgSecret,
		},
		{
			name: "delete missing secret without a failure",
			call: deleteSecret, route: emulator.RouteDeleteOrgSecret, tries: 1, want404: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newDeleteWorld(t)
			if tc.exists {
				w.putOrgSecret(t, "S")
				if ids, err := w.em.SelectedRepositoryIDs("orgs/acme/actions", "S"); err != nil || len(ids) != 1 || ids[0] != w.repoID {
					t.Fatalf("selected repositories %v, %v; want [%d]", ids, err, w.repoID)
				}
			}
			if tc.fault != nil {
				tc.fault(w)
			}
			attempts := cmp.Or(tc.tries, 2)
			err := tc.call(t, w)
			if tc.want404 {
				var e *Error
				if !errors.As(err, &e) || e.StatusCode != http.StatusNotFound {
					t.Fatalf("err = %v, want GitHub's 404 *Error", err)
				}
			} else if err != nil {
				t.Fatalf("err = %v, want success", err)
			}
			if n := w.em.Count(tc.route); n != attempts {
				t.Errorf("%d attempts, want %d", n, attempts)
			}
			if !tc.exists {
				return
			}
			// What the successful call reports is what the emulator holds.
			switch tc.route {
			case emulator.RouteDeleteOrgSecret:
				if _, err := w.c.GetSecret(t.Context(), orgActions, "S"); !isStatus(err, http.StatusNotFound) {
					t.Errorf("GetSecret after the delete: %v, want 404", err)
				}
			case emulator.RouteRemoveSelectedRepo:
				ids, err := w.em.SelectedRepositoryIDs("orgs/acme/actions", "S")
				if err != nil || len(ids) != 0 {
					t.Errorf("selected repositories %v, %v; want none", ids, err)
				}
			}
		})
	}
}

func removeRepo(t *testing.T, w *deleteWorld) error {
	return w.c.RemoveSelectedRepository(t.Context(), orgActions, "S", w.repoID)
}

func deleteSecret(t *testing.T, w *deleteWorld) error {
	return w.c.DeleteSecret(t.Context(), orgActions, "S")
}

func canned502(route string) func(*deleteWorld) {
	return func(w *deleteWorld) {
		w.em.InjectFault(emulator.Fault{Route: route, Status: http.StatusBadGateway})
	}
}

func dropAfter(route string) func(*deleteWorld) {
	return func(w *deleteWorld) {
		w.em.InjectFault(emulator.Fault{Route: route, DropAfter: true})
	}
}

func drop(route string) func(*deleteWorld) {
	return func(w *deleteWorld) {
		w.em.InjectFault(emulator.Fault{Route: route, Drop: true})
	}
}

// applied502 makes the emulator apply the next DELETE and the client
// hear a 502.
func applied502(w *deleteWorld) { w.applied.Store(1) }

func isStatus(err error, status int) bool {
	e, ok := errors.AsType[*Error](err)
	return ok && e.StatusCode == status
}
