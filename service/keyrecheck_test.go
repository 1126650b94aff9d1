package service

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"

	"github.com/secretbroker/secretbroker/upstream"
	"github.com/secretbroker/secretbroker/upstream/emulator"
)

// recheckScope is the scope the tests of the key re-check budgets write to.
const recheckScope = "repos/octo-org/hello-world/actions"

// plainPut is a PutSecret of a value the broker seals.
func plainPut(name, value string) *secretbrokerv1.PutSecretRequest {
	return &secretbrokerv1.PutSecretRequest{Name: name, Payload: &secretbrokerv1.PutSecretRequest_Value{Value: value}}
}

// keyRequests returns how many public-key requests the emulator has had
// for recheckScope since its counts were last reset.
func keyRequests(d *direct) int { return d.emu.Count(emulator.RouteGetRepoPublicKey) }

// What one caller sends with a caller-sealed value (a stale key_id, or a
// value GitHub refuses with 422) spends only the callers' re-check budget:
// another caller's plaintext put after the first rotation in that TTL
// still gets its own re-check, finds the new key, is sealed again and
// lands.
func TestCallerMistakeLeavesPlaintextPutItsRecheck(t *testing.T) {
	tests := []struct {
		name string
		// bob sends Bob's put, which must be refused with
		// INVALID_ARGUMENT after costing the scope's one caller re-check.
		bob func(t *testing.T, d *direct, pk *secretbrokerv1.PublicKey) error
	}{
		{"stale key_id", func(t *testing.T, d *direct, pk *secretbrokerv1.PublicKey) error {
			return putErr(d.srv.PutSecret(t.Context(), sealedPut(recheckScope+"/secrets/BOB", sealFor(t, pk, "bob"), "999")))
		}},
		{"GitHub's 422 to a caller-sealed value", func(t *testing.T, d *direct, pk *secretbrokerv1.PublicKey) error {
			// The current key_id, but a value that does not open under it.
			other := &secretbrokerv1.PublicKey{KeyId: pk.GetKeyId(), Key: d.otherKey(t)}
			return putErr(d.srv.PutSecret(t.Context(), sealedPut(recheckScope+"/secrets/BOB", sealFor(t, other, "bob"), pk.GetKeyId())))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const ttl = 10 * time.Minute
				d := newDirect(t, ttl)
				if _, err := d.srv.PutSecret(t.Context(), plainPut(recheckScope+"/secrets/ALICE", "first")); err != nil {
					t.Fatal(err)
				}
				pk := d.publicKey(t, recheckScope)

				d.emu.ResetCounts()
				err := tt.bob(t, d, pk)
				wantCode(t, err, codes.InvalidArgument)
				if got := keyRequests(d); got != 1 {
					t.Fatalf("Bob's put cost %d key requests, want 1 (the callers' re-check)", got)
				}

				// The first rotation within the TTL.
				time.Sleep(time.Second)
				newID := d.emu.RotateKey(recheckScope)
				d.emu.ResetCounts()
				resp, err := d.srv.PutSecret(t.Context(), plainPut(recheckScope+"/secrets/ALICE", plantedSecret))
				noLeak(t, err)
				if err != nil || resp.GetKeyId() != newID {
					t.Fatalf("Alice's plaintext put after Bob's mistake and a rotation = %+v, %v; want success with key %s", resp, err, newID)
				}
				if got, err := d.emu.Open(recheckScope, "ALICE"); err != nil || string(got) != plantedSecret {
					t.Fatalf("Alice's value does not open on GitHub: %v", err)
				}
				if got, puts := keyRequests(d), d.puts(); got != 1 || puts != 2 {
					t.Errorf("Alice's put: %d key requests, %d PUTs; want 1 (the broker's re-check) and 2 (refused, re-sealed)", got, puts)
				}
				if d.emu.LastRequestHeader(emulator.RouteGetRepoPublicKey).Get("If-None-Match") == "" {
					t.Error("the broker's re-check was not conditional")
				}
			})
		})
	}
}

// putErr drops a PutSecret answer, keeping its error.
func putErr(_ *secretbrokerv1.PutSecretResponse, err error) error { return err }

// otherKey returns a public key that is not recheckScope's, as base64: a
// value sealed to it does not open under the scope's key.
func (d *direct) otherKey(t *testing.T) string {
	t.Helper()
	pk := d.publicKey(t, "orgs/octo-org/actions")
	if pk.GetKey() == d.publicKey(t, recheckScope).GetKey() {
		t.Fatal("the organization and the repository share a key")
	}
	return pk.GetKey()
}

