package service

import (
	"context"
	"errors"
	"maps"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/service/state"
	"github.com/secretbroker/secretbroker/upstream"
)

// Writes and prunes that race another writer of the same secret: the
// broker acts on what holds when it acts, not on what it saw earlier.

// otherTool is another writer of the same GitHub (own pacer, own state).
func otherTool(t *testing.T, h *harness) *harness {
	t.Helper()
	c2, err := upstream.New(upstream.Config{BaseURL: emulatorURL, Token: upstream.Token(testToken),
		HTTPClient: &http.Client{Transport: newEmulatorTransport(h.emu)}, Logger: newTestLogger(h.logs)})
	if err != nil {
		t.Fatal(err)
	}
	st2, _ := state.NewMemory(state.Options{})
	return newHarnessWith(t, c2, h.logs, Options{State: st2})
}

// A prune leaves alone a secret someone else touched after the prune was
// planned or accepted: deleted and created again (README: such a record
// "gives its owner nothing in a sync, planned or run"), or changed by hand
// (its updated_at is not the owner's write's any more). The delete reads
// the secret under its lock first.
func TestPruneLeavesSecretTouchedAfterThePlan(t *testing.T) {
	tests := []struct {
		name  string
		touch func(ctx context.Context, other *harness) error
		wantE string // E's result
	}{
		{"created again", func(ctx context.Context, other *harness) error {
			if _, err := other.broker.DeleteSecret(ctx, &secretbrokerv1.DeleteSecretRequest{Name: repoScope + "/secrets/E"}); err != nil {
				return err
			}
			_, err := other.broker.PutSecret(ctx, plain(repoScope+"/secrets/E", plantedSecret+"-other"))
			return err
		}, "FOREIGN FAILED_PRECONDITION"},
		{"changed by hand", func(ctx context.Context, other *harness) error {
			_, err := other.broker.PutSecret(ctx, plain(repoScope+"/secrets/E", plantedSecret+"-other"))
			return err
		}, "DELETE FAILED_PRECONDITION drift"},
	}
	for _, tt := range tests {
		for _, async := range []bool{true, false} {
			t.Run(tt.name+map[bool]string{true: ", async", false: ""}[async], func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					h, _ := newHarnessWithStore(t)
					closeOps(t, h.server)
					ctx := t.Context()
					all := map[string]string{"A": plantedSecret, "B": plantedSecret, "C": plantedSecret, "D": plantedSecret, "E": plantedSecret}
					if _, err := h.broker.SyncSecrets(ctx, syncReq(repoScope, "team-a", all)); err != nil {
						t.Fatal(err)
					}
					time.Sleep(time.Minute)
					other := otherTool(t, h)
					prune := syncReq(repoScope, "team-a", nil)
					prune.Prune, prune.Async = true, async
					prune.ExpectedDeletes = &secretbrokerv1.ExpectedDeletes{SecretNames: []string{"A", "B", "C", "D", "E"}}
					done := syncInBackground(ctx, h, prune)
					time.Sleep(100 * time.Millisecond) // planned, first delete in flight
					if err := tt.touch(ctx, other); err != nil {
						t.Fatal(err)
					}
					a := <-done
					if a.err != nil {
						t.Fatal(a.err)
					}
					results := a.resp.GetResults()
					if async {
						results = waitOp(ctx, t, h.broker, a.resp.GetOperation().GetName(), time.Minute).GetResponse().GetSyncResults()
					}
					want := map[string]string{"A": "DELETE OK", "B": "DELETE OK", "C": "DELETE OK", "D": "DELETE OK", "E": tt.wantE}
					if got := pruneResults(t, results); !maps.Equal(got, want) {
						t.Errorf("results %v, want %v", got, want)
					}
					if got, err := h.emu.Open(repoScope, "E"); err != nil || string(got) != plantedSecret+"-other" {
						t.Errorf("E, touched after team-a's plan, is %q, %v; want it left as the other tool wrote it", got, err)
					}
					for _, n := range []string{"A", "B", "C", "D"} {
						if _, err := h.emu.Open(repoScope, n); err == nil {
							t.Errorf("team-a's %s was not pruned", n)
						}
					}
				})
			})
		}
	}
}

// otherHoldsTheLock makes secret (in repoScope) team-a's through a sync,
// then, a minute later, has token:other put another value of it that
// holds the secret's write lock while it waits a second for the write
// spacing (a write of another secret took the slot), and returns that
// put's answer. It runs in the caller's synctest bubble: its sleeps are
// fake time.
func otherHoldsTheLock(t *testing.T, h *harness, secret string) <-chan error {
	t.Helper()
	mustBeInBubble(t)
	ctx := t.Context()
	_, name, _ := strings.Cut(secret, "/secrets/")
	if _, err := h.broker.SyncSecrets(ctx, syncReq(repoScope, "team-a", map[string]string{name: plantedSecret + "-a0"})); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Minute)
	if _, err := h.broker.PutSecret(ctx, plain(repoScope+"/secrets/Z", plantedSecret+"-z")); err != nil {
		t.Fatal(err)
	}
	putDone := make(chan error, 1)
	go func() {
		_, err := h.broker.PutSecret(as(ctx, "token:other"), plain(secret, plantedSecret+"-other"))
		putDone <- err
	}()
	time.Sleep(100 * time.Millisecond) // the put holds the lock, waiting for the slot
	return putDone
}

