package service

// The order of a sync's writes and deletes, what an operation's item
// repeated after a crash reports, and what a cancel reports of an item cut
// short after GitHub was sent it.

import (
	"context"
	"errors"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/service/audit"
	"github.com/secretbroker/secretbroker/service/operation"
	"github.com/secretbroker/secretbroker/service/state"
	"github.com/secretbroker/secretbroker/upstream"
	"github.com/secretbroker/secretbroker/upstream/emulator"
)

// crashingStore fails, once armed, the first operation update that would
// record a finished item whose name contains crashOn: the item ran (its
// write or delete reached GitHub and its record was updated), and the
// process "dies" before its result is stored. The runner then stops
// running the operation, which stays stored as it was, leased to the
// dead runner, as after a crash.
type crashingStore struct {
	state.Store
	crashOn string
	crashed atomic.Bool
}

var errCrash = errors.New("simulated crash before the progress was stored")

func (c *crashingStore) UpdateOperation(ctx context.Context, id string, fn func(*state.Operation) error) (*state.Operation, error) {
	return c.Store.UpdateOperation(ctx, id, func(o *state.Operation) error {
		before := len(o.Results)
		if err := fn(o); err != nil {
			return err
		}
		for _, r := range o.Results[before:] {
			if strings.Contains(r.Name, c.crashOn) && c.crashed.CompareAndSwap(false, true) {
				return errCrash
			}
		}
		return nil
	})
}

// resumeAfterCrash starts a second broker on inner (the store a crashed
// broker used) once the dead runner's lease has run out, resumes the one
// unfinished operation and waits for it (name) to end. It runs in the
// caller's synctest bubble.
func resumeAfterCrash(t *testing.T, h *harness, inner state.Store, name string) *secretbrokerv1.Operation {
	t.Helper()
	s2 := resumeOn(t, h, inner)
	done, err := s2.WaitOperation(t.Context(), &secretbrokerv1.WaitOperationRequest{Name: name})
	if err != nil || !done.GetDone() {
		t.Fatalf("resumed: %v %v; want done", done, err)
	}
	return done
}

// deletesOf counts the DELETE requests of secret name (in any scope) h's
// GitHub received.
func deletesOf(h *harness, name string) int {
	n := 0
	for _, c := range h.upstream.calls(http.MethodDelete) {
		if strings.HasSuffix(c.path, "/"+name) {
			n++
		}
	}
	return n
}

// TestSyncPruneWritesBeforeDeletes: README: "a sync's deletes run one at a
// time, after its writes", for a sync run at once and one run as an
// operation alike. A rename (OLD_TOKEN to TOKEN) must write TOKEN before
// it deletes OLD_TOKEN, so that a sync cancelled, failing or cut in
// between leaves the scope with the new name rather than neither. The
// deletes go in name order; an operation's writes too.
func TestSyncPruneWritesBeforeDeletes(t *testing.T) {
	for _, async := range []bool{false, true} {
		t.Run(map[bool]string{false: "sync", true: "async"}[async], func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, harnessOpts{})
				closeOps(t, h.server)
				ctx := t.Context()
				old := map[string]string{"A_OLD": plantedSecret, "OLD_TOKEN": plantedSecret, "KEEP": plantedSecret}
				if _, err := h.broker.SyncSecrets(ctx, syncReq(repoScope, "team", old)); err != nil {
					t.Fatal(err)
				}
				h.upstream.mu.Lock()
				h.upstream.sent = nil
				h.upstream.mu.Unlock()
				// Each name sorts before the one it replaces, and KEEP
				// (unchanged) between them: name order would delete first.
				req := syncReq(repoScope, "team", map[string]string{"KEEP": plantedSecret, "TOKEN": plantedSecret, "Z_NEW": plantedSecret})
				req.Prune, req.Async = true, async
				resp, err := h.broker.SyncSecrets(ctx, req)
				if err != nil {
					t.Fatal(err)
				}
				if async {
					done := waitOp(ctx, t, h.broker, resp.GetOperation().GetName(), 0)
					if done.GetError() != nil || done.GetMetadata().GetFailed() != 0 {
						t.Fatalf("operation: %v", done)
					}
				}
				var writes, deletes, order []string
				for _, c := range h.upstream.calls("") {
					name := c.path[strings.LastIndexByte(c.path, '/')+1:]
					switch c.method {
					case http.MethodPut:
						writes = append(writes, name)
					case http.MethodDelete:
						deletes = append(deletes, name)
					default:
						continue
					}
					order = append(order, c.method+" "+name)
				}
				if async {
					want := []string{"PUT TOKEN", "PUT Z_NEW", "DELETE A_OLD", "DELETE OLD_TOKEN"}
					if !slices.Equal(order, want) {
						t.Errorf("an operation's writes and deletes in order %v; want %v", order, want)
					}
					return
				}
				// The synchronous sync sends its writes together (the
				// write slot orders them), then its deletes one by one.
				slices.Sort(writes)
				if !slices.Equal(writes, []string{"TOKEN", "Z_NEW"}) || !slices.Equal(deletes, []string{"A_OLD", "OLD_TOKEN"}) ||
					!slices.Equal(order[2:], []string{"DELETE A_OLD", "DELETE OLD_TOKEN"}) {
					t.Errorf("writes and deletes in order %v; want the PUTs of TOKEN and Z_NEW, then the DELETEs of A_OLD and OLD_TOKEN", order)
				}
			})
		})
	}
}