// When the key re-fetch after GitHub's 422 to a value the broker sealed
// fails, the plaintext put fails with that failure (UNAVAILABLE: try
// again), not with the 422 (INVALID_ARGUMENT: do not retry).
func TestPlaintextPutRecheckFailureIsUnavailable(t *testing.T) {
	tests := []struct {
		name  string
		fault emulator.Fault
	}{
		{"503", emulator.Fault{Route: emulator.RouteGetRepoPublicKey, Status: http.StatusServiceUnavailable, Times: 1000}},
		{"502", emulator.Fault{Route: emulator.RouteGetRepoPublicKey, Status: http.StatusBadGateway, Times: 1000}},
		{"dropped connection", emulator.Fault{Route: emulator.RouteGetRepoPublicKey, Drop: true, Times: 1000}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				d := newDirect(t, 10*time.Minute)
				if _, err := d.srv.PutSecret(t.Context(), plainPut(recheckScope+"/secrets/ALICE", "first")); err != nil {
					t.Fatal(err)
				}
				d.emu.RotateKey(recheckScope)
				d.emu.InjectFault(tt.fault)
				d.emu.ResetCounts()
				_, err := d.srv.PutSecret(t.Context(), plainPut(recheckScope+"/secrets/ALICE", plantedSecret))
				wantCode(t, err, codes.Unavailable)
				noLeak(t, err)
				if msg := status.Convert(err).Message(); strings.Contains(msg, "GitHub rejected the request") {
					t.Errorf("the message is the 422's: %q", msg)
				}
				if got := keyRequests(d); got < 1 {
					t.Errorf("%d key requests, want the re-check to have been tried", got)
				}
				if got := d.puts(); got != 1 {
					t.Errorf("%d PUTs, want 1 (the refused one; nothing re-sealed)", got)
				}
			})
		})
	}
}

// The budgets stay bounded: within one TTL, a caller's stale key_ids and
// GitHub's 422s to caller-sealed values cost one conditional key request
// in all, and GitHub's 422s to values the broker sealed (here for another
// cause than the key) one more, on the broker's own budget; a TTL later
// each budget allows one again.
func TestRecheckBudgetsStayBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const ttl = time.Minute
		d := newDirect(t, ttl)
		pk := d.publicKey(t, recheckScope)
		stale := sealedPut(recheckScope+"/secrets/BOB", sealFor(t, pk, "bob"), "999")
		refused := sealedPut(recheckScope+"/secrets/BOB", sealFor(t, &secretbrokerv1.PublicKey{Key: d.otherKey(t)}, "bob"), pk.GetKeyId())

		// phase sends n of each request and checks the key requests and
		// 304s it cost.
		phase := func(what string, n int, req *secretbrokerv1.PutSecretRequest, wantKeys int) {
			t.Helper()
			d.emu.ResetCounts()
			for range n {
				_, err := d.srv.PutSecret(t.Context(), req)
				wantCode(t, err, codes.InvalidArgument)
				noLeak(t, err)
			}
			if got := keyRequests(d); got != wantKeys {
				t.Errorf("%s: %d key requests, want %d", what, got, wantKeys)
			}
			if got := d.emu.Stats().NotModified; got != wantKeys {
				t.Errorf("%s: %d answers were 304, want %d (every re-check conditional)", what, got, wantKeys)
			}
		}
		// putsRefused makes GitHub refuse the next n PUTs with 422.
		putsRefused := func(n int) {
			d.emu.InjectFault(emulator.Fault{Route: emulator.RoutePutRepoSecret, Status: http.StatusUnprocessableEntity, Times: n})
		}
		plain := plainPut(recheckScope+"/secrets/ALICE", plantedSecret)

		phase("stale key_ids", 50, stale, 1)
		phase("caller-sealed values GitHub refuses", 20, refused, 0)
		phase("more stale key_ids", 50, stale, 0)
		putsRefused(20)
		phase("GitHub's 422s to broker-sealed values", 20, plain, 1)
		phase("stale key_ids after the broker's re-check", 20, stale, 0)

		// A TTL after the re-checks: the key is due for its own
		// revalidation, and each budget allows one more.
		time.Sleep(ttl)
		phase("stale key_ids a TTL later", 50, stale, 2)
		putsRefused(20)
		phase("GitHub's 422s to broker-sealed values a TTL later", 20, plain, 1)
	})
}

