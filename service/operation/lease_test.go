package operation

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/secretbroker/secretbroker/service/state"
)

// Two runners on one store stand for two replicas on one Redis: the
// memory store's UpdateOperation has the same semantics as the file and
// Redis stores' (the state package's contract tests).

// stored reads operation id from the store, failing the test on an error.
func stored(t *testing.T, s state.Operations, id string) *state.Operation {
	t.Helper()
	op, err := s.GetOperation(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return op
}

// resumeUntilDone calls r.Resume every `every` (fake time) until
// operation id is done in s, at most a day; it returns how many
// operations the calls resumed.
func resumeUntilDone(t *testing.T, r *Runner, s state.Operations, id string, every time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(24 * time.Hour)
	total := 0
	for !stored(t, s, id).Done {
		n, err := r.Resume(t.Context())
		if err != nil {
			t.Fatalf("Resume: %v", err)
		}
		total += n
		if time.Now().After(deadline) {
			t.Fatalf("operation %s not done after a day", id)
		}
		time.Sleep(every)
	}
	return total
}

// closeBounded closes r within an hour (fake time in a bubble), so that
// a runner that does not stop an operation fails the test instead of
// hanging it.
func closeBounded(t *testing.T, r *Runner) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	if err := r.Close(ctx); err != nil {
		t.Errorf("Close: %v", err)
	}
}

func TestRunnerIDs(t *testing.T) {
	mem := newMemory(t)
	a, _ := newRunner(t, mem, (&fakeExec{}).exec, Options{})
	b, _ := newRunner(t, mem, (&fakeExec{}).exec, Options{})
	if len(a.ID()) != 16 || a.ID() == b.ID() {
		t.Errorf("runner IDs %q and %q: want two different 16-digit IDs", a.ID(), b.ID())
	}
	if _, err := New(Options{Store: mem, Exec: (&fakeExec{}).exec, Lease: -time.Second}); !errors.Is(err, state.ErrInvalid) {
		t.Errorf("a negative lease: %v, want ErrInvalid", err)
	}
}

// TestLeaseOtherRunnerDoesNotResume: while A runs an operation (its items
// take a minute each, so it runs for several leases), B's Resume, called
// every few seconds, leaves it alone: every item runs exactly once, on A.
func TestLeaseOtherRunnerDoesNotResume(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 6
		mem := newMemory(t)
		slow := &fakeExec{fn: func(ctx context.Context, _ *state.Operation, _ state.PendingItem) state.ItemResult {
			select {
			case <-time.After(time.Minute):
				return state.ItemResult{Code: codes.OK, Action: "create"}
			case <-ctx.Done():
				return state.ItemResult{Code: codes.Canceled}
			}
		}}
		feB := &fakeExec{}
		a, _ := newRunner(t, mem, slow.exec, Options{FlushEvery: 1})
		defer closeBounded(t, a)
		b, logsB := newRunner(t, mem, feB.exec, Options{FlushEvery: 1})
		defer closeBounded(t, b)
		op, err := a.Start(t.Context(), newOp("alice", n, "v"))
		if err != nil {
			t.Fatal(err)
		}
		if op.Runner != a.ID() || !op.LeaseUntil.Equal(time.Now().Add(DefaultLease)) {
			t.Errorf("started: runner %q until %v, want A's lease of %v", op.Runner, op.LeaseUntil, DefaultLease)
		}
		synctest.Wait()
		for !stored(t, mem, op.ID).Done {
			s := stored(t, mem, op.ID)
			if s.Runner != a.ID() || !s.LeaseUntil.After(time.Now()) {
				t.Fatalf("at %v: lease %q until %v, want A's, live", time.Now(), s.Runner, s.LeaseUntil)
			}
			if got, err := b.Resume(t.Context()); got != 0 || err != nil {
				t.Fatalf("B's Resume while A runs = %d, %v; want 0", got, err)
			}
			time.Sleep(7 * time.Second)
		}
		done := waitDone(t, a, op.ID)
		if done.Error != nil || done.Metadata.Written != n {
			t.Fatalf("done: %+v %+v", done.Error, done.Metadata)
		}
		if !done.LeaseUntil.IsZero() {
			t.Errorf("a done operation keeps a lease until %v", done.LeaseUntil)
		}
		for i := range n {
			if got := slow.count(itemName(i)); got != 1 {
				t.Errorf("%s ran %d times on A, want 1", itemName(i), got)
			}
		}
		if feB.total() != 0 {
			t.Errorf("B ran %d items of A's operation", feB.total())
		}
		if !strings.Contains(logsB.String(), "another runner holds its lease") {
			t.Errorf("B did not log why it skipped the operation: %s", logsB)
		}
	})
}