// TestPruneDeleteRepeatedAfterCrash: README, Operations: "a broker
// restarted mid-operation resumes it ... every step is idempotent". A
// prune's DELETE that ran (GitHub deleted the secret, the broker dropped
// its record) before the process died, and before its result was stored,
// runs again after the resume with no record left: finding the secret
// gone at GitHub it is a DELETE that succeeded, with no second DELETE
// sent. A secret made again at GitHub meanwhile (by someone else: no
// record of this owner's) is still refused as FOREIGN and left alone.
func TestPruneDeleteRepeatedAfterCrash(t *testing.T) {
	tests := []struct {
		name string
		// meanwhile runs between the crash and the resume.
		meanwhile func(ctx context.Context, t *testing.T, h *harness)
		want      string // OLD's result after the resume
		wantValue string // OLD's value at GitHub after the resume; "" gone
	}{
		{"gone", func(context.Context, *testing.T, *harness) {}, "DELETE OK", ""},
		{"made again by another tool", func(ctx context.Context, t *testing.T, h *harness) {
			if _, err := otherTool(t, h).broker.PutSecret(ctx, plain(repoScope+"/secrets/OLD", plantedSecret+"-other")); err != nil {
				t.Fatal(err)
			}
		}, "FOREIGN FAILED_PRECONDITION", plantedSecret + "-other"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				crashing, h := crashingHarness(t, "/secrets/OLD")
				ctx := t.Context()
				if _, err := h.broker.SyncSecrets(ctx, syncReq(repoScope, "team", map[string]string{"OLD": plantedSecret, "KEEP": plantedSecret})); err != nil {
					t.Fatal(err)
				}
				req := syncReq(repoScope, "team", map[string]string{"KEEP": plantedSecret + "-2"})
				req.Prune, req.Async = true, true
				resp, err := h.broker.SyncSecrets(ctx, req)
				if err != nil {
					t.Fatal(err)
				}
				untilCrashed(t, crashing, "the delete of OLD did not run")
				if n := deletesOf(h, "OLD"); n != 1 {
					t.Fatalf("%d DELETEs of OLD before the crash, want 1", n)
				}
				tt.meanwhile(ctx, t, h)

				done := resumeAfterCrash(t, h, crashing.Store, resp.GetOperation().GetName())
				got := pruneResults(t, done.GetResponse().GetSyncResults())
				if want := map[string]string{"KEEP": "UPDATE OK", "OLD": tt.want}; !maps.Equal(got, want) {
					t.Errorf("results after the resume %v, want %v", got, want)
				}
				if n := deletesOf(h, "OLD"); n != 1 {
					t.Errorf("%d DELETEs of OLD in all, want 1 (none after the resume)", n)
				}
				wantFailed := int32(0)
				if tt.wantValue != "" {
					wantFailed = 1
				}
				if f := done.GetMetadata().GetFailed(); f != wantFailed {
					t.Errorf("metadata %v: failed %d, want %d", done.GetMetadata(), f, wantFailed)
				}
				v, err := h.emu.Open(repoScope, "OLD")
				switch {
				case tt.wantValue == "" && err == nil:
					t.Errorf("OLD is at GitHub after the resume; want it gone")
				case tt.wantValue != "" && (err != nil || string(v) != tt.wantValue):
					t.Errorf("OLD at GitHub: %v; want it left as the other tool wrote it", err)
				}
			})
		})
	}
}