// A plaintext put that names repositories by id may be refused by GitHub
// (422) for an id GitHub does not know, not for its key: its re-check
// spends the callers' budget, so that a caller sending unknown ids does not
// spend the broker's, and a put that names no repository still gets its
// re-check after the first rotation in that TTL, finds the new key and
// lands.
func TestUnknownRepositoryIDsLeavePlaintextPutItsRecheck(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const (
			ttl   = 10 * time.Minute
			scope = "orgs/octo-org/actions"
		)
		d := newDirect(t, ttl)
		orgKeyRequests := func() int { return d.emu.Count(emulator.RouteGetOrgPublicKey) }
		alice := func(value string) *secretbrokerv1.PutSecretRequest {
			req := plainPut(scope+"/secrets/ALICE", value)
			req.Visibility = "private"
			return req
		}
		if _, err := d.srv.PutSecret(t.Context(), alice("first")); err != nil {
			t.Fatal(err)
		}

		d.emu.ResetCounts()
		bob := plainPut(scope+"/secrets/BOB", "bob")
		bob.Visibility = "selected"
		bob.SelectedRepositoryIds = []int64{987654321} // no repository of octo-org
		_, err := d.srv.PutSecret(t.Context(), bob)
		wantCode(t, err, codes.InvalidArgument)
		if got := orgKeyRequests(); got != 1 {
			t.Fatalf("Bob's put cost %d key requests, want 1 (its re-check)", got)
		}

		// The first rotation within the TTL.
		time.Sleep(time.Second)
		newID := d.emu.RotateKey(scope)
		d.emu.ResetCounts()
		resp, err := d.srv.PutSecret(t.Context(), alice(plantedSecret))
		noLeak(t, err)
		if err != nil || resp.GetKeyId() != newID {
			t.Fatalf("Alice's plaintext put after Bob's unknown id and a rotation = %+v, %v; want success with key %s", resp, err, newID)
		}
		if got, err := d.emu.Open(scope, "ALICE"); err != nil || string(got) != plantedSecret {
			t.Fatalf("Alice's value does not open on GitHub: %v", err)
		}
		if got, puts := orgKeyRequests(), d.puts(); got != 1 || puts != 2 {
			t.Errorf("Alice's put: %d key requests, %d PUTs; want 1 (the broker's re-check) and 2 (refused, re-sealed)", got, puts)
		}
	})
}

// A plaintext put that names no selection of an organization secret with
// visibility "selected" keeps the secret's current selection, which the
// broker lists from GitHub: those ids are not the caller's choice, so
// GitHub's 422 after a rotation re-checks the key on the broker's budget,
// which another caller's stale key_id cannot have spent. The repository
// secret is the control.
func TestKeptSelectionPutRechecksOnTheBrokersBudget(t *testing.T) {
	tests := []struct {
		name       string
		visibility string
	}{
		{"selection kept", "selected"},
		{"visibility all", "all"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, harnessOpts{keyTTL: 10 * time.Minute})
				ctx := t.Context()
				const parent = "orgs/octo-org/actions"
				first := &secretbrokerv1.PutSecretRequest{
					Name: parent + "/secrets/SHARED", Payload: &secretbrokerv1.PutSecretRequest_Value{Value: plantedSecret},
					Visibility: tt.visibility,
				}
				if tt.visibility == "selected" {
					first.SelectedRepositoryIds = []int64{h.repoID(t, "hello-world")}
				}
				if _, err := h.server.PutSecret(ctx, first); err != nil {
					t.Fatal(err)
				}
				pk, err := h.server.GetPublicKey(ctx, &secretbrokerv1.GetPublicKeyRequest{Parent: parent})
				if err != nil {
					t.Fatal(err)
				}
				// Another caller's value sealed for a key_id that is not the
				// scope's spends the callers' budget.
				_, err = h.server.PutSecret(ctx, &secretbrokerv1.PutSecretRequest{
					Name:    parent + "/secrets/OTHER",
					Payload: &secretbrokerv1.PutSecretRequest_EncryptedValue{EncryptedValue: sealFor(t, pk, plantedSecret)},
					KeyId:   "999", Visibility: "all",
				})
				wantCode(t, err, codes.InvalidArgument)
				time.Sleep(time.Second)
				newID := h.emu.RotateKey(parent)
				// A value-only update: no visibility, no repositories.
				resp, err := h.server.PutSecret(ctx, &secretbrokerv1.PutSecretRequest{
					Name: parent + "/secrets/SHARED", Payload: &secretbrokerv1.PutSecretRequest_Value{Value: plantedSecret + "-2"},
				})
				if err != nil || resp.GetKeyId() != newID {
					t.Fatalf("value-only put after a stale key_id and a rotation = %v, %v; want success with key %s", resp, err, newID)
				}
				if got, err := h.emu.Open(parent, "SHARED"); err != nil || string(got) != plantedSecret+"-2" {
					t.Errorf("GitHub holds %q, %v", got, err)
				}
			})
		})
	}
}