// TestLeaseClaimRace: B resumes an operation whose lease had ended, but A
// claims it first: B's run sees A's live lease, does not run it and does
// not call Finish.
func TestLeaseClaimRace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := newMemory(t)
		in := newOp("alice", 2, "v")
		in.ID, in.Metadata.Total = "op1", 2
		if err := mem.PutOperation(t.Context(), in); err != nil {
			t.Fatal(err)
		}
		release := make(chan struct{})
		feA := &fakeExec{fn: func(context.Context, *state.Operation, state.PendingItem) state.ItemResult {
			<-release
			return state.ItemResult{Code: codes.OK}
		}}
		a, _ := newRunner(t, mem, feA.exec, Options{})
		defer closeBounded(t, a)
		feB := &fakeExec{}
		var finishedB atomic.Int32
		b, logsB := newRunner(t, mem, feB.exec, Options{Finish: func(context.Context, string) { finishedB.Add(1) }})
		defer closeBounded(t, b)
		if got, err := a.Resume(t.Context()); got != 1 || err != nil {
			t.Fatalf("A's Resume = %d, %v", got, err)
		}
		synctest.Wait()
		// B's run of the listed operation finds A's claim.
		ctx, err := b.track("op1", boundKey{}, false)
		if err != nil {
			t.Fatal(err)
		}
		b.run(ctx, "op1")
		if feB.total() != 0 || finishedB.Load() != 0 {
			t.Errorf("B ran %d items and called Finish %d times, want none", feB.total(), finishedB.Load())
		}
		if !strings.Contains(logsB.String(), `"level":"DEBUG","msg":"operation not run: another runner holds its lease"`) {
			t.Errorf("no DEBUG log of the skipped run: %s", logsB)
		}
		close(release)
		if done := waitDone(t, a, "op1"); done.Metadata.Written != 2 || feA.total() != 2 {
			t.Errorf("A: %+v, %d items", done.Metadata, feA.total())
		}
	})
}

// TestLeaseTakeoverAfterDeath: A stops reaching the store while item k is
// in flight (it died, froze or was cut off: its renewals stop). After its
// lease ends, B's periodic Resume takes the operation over and finishes
// it: item k runs twice (once on each), every other item once. A, still
// alive but cut off, stops the operation when its own lease ends.
func TestLeaseTakeoverAfterDeath(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n, k = 6, 2
		mem := newMemory(t)
		var dead atomic.Bool
		hs := &hookStore{Operations: mem, updateErr: func(int) error {
			if dead.Load() {
				return errBoom
			}
			return nil
		}}
		inFlight := make(chan struct{})
		feA := &fakeExec{fn: func(ctx context.Context, _ *state.Operation, item state.PendingItem) state.ItemResult {
			if item.Name == itemName(k) {
				dead.Store(true)
				close(inFlight)
				return blockUntilDone(ctx)
			}
			return state.ItemResult{Code: codes.OK, Action: "create"}
		}}
		a, logsA := newRunner(t, hs, feA.exec, Options{FlushEvery: 1})
		defer closeBounded(t, a)
		feB := &fakeExec{}
		b, _ := newRunner(t, mem, feB.exec, Options{FlushEvery: 1})
		defer closeBounded(t, b)
		op, err := a.Start(t.Context(), newOp("alice", n, "v"))
		if err != nil {
			t.Fatal(err)
		}
		<-inFlight
		died := time.Now()
		if got := resumeUntilDone(t, b, mem, op.ID, DefaultLease); got != 1 {
			t.Errorf("B resumed %d operations, want 1", got)
		}
		if took := time.Since(died); took > 2*DefaultLease {
			t.Errorf("taken over %v after A died, want within two leases (%v)", took, 2*DefaultLease)
		}
		done := stored(t, mem, op.ID)
		if done.Error != nil || done.Metadata.Written != n || len(done.Results) != n {
			t.Fatalf("done: %+v %+v", done.Error, done.Metadata)
		}
		for i := range n {
			want := 1
			if i == k {
				want = 2
			}
			if got := feA.count(itemName(i)) + feB.count(itemName(i)); got != want {
				t.Errorf("%s ran %d times (A %d, B %d), want %d", itemName(i), got, feA.count(itemName(i)), feB.count(itemName(i)), want)
			}
			if done.Results[i].Name != itemName(i) {
				t.Errorf("result %d is %s", i, done.Results[i].Name)
			}
		}
		synctest.Wait()
		if !strings.Contains(logsA.String(), "its lease ended without renewal") {
			t.Errorf("A did not stop when its lease ended: %s", logsA)
		}
	})
}