// TestWriteRepeatedAfterCrashIsWritten: an async batch's or sync's item
// GitHub wrote, whose result was not stored before the process died, is
// judged again after the resume against the record its write left and
// GitHub's listing, and is not written a second time. It was reported
// unchanged, so that the operation's result said nothing was written
// although it wrote the value; it reports its write now (created, or
// updated), as a prune's delete repeated after a crash reports its
// DELETE. An item that had not run before the crash, whose value another
// call wrote meanwhile, is still unchanged.
func TestWriteRepeatedAfterCrashIsWritten(t *testing.T) {
	batchWith := func(force bool) func(ctx context.Context, t *testing.T, h *harness) string {
		return func(ctx context.Context, t *testing.T, h *harness) string {
			req := &secretbrokerv1.BatchPutSecretsRequest{Async: true, Requests: []*secretbrokerv1.PutSecretRequest{
				plain(repoScope+"/secrets/FIRST", plantedSecret+"-1"),
				plain(repoScope+"/secrets/SECOND", plantedSecret+"-2"),
			}}
			for _, p := range req.Requests {
				p.Force = force
			}
			resp, err := h.broker.BatchPutSecrets(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			return resp.GetOperation().GetName()
		}
	}
	syncWith := func(force bool) func(ctx context.Context, t *testing.T, h *harness) string {
		return func(ctx context.Context, t *testing.T, h *harness) string {
			req := syncReq(repoScope, "team", map[string]string{"FIRST": plantedSecret + "-1", "SECOND": plantedSecret + "-2"})
			req.Async, req.Force = true, force
			resp, err := h.broker.SyncSecrets(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			return resp.GetOperation().GetName()
		}
	}
	batch, sync := batchWith(false), syncWith(false)
	put := func(name, value string) func(ctx context.Context, t *testing.T, h *harness) {
		return func(ctx context.Context, t *testing.T, h *harness) {
			if _, err := h.broker.PutSecret(ctx, plain(repoScope+"/secrets/"+name, value)); err != nil {
				t.Fatal(err)
			}
		}
	}
	nothing := func(context.Context, *testing.T, *harness) {}
	deleteBehind := func(name string) func(ctx context.Context, t *testing.T, h *harness) {
		return func(ctx context.Context, t *testing.T, h *harness) {
			req := httptest.NewRequestWithContext(ctx, http.MethodDelete, emulatorURL+"/"+repoScope+"/secrets/"+name, nil)
			req.Header.Set("Authorization", "Bearer "+testToken)
			req.Header.Set("X-GitHub-Api-Version", "2022-11-28")
			rec := httptest.NewRecorder()
			h.emu.ServeHTTP(rec, req)
			if rec.Code != http.StatusNoContent {
				t.Fatalf("DELETE behind the broker's back: %d", rec.Code)
			}
		}
	}
	tests := []struct {
		name string
		// before runs before the operation starts, meanwhile between the
		// crash and the resume.
		before, meanwhile func(ctx context.Context, t *testing.T, h *harness)
		start             func(ctx context.Context, t *testing.T, h *harness) string
		want              []string // the results after the resume
		wantPuts          int
	}{
		{"batch, a create repeated", nothing, nothing, batch,
			[]string{"FIRST OK created", "SECOND OK created"}, 2},
		{"batch, an update repeated", put("FIRST", plantedSecret+"-0"), nothing, batch,
			[]string{"FIRST OK", "SECOND OK created"}, 3},
		{"batch, an item not run before the crash written meanwhile", nothing, put("SECOND", plantedSecret+"-2"), batch,
			[]string{"FIRST OK created", "SECOND OK unchanged"}, 2},
		{"sync, a create repeated", nothing, nothing, sync,
			[]string{"FIRST CREATE OK", "SECOND CREATE OK"}, 2},
		{"sync, an update repeated", func(ctx context.Context, t *testing.T, h *harness) {
			if _, err := h.broker.SyncSecrets(ctx, syncReq(repoScope, "team", map[string]string{"FIRST": plantedSecret + "-0"})); err != nil {
				t.Fatal(err)
			}
		}, nothing, sync, []string{"FIRST UPDATE OK", "SECOND CREATE OK"}, 3},
		{"sync, an item not run before the crash written meanwhile", nothing, func(ctx context.Context, t *testing.T, h *harness) {
			if _, err := h.broker.SyncSecrets(ctx, syncReq(repoScope, "team", map[string]string{"SECOND": plantedSecret + "-2"})); err != nil {
				t.Fatal(err)
			}
		}, sync, []string{"FIRST CREATE OK", "SECOND UNCHANGED OK"}, 2},
		// The secret the item updated was deleted behind the broker's
		// back before the resume: written again, GitHub answers 201, and
		// the item reports the create, as a write after such a delete
		// does without a crash (it reported an update: its first write).
		{"batch, an update repeated, deleted meanwhile", put("FIRST", plantedSecret+"-0"), deleteBehind("FIRST"), batch,
			[]string{"FIRST OK created", "SECOND OK created"}, 4},
		{"sync, an update repeated, deleted meanwhile", func(ctx context.Context, t *testing.T, h *harness) {
			if _, err := h.broker.SyncSecrets(ctx, syncReq(repoScope, "team", map[string]string{"FIRST": plantedSecret + "-0"})); err != nil {
				t.Fatal(err)
			}
		}, deleteBehind("FIRST"), sync, []string{"FIRST CREATE OK", "SECOND CREATE OK"}, 4},
		// With force the item is written again (force judges nothing
		// unchanged), and GitHub answers that second write 204: it still
		// reports the write that created the secret, as the caller's
		// request did (found by FuzzBrokerModel: it reported an update).
		{"batch with force, a create repeated", nothing, nothing, batchWith(true),
			[]string{"FIRST OK created", "SECOND OK created"}, 3},
		{"sync with force, a create repeated", nothing, nothing, syncWith(true),
			[]string{"FIRST CREATE OK", "SECOND CREATE OK"}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				crashing, h := crashingHarness(t, "/secrets/FIRST")
				ctx := t.Context()
				tt.before(ctx, t, h)
				name := tt.start(ctx, t, h)
				untilCrashed(t, crashing, "FIRST did not run")
				tt.meanwhile(ctx, t, h)
				done := resumeAfterCrash(t, h, crashing.Store, name)
				got := batchResultsOf(t, done)
				if sr := done.GetResponse().GetSyncResults(); len(sr) > 0 {
					got = nil
					for n, r := range syncResultsOf(t, done) {
						got = append(got, n+" "+r)
					}
					slices.Sort(got)
				}
				if !slices.Equal(got, tt.want) {
					t.Errorf("results after the resume %v, want %v", got, tt.want)
				}
				var written, unchanged int32
				for _, w := range tt.want {
					if strings.Contains(w, "unchanged") || strings.Contains(w, "UNCHANGED") {
						unchanged++
					} else {
						written++
					}
				}
				if m := done.GetMetadata(); m.GetWritten() != written || m.GetUnchanged() != unchanged {
					t.Errorf("metadata %v, want written %d, unchanged %d", m, written, unchanged)
				}
				if n := puts(h); n != tt.wantPuts {
					t.Errorf("%d PUTs, want %d (FIRST not written again)", n, tt.wantPuts)
				}
				wantStored(t, h, repoScope+"/secrets/FIRST", plantedSecret+"-1")
			})
		})
	}
}