// TestRotationsWithinOneTTL: GitHub rotates a scope's key twice within a
// TTL. The re-check the first rotation's 422 spent found a new key, so it
// is given back: the second rotation's 422 finds its key too, and
// plaintext puts keep working (they were refused INVALID_ARGUMENT until
// the TTL ran out).
func TestRotationsWithinOneTTL(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const ttl = 10 * time.Minute
		d := newDirect(t, ttl)
		name := recheckScope + "/secrets/ALICE"
		if _, err := d.srv.PutSecret(t.Context(), plainPut(name, plantedSecret+"-0")); err != nil {
			t.Fatal(err)
		}
		for i := 1; i <= 3; i++ {
			time.Sleep(time.Minute)
			newID := d.emu.RotateKey(recheckScope)
			resp, err := d.srv.PutSecret(t.Context(), plainPut(name, plantedSecret+"-"+strconv.Itoa(i)))
			if err != nil || resp.GetKeyId() != newID {
				t.Fatalf("a plaintext put after rotation %d within the TTL = %v, %v; want success with key %s", i, resp, err, newID)
			}
		}
	})
}

// evictBeforeRetry is the emulator's GitHub whose second PUT first makes
// the key cache drop recheckScope's key: it fetches another scope's key
// into a cache bounded to one scope, as a busy broker's cache may while
// the re-sealed write waits in the pacer's queue.
type evictBeforeRetry struct {
	Upstream
	keys *keyCache
	puts atomic.Int32
}

func (u *evictBeforeRetry) PutSecretFunc(ctx context.Context, s upstream.Scope, name string, body func() (upstream.PutSecretBody, error)) (upstream.Written, error) {
	if u.puts.Add(1) == 2 {
		if _, err := u.keys.get(ctx, upstream.Scope{App: upstream.Actions, Org: "octo-org"}); err != nil {
			return upstream.Written{}, err
		}
	}
	return u.Upstream.PutSecretFunc(ctx, s, name, body)
}

// After GitHub's 422 to a value sealed with the old key, the write is
// re-sealed with the new key the re-check found, even when the cache no
// longer holds it when the retry is admitted: never sent again sealed
// with the old key.
func TestRetryAfterRotationNeverUsesTheOldKey(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		emu := emulator.New(emulator.Options{Token: testToken})
		emu.SeedDemo()
		client, err := upstream.New(upstream.Config{
			BaseURL:    emulatorURL,
			Token:      upstream.Token(testToken),
			HTTPClient: &http.Client{Transport: newEmulatorTransport(emu)},
		})
		if err != nil {
			t.Fatal(err)
		}
		up := &evictBeforeRetry{Upstream: client}
		srv := New(up, Options{KeyTTL: 10 * time.Minute})
		up.keys = srv.keys
		srv.keys.max = 1
		if _, err := srv.PutSecret(t.Context(), plainPut(recheckScope+"/secrets/ALICE", "first")); err != nil {
			t.Fatal(err)
		}
		newID := emu.RotateKey(recheckScope)
		up.puts.Store(0)
		resp, err := srv.PutSecret(t.Context(), plainPut(recheckScope+"/secrets/ALICE", plantedSecret))
		noLeak(t, err)
		if err != nil || resp.GetKeyId() != newID {
			t.Fatalf("put after a rotation = %+v, %v; want success with key %s", resp, err, newID)
		}
		if got, err := emu.Open(recheckScope, "ALICE"); err != nil || string(got) != plantedSecret {
			t.Fatalf("the value does not open on GitHub: %v", err)
		}
		if n := up.puts.Load(); n != 2 {
			t.Errorf("%d PUTs, want 2 (refused, re-sealed)", n)
		}
	})
}