// TestLeaseLostWhileRunning: another runner takes the operation over
// while A still runs it (A's lease had ended: a long pause, a clock
// jump). A notices at its next renewal, or at its next record of
// progress, stops running it without recording or finishing it, and logs
// it at INFO.
func TestLeaseLostWhileRunning(t *testing.T) {
	steal := func(t *testing.T, s state.Operations, id string) {
		t.Helper()
		if _, err := s.UpdateOperation(context.Background(), id, func(o *state.Operation) error {
			o.Runner, o.LeaseUntil = "other", time.Now().Add(time.Hour)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name string
		// exec runs item 0, and steals the lease (steal) at some point.
		exec func(ctx context.Context, steal func()) state.ItemResult
	}{
		{"at the renewal, interrupting the item", func(ctx context.Context, steal func()) state.ItemResult {
			steal()
			return blockUntilDone(ctx)
		}},
		{"at the record of the item", func(_ context.Context, steal func()) state.ItemResult {
			steal()
			return state.ItemResult{Code: codes.OK}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				mem := newMemory(t)
				var id atomic.Value
				fe := &fakeExec{fn: func(ctx context.Context, _ *state.Operation, _ state.PendingItem) state.ItemResult {
					return tt.exec(ctx, func() { steal(t, mem, id.Load().(string)) })
				}}
				var finished atomic.Int32
				in := newOp("alice", 3, "v")
				in.ID = "op1"
				id.Store(in.ID)
				a, logs := newRunner(t, mem, fe.exec, Options{FlushEvery: 1, Finish: func(context.Context, string) { finished.Add(1) }})
				if _, err := a.Start(t.Context(), in); err != nil {
					t.Fatal(err)
				}
				time.Sleep(DefaultLease)
				synctest.Wait()
				// A has stopped: Close returns at once (bounded, so a
				// runner that did not stop fails instead of hanging).
				cctx, cancel := context.WithTimeout(t.Context(), time.Hour)
				defer cancel()
				if err := a.Close(cctx); err != nil {
					t.Errorf("Close: %v (A still ran the operation)", err)
				}
				s := stored(t, mem, in.ID)
				if s.Done || s.Runner != "other" || len(s.Results) != 0 || len(s.Pending) != 3 {
					t.Errorf("stored: done=%v runner=%q results %d pending %d; want the other runner's, untouched",
						s.Done, s.Runner, len(s.Results), len(s.Pending))
				}
				if fe.total() != 1 {
					t.Errorf("A ran %d items, want 1", fe.total())
				}
				if finished.Load() != 1 {
					t.Errorf("Finish called %d times, want 1 (A stopped running it)", finished.Load())
				}
				if !strings.Contains(logs.String(), `"level":"INFO","msg":"operation stopped: another runner took it over"`) {
					t.Errorf("no INFO log of the takeover: %s", logs)
				}
			})
		})
	}
}