// TestCancelAfterUnknownWriteIsAborted: an operation item whose PUT
// reached GitHub (its answer lost) and which waits to retry when the
// operation is cancelled was reported as not run ("2 of 2 items not
// run", no result) while GitHub held its value. It is a result now:
// ABORTED, saying GitHub may have applied it, and so is its audit
// outcome (it said CANCELLED). The item never sent stays not run
// (CANCELLED, "not run").
func TestCancelAfterUnknownWriteIsAborted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pacing := upstream.DefaultPacing()
		pacing.WriteInterval = 100 * time.Second
		var trail syncBuffer
		h := newHarness(t, harnessOpts{pacing: &pacing, ops: OperationOptions{FlushEvery: 1}, audit: audit.NewWriter(&trail, nil)})
		closeOps(t, h.server)
		ctx := t.Context()
		h.emu.InjectFault(emulator.Fault{Route: emulator.RoutePutRepoSecret, DropAfter: true})
		req := &secretbrokerv1.BatchPutSecretsRequest{Async: true, Requests: []*secretbrokerv1.PutSecretRequest{
			plain(repoScope+"/secrets/CANCEL_A", plantedSecret+"-a"),
			plain(repoScope+"/secrets/CANCEL_B", plantedSecret+"-b"),
		}}
		resp, err := h.broker.BatchPutSecrets(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		name := resp.GetOperation().GetName()
		time.Sleep(50 * time.Second) // the first PUT landed, its answer lost; the retry waits for the write slot
		if _, err := h.broker.CancelOperation(ctx, &secretbrokerv1.CancelOperationRequest{Name: name}); err != nil {
			t.Fatal(err)
		}
		done := waitOp(ctx, t, h.broker, name, 0)
		if got, err := h.emu.Open(repoScope, "CANCEL_A"); err != nil || string(got) != plantedSecret+"-a" {
			t.Fatalf("GitHub does not hold CANCEL_A: %v", err)
		}
		results := done.GetResponse().GetBatchPutResults()
		if len(results) != 2 || results[0].GetName() != repoScope+"/secrets/CANCEL_A" ||
			codes.Code(results[0].GetCode()) != codes.Aborted || !strings.Contains(results[0].GetMessage(), "may have applied") ||
			codes.Code(results[1].GetCode()) != codes.Canceled {
			t.Fatalf("results %v, want CANCEL_A ABORTED, CANCEL_B CANCELLED (not run)", results)
		}
		if m := done.GetMetadata(); m.GetFailed() != 1 || m.GetRemaining() != 1 || codes.Code(done.GetError().GetCode()) != codes.Canceled {
			t.Errorf("metadata %v, error %v", m, done.GetError())
		}
		if strings.Contains(protojson.Format(done), plantedSecret) {
			t.Error("the operation shows the value")
		}
		if got := outcomesOf(t, &trail)["CANCEL_A"]; !slices.Equal(got, []string{"ABORTED"}) {
			t.Errorf("CANCEL_A's audit outcomes %v, want [ABORTED]", got)
		}
	})
}