// A sync item checks the secret's owner again under its write lock: a put
// of the secret by another caller that held the lock while the item waited
// for it makes the secret theirs, and the item is a CONFLICT, not an
// overwrite.
func TestSyncChecksOwnerUnderTheLock(t *testing.T) {
	for _, async := range []bool{false, true} {
		t.Run(map[bool]string{true: "async", false: "sync"}[async], func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h, st := newHarnessWithStore(t)
				closeOps(t, h.server)
				ctx := t.Context()
				x := repoScope + "/secrets/X"
				putDone := otherHoldsTheLock(t, h, x)
				req := syncReq(repoScope, "team-a", map[string]string{"X": plantedSecret + "-a1"})
				req.Async = async
				resp, err := h.broker.SyncSecrets(ctx, req)
				if err != nil {
					t.Fatal(err)
				}
				if err := <-putDone; err != nil {
					t.Fatal(err)
				}
				results := planOf(t, resp)
				if async {
					results = syncResultsOf(t, waitOp(ctx, t, h.broker, resp.GetOperation().GetName(), time.Minute))
				}
				got, _ := h.emu.Open(repoScope, "X")
				if string(got) != plantedSecret+"-other" {
					t.Errorf("team-a's sync overwrote token:other's put of X (answered before team-a's write was sent): results %v", results)
				}
				if rec, err := st.GetRecord(ctx, x); err != nil || rec.Owner == "team-a" {
					t.Errorf("X's record after the sync: %+v, %v; want it not team-a's", rec, err)
				}
				if !strings.HasPrefix(results["X"], "CONFLICT ") {
					t.Errorf("the sync's results %v, want X a CONFLICT", results)
				}
			})
		})
	}
}

// A batch's write whose answer has no Date reads its updated_at back at
// once: read back at the operation's end, it was the updated_at of a write
// someone else made after the broker's, and the next put of the broker's
// value was answered unchanged while GitHub held the other value.
func TestOperationWriteWithoutDateReadsBackAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, harnessOpts{wrap: func(u Upstream) Upstream { return noDate{u} }})
		closeOps(t, h.server)
		ctx := t.Context()
		other := otherTool(t, h)
		x := repoScope + "/secrets/X"
		req := &secretbrokerv1.BatchPutSecretsRequest{Async: true}
		for _, n := range []string{"X", "A", "B", "C", "D", "E"} {
			req.Requests = append(req.Requests, plain(repoScope+"/secrets/"+n, plantedSecret+"-broker"))
		}
		resp, err := h.broker.BatchPutSecrets(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(1500 * time.Millisecond) // X written, the others waiting for the write spacing
		if _, err := other.broker.PutSecret(ctx, plain(x, plantedSecret+"-other")); err != nil {
			t.Fatal(err)
		}
		waitOp(ctx, t, h.broker, resp.GetOperation().GetName(), time.Minute)
		time.Sleep(time.Minute)
		put, err := h.broker.PutSecret(ctx, plain(x, plantedSecret+"-broker"))
		if err != nil {
			t.Fatal(err)
		}
		got, _ := h.emu.Open(repoScope, "X")
		if put.GetUnchanged() || string(got) != plantedSecret+"-broker" {
			t.Errorf("put after another writer's: unchanged=%v, GitHub holds %q; want written", put.GetUnchanged(), got)
		}
	})
}

// blindStore is a state store that cannot read the record of one secret
// once another writer than owner has recorded a write of it (a Redis
// that stops answering at that moment).
type blindStore struct {
	state.Store
	secret, owner string
	blind         atomic.Bool
}

func (b *blindStore) PutRecord(ctx context.Context, r state.Record) error {
	err := b.Store.PutRecord(ctx, r)
	if r.Name == b.secret && r.Owner != b.owner && !r.ValueFingerprint.IsZero() {
		b.blind.Store(true)
	}
	return err
}

func (b *blindStore) GetRecord(ctx context.Context, name string) (state.Record, error) {
	if name == b.secret && b.blind.Load() {
		return state.Record{}, errors.New("the store does not answer")
	}
	return b.Store.GetRecord(ctx, name)
}

// A sync item that cannot read the secret's record under its lock does not
// write it: written, the secret would become the sync's owner's whoever's
// it is. It answers UNAVAILABLE, and the other writer's value stays.
func TestSyncWriteWithOwnerUnknownIsNotSent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem, err := state.NewMemory(state.Options{})
		if err != nil {
			t.Fatal(err)
		}
		x := repoScope + "/secrets/X"
		st := &blindStore{Store: mem, secret: x, owner: "team-a"}
		h := newHarness(t, harnessOpts{state: st})
		ctx := t.Context()
		putDone := otherHoldsTheLock(t, h, x)
		resp, err := h.broker.SyncSecrets(ctx, syncReq(repoScope, "team-a", map[string]string{"X": plantedSecret + "-a1"}))
		if err != nil {
			t.Fatal(err)
		}
		if err := <-putDone; err != nil {
			t.Fatal(err)
		}
		results := planOf(t, resp)
		if got, _ := h.emu.Open(repoScope, "X"); string(got) != plantedSecret+"-other" {
			t.Errorf("team-a's sync wrote X without knowing its owner: results %v", results)
		}
		if !strings.HasSuffix(results["X"], " UNAVAILABLE") {
			t.Errorf("the sync's results %v, want X UNAVAILABLE", results)
		}
	})
}

// syncAnswer is a SyncSecrets call's answer.
type syncAnswer struct {
	resp *secretbrokerv1.SyncSecretsResponse
	err  error
}

// syncInBackground sends req to h's broker from a goroutine of its own
// and hands back its answer.
func syncInBackground(ctx context.Context, h *harness, req *secretbrokerv1.SyncSecretsRequest) <-chan syncAnswer {
	done := make(chan syncAnswer, 1)
	go func() {
		r, err := h.broker.SyncSecrets(ctx, req)
		done <- syncAnswer{r, err}
	}()
	return done
}