// TestLeaseCloseReleases: Close releases the leases of the operations it
// pauses (one running, one waiting for a slot), so B's next Resume takes
// them over at once, without waiting for the lease to end. A graceful
// Close records the item in flight (each item runs once); a hard one
// drops it (it runs again on B).
func TestLeaseCloseReleases(t *testing.T) {
	for _, hard := range []bool{false, true} {
		name := map[bool]string{false: "graceful", true: "hard"}[hard]
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const n, k = 5, 1
				mem := newMemory(t)
				inFlight, release := make(chan struct{}), make(chan struct{})
				feA := &fakeExec{fn: func(ctx context.Context, _ *state.Operation, item state.PendingItem) state.ItemResult {
					if item.Name == itemName(k) && item.Value[0] == 'v' {
						close(inFlight)
						if hard {
							return blockUntilDone(ctx)
						}
						<-release
					}
					return state.ItemResult{Code: codes.OK, Action: "create"}
				}}
				a, _ := newRunner(t, mem, feA.exec, Options{MaxRunning: 1})
				running, err := a.Start(t.Context(), newOp("alice", n, "v"))
				if err != nil {
					t.Fatal(err)
				}
				<-inFlight
				queued, err := a.Start(t.Context(), newOp("alice", n, "w"))
				if err != nil {
					t.Fatal(err)
				}
				if hard {
					ctx, cancel := context.WithCancel(t.Context())
					cancel()
					if err := a.Close(ctx); !errors.Is(err, context.Canceled) {
						t.Fatalf("Close = %v", err)
					}
				} else {
					errc := make(chan error, 1)
					go func() { errc <- a.Close(context.Background()) }()
					<-a.closing
					close(release)
					if err := <-errc; err != nil {
						t.Fatal(err)
					}
				}
				for _, id := range []string{running.ID, queued.ID} {
					if s := stored(t, mem, id); s.Done || s.Runner != a.ID() || !s.LeaseUntil.IsZero() {
						t.Errorf("%s after Close: done=%v runner=%q until %v; want A's lease released", id, s.Done, s.Runner, s.LeaseUntil)
					}
				}
				feB := &fakeExec{}
				b, _ := newRunner(t, mem, feB.exec, Options{})
				defer closeBounded(t, b)
				if got, err := b.Resume(t.Context()); got != 2 || err != nil {
					t.Fatalf("B's Resume right after A's Close = %d, %v; want 2", got, err)
				}
				for _, id := range []string{running.ID, queued.ID} {
					if done := waitDone(t, b, id); done.Metadata.Written != n {
						t.Errorf("%s: %+v", id, done.Metadata)
					}
				}
				for i := range n {
					want := 1
					if hard && i == k {
						want = 2
					}
					if got := feA.count(itemName(i)) + feB.count(itemName(i)); got != want+1 { // +1: the queued operation's item
						t.Errorf("%s ran %d times over both operations, want %d", itemName(i), got, want+1)
					}
				}
			})
		})
	}
}

// TestLeaseRenewedWhileItemWaits: an item that waits ten leases (on the
// pacer's hourly budget, say) keeps its operation A's: B's Resume, every
// half lease, never takes it.
func TestLeaseRenewedWhileItemWaits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := newMemory(t)
		feA := &fakeExec{fn: func(ctx context.Context, _ *state.Operation, item state.PendingItem) state.ItemResult {
			if item.Name == itemName(0) {
				select {
				case <-time.After(10 * DefaultLease):
				case <-ctx.Done():
					return state.ItemResult{Code: codes.Canceled}
				}
			}
			return state.ItemResult{Code: codes.OK, Action: "create"}
		}}
		a, _ := newRunner(t, mem, feA.exec, Options{})
		defer closeBounded(t, a)
		feB := &fakeExec{}
		b, _ := newRunner(t, mem, feB.exec, Options{})
		defer closeBounded(t, b)
		op, err := a.Start(t.Context(), newOp("alice", 3, "v"))
		if err != nil {
			t.Fatal(err)
		}
		if got := resumeUntilDone(t, b, mem, op.ID, DefaultLease/2); got != 0 {
			t.Errorf("B resumed %d operations, want 0", got)
		}
		if feB.total() != 0 || feA.total() != 3 {
			t.Errorf("A ran %d items, B %d; want 3 and 0", feA.total(), feB.total())
		}
	})
}