// resumeOn starts a second broker on store (the one a crashed broker
// used) once the dead runner's lease has run out, and resumes the one
// unfinished operation. It runs in the caller's synctest bubble: the
// lease runs out in fake time.
func resumeOn(t *testing.T, h *harness, store state.Store) *Server {
	t.Helper()
	mustBeInBubble(t)
	time.Sleep(operation.DefaultLease + time.Second)
	s2 := New(h.client, Options{State: store, Logger: newTestLogger(h.logs)})
	t.Cleanup(func() { _ = s2.CloseOperations(context.Background()) })
	if n, err := s2.ResumeOperations(t.Context()); err != nil || n != 1 {
		t.Fatalf("ResumeOperations = %d, %v; want 1", n, err)
	}
	return s2
}

// untilCrashed lets the operations run, in the caller's synctest bubble
// (fake time), until every goroutine waits, and fails the test with
// failure unless store crashed on the item it is armed for.
func untilCrashed(t *testing.T, store *crashingStore, failure string) {
	t.Helper()
	mustBeInBubble(t)
	time.Sleep(10 * time.Second)
	synctest.Wait()
	if !store.crashed.Load() {
		t.Fatal(failure)
	}
}

// crashingHarness is a harness over a crashingStore, armed for items
// whose names contain crashOn, on a memory store, with its operations
// closed when the test ends.
func crashingHarness(t *testing.T, crashOn string) (*crashingStore, *harness) {
	t.Helper()
	inner, err := state.NewMemory(state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	crashing := &crashingStore{Store: inner, crashOn: crashOn}
	h := newHarness(t, harnessOpts{state: crashing, ops: OperationOptions{FlushEvery: 1}})
	closeOps(t, h.server)
	return crashing, h
}

// TestWriteRepeatedAfterTwoCrashesIsCreated: an item whose write created
// the secret, written again after a crash kept its result from being
// stored (force, or drift: the secret changed behind the broker's back
// before the resume), reports the create (GitHub answers the second
// write 204). When a second crash keeps that run's result from being
// stored too, the item finds the record of its second write: it must
// still report the create, not the 204 its second write was answered.
func TestWriteRepeatedAfterTwoCrashesIsCreated(t *testing.T) {
	touch := func(t *testing.T, h *harness) { behindBack(t, h, repoScope+"/secrets/FIRST") }
	tests := []struct {
		name      string
		force     bool
		sync      bool
		meanwhile func(t *testing.T, h *harness) // before each resume
		want      string
	}{
		{"batch with force", true, false, func(*testing.T, *harness) {}, "FIRST OK created"},
		{"sync with force", true, true, func(*testing.T, *harness) {}, "FIRST CREATE OK"},
		{"batch, drift before each resume", false, false, touch, "FIRST OK created"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				crashing, h := crashingHarness(t, "/secrets/FIRST")
				ctx := t.Context()
				var name string
				if tt.sync {
					req := syncReq(repoScope, "team", map[string]string{"FIRST": plantedSecret + "-1"})
					req.Async, req.Force = true, tt.force
					resp, err := h.broker.SyncSecrets(ctx, req)
					if err != nil {
						t.Fatal(err)
					}
					name = resp.GetOperation().GetName()
				} else {
					p := plain(repoScope+"/secrets/FIRST", plantedSecret+"-1")
					p.Force = tt.force
					resp, err := h.broker.BatchPutSecrets(ctx, &secretbrokerv1.BatchPutSecretsRequest{Async: true, Requests: []*secretbrokerv1.PutSecretRequest{p}})
					if err != nil {
						t.Fatal(err)
					}
					name = resp.GetOperation().GetName()
				}
				untilCrashed(t, crashing, "FIRST did not run")
				tt.meanwhile(t, h)
				// The second run crashes as the first did.
				again := &crashingStore{Store: crashing.Store, crashOn: "/secrets/FIRST"}
				resumeOn(t, h, again)
				untilCrashed(t, again, "FIRST did not run again")
				tt.meanwhile(t, h)
				done := resumeAfterCrash(t, h, crashing.Store, name)
				var got []string
				if tt.sync {
					for n, r := range syncResultsOf(t, done) {
						got = append(got, n+" "+r)
					}
				} else {
					got = batchResultsOf(t, done)
				}
				if !slices.Equal(got, []string{tt.want}) {
					t.Errorf("results after the second resume %v, want [%s]", got, tt.want)
				}
			})
		})
	}
}
