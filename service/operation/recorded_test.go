package operation

import (
	"context"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/secretbroker/secretbroker/service/state"
)

// recordedLog keeps what Options.Recorded was given.
type recordedLog struct {
	mu      sync.Mutex
	results []state.ItemResult
}

func (l *recordedLog) recorded(_ context.Context, op *state.Operation, results []state.ItemResult) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range results {
		if !slices.ContainsFunc(op.Results, func(o state.ItemResult) bool { return o.Name == r.Name && o.Code == r.Code }) {
			panic("Recorded was given a result its operation does not hold: " + r.Name)
		}
	}
	l.results = append(l.results, results...)
}

func (l *recordedLog) names() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, r := range l.results {
		out = append(out, r.Name+" "+r.Code.String())
	}
	return out
}

// TestRecordedPassesEachResultOnce: Options.Recorded is given each item's
// result once, when the store records it: an item whose result could not
// be recorded runs again on the next runner and is passed then, not
// twice; an item whose run panicked is passed (INTERNAL), and so is one
// that ends without running because its value was lost (DATA_LOSS).
func TestRecordedPassesEachResultOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := newMemory(t)
		hs := &hookStore{Operations: mem, updateErr: func(n int) error {
			if n >= 3 { // 1 is the claim, 2 records the first item
				return errBoom
			}
			return nil
		}}
		panics := func(_ context.Context, _ *state.Operation, item state.PendingItem) state.ItemResult {
			if item.Name == itemName(1) {
				panic("boom")
			}
			return state.ItemResult{Code: codes.OK, Action: "create"}
		}
		fe1, rec1 := &fakeExec{fn: panics}, &recordedLog{}
		r1, _ := newRunner(t, hs, fe1.exec, Options{FlushEvery: 1, Recorded: rec1.recorded})
		in := newOp("alice", 4, "v")
		in.Pending[3] = state.PendingItem{Name: itemName(3), ValueLost: true}
		op, err := r1.Start(t.Context(), in)
		if err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		closeRunner(t, r1)
		if got, want := rec1.names(), []string{itemName(0) + " OK"}; !slices.Equal(got, want) {
			t.Errorf("first runner passed %q, want %q (the second item's result was not recorded)", got, want)
		}

		fe2, rec2 := &fakeExec{fn: panics}, &recordedLog{}
		r2, _ := newRunner(t, mem, fe2.exec, Options{Recorded: rec2.recorded})
		defer closeRunner(t, r2)
		time.Sleep(DefaultLease) // the first runner's lease ends
		if n, err := r2.Resume(t.Context()); n != 1 || err != nil {
			t.Fatalf("Resume = %d, %v", n, err)
		}
		done := waitDone(t, r2, op.ID)
		// The runner passes the last results on after it stored the
		// operation done, which is what waitDone sees: let it.
		synctest.Wait()
		if fe1.count(itemName(1)) != 1 || fe2.count(itemName(1)) != 1 {
			t.Errorf("the unrecorded item ran %d and %d times, want once on each runner", fe1.count(itemName(1)), fe2.count(itemName(1)))
		}
		want := []string{itemName(1) + " Internal", itemName(2) + " OK", itemName(3) + " DataLoss"}
		if got := rec2.names(); !slices.Equal(got, want) {
			t.Errorf("second runner passed %q, want %q", got, want)
		}
		if len(done.Results) != 4 {
			t.Errorf("results %+v", done.Results)
		}
	})
}