// TestLeaseCancelFromOtherRunner: B cancels an operation A runs (another
// replica answered CancelOperation): B only marks it, and A stops it at
// its next lease renewal, interrupting the item in flight.
func TestLeaseCancelFromOtherRunner(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := newMemory(t)
		feA := &fakeExec{fn: func(ctx context.Context, _ *state.Operation, item state.PendingItem) state.ItemResult {
			if item.Name == itemName(1) {
				return blockUntilDone(ctx)
			}
			return state.ItemResult{Code: codes.OK}
		}}
		a, _ := newRunner(t, mem, feA.exec, Options{})
		defer closeBounded(t, a)
		b, _ := newRunner(t, mem, (&fakeExec{}).exec, Options{})
		defer closeBounded(t, b)
		op, err := a.Start(t.Context(), newOp("alice", 3, "v"))
		if err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		got, err := b.Cancel(t.Context(), op.ID, nil)
		if err != nil || got.Done || !got.CancelRequested {
			t.Fatalf("B's Cancel = %+v, %v; want the operation marked, not ended", got, err)
		}
		start := time.Now()
		done := waitDone(t, a, op.ID)
		if done.Error == nil || done.Error.Code != codes.Canceled || len(done.Results) != 3 || notRun(done) != 2 {
			t.Errorf("done: %+v with %d results (%d not run), want Canceled with 3 (2 not run)", done.Error, len(done.Results), notRun(done))
		}
		if took := time.Since(start); took > DefaultLease/3 {
			t.Errorf("A stopped %v after the cancel, want within a renewal (%v)", took, DefaultLease/3)
		}
	})
}

// TestLeaseSoleRunnerTakesOverAtOnce: a process killed while it ran an
// operation left it leased to its runner for up to a lease. A runner on a
// store only it uses (Options.Sole: a file one process holds) knows that
// runner is dead, and its first Resume takes the operation over at once;
// a runner sharing the store (Redis) leaves it until the lease ends.
func TestLeaseSoleRunnerTakesOverAtOnce(t *testing.T) {
	tests := []struct {
		name        string
		sole        bool
		wantResumed int
	}{
		{name: "sole: taken over at once", sole: true, wantResumed: 1},
		{name: "shared: left to the lease's end", sole: false, wantResumed: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const n = 3
				mem := newMemory(t)
				in := newOp("alice", n, "v")
				in.ID, in.Metadata.Total = "op1", n
				in.Runner, in.LeaseUntil = "deadbeefdeadbeef", time.Now().Add(DefaultLease)
				if err := mem.PutOperation(t.Context(), in); err != nil {
					t.Fatal(err)
				}
				fe := &fakeExec{}
				r, _ := newRunner(t, mem, fe.exec, Options{Sole: tt.sole})
				defer closeBounded(t, r)
				start := time.Now()
				if got, err := r.Resume(t.Context()); got != tt.wantResumed || err != nil {
					t.Fatalf("Resume = %d, %v; want %d", got, err, tt.wantResumed)
				}
				synctest.Wait()
				s := stored(t, mem, "op1")
				if tt.wantResumed == 0 {
					if s.Done || fe.total() != 0 || s.Runner != in.Runner {
						t.Errorf("a shared store's operation leased to another runner was run: done %v, %d items, runner %q", s.Done, fe.total(), s.Runner)
					}
					return
				}
				done := waitDone(t, r, "op1")
				if took := time.Since(start); took >= DefaultLease {
					t.Errorf("taken over %v after the start, want before the dead runner's lease ended (%v)", took, DefaultLease)
				}
				if done.Error != nil || done.Metadata.Written != n || fe.total() != n {
					t.Errorf("done: %v %+v, %d items run; want %d written", done.Error, done.Metadata, fe.total(), n)
				}
			})
		})
	}
}
