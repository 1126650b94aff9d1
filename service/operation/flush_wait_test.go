package operation

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/secretbroker/secretbroker/service/state"
)

// TestFinishedItemRecordedWhileNextWaits: Options.FlushInterval bounds
// how long a finished item stays unrecorded also while the next item
// still runs (waits for GitHub's write slot, up to an hour in a rate-limit
// pause): with the default options, an item that finished at 0 s is
// recorded (and passed to Options.Recorded) by FlushInterval, not when the
// next item ends 100 s later, so GetOperation shows it and a crash in the
// wait does not repeat it. When that record fails, the run stops: the
// item in flight is interrupted and returns before Finish is called and
// before Close returns, and the operation stays stored as it was, to
// resume.
func TestFinishedItemRecordedWhileNextWaits(t *testing.T) {
	tests := []struct {
		name       string
		failRecord bool // the store fails the record made while the second item runs
	}{
		{name: "recorded while the next item waits"},
		{name: "that record fails: the run stops", failRecord: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				mem := newMemory(t)
				hs := &hookStore{Operations: mem, updateErr: func(n int) error {
					if tt.failRecord && n == 2 { // 1 is the claim
						return errBoom
					}
					return nil
				}}
				var (
					mu       sync.Mutex
					returned int // Exec calls that returned
					finishes []int
				)
				fe := &fakeExec{fn: func(ctx context.Context, _ *state.Operation, item state.PendingItem) state.ItemResult {
					defer func() {
						mu.Lock()
						returned++
						mu.Unlock()
					}()
					if item.Name != itemName(1) {
						return state.ItemResult{Code: codes.OK, Action: "create"}
					}
					select { // waits for the write slot
					case <-time.After(100 * time.Second):
						return state.ItemResult{Code: codes.OK, Action: "create"}
					case <-ctx.Done():
						return state.ItemResult{Code: codes.Canceled}
					}
				}}
				rec := &recordedLog{}
				r, logs := newRunner(t, hs, fe.exec, Options{Recorded: rec.recorded, Finish: func(context.Context, string) {
					mu.Lock()
					defer mu.Unlock()
					finishes = append(finishes, returned)
				}})
				op, err := r.Start(t.Context(), newOp("alice", 3, "v"))
				if err != nil {
					t.Fatal(err)
				}
				time.Sleep(DefaultFlushInterval + 500*time.Millisecond)
				synctest.Wait()
				mid, err := mem.GetOperation(t.Context(), op.ID)
				if err != nil {
					t.Fatal(err)
				}
				if tt.failRecord {
					closeRunner(t, r) // returns at once: the run ended
					mu.Lock()
					defer mu.Unlock()
					if fe.total() != 2 || returned != 2 {
						t.Errorf("Exec ran %d times, %d returned; want 2 and 2 (the waiting item interrupted)", fe.total(), returned)
					}
					if !slices.Equal(finishes, []int{2}) {
						t.Errorf("Finish called after %v items returned, want once after 2", finishes)
					}
					if mid.Done || len(mid.Results) != 0 || len(mid.Pending) != 3 {
						t.Errorf("stored after the failed record: %+v", mid.Metadata)
					}
					if got := rec.names(); len(got) != 0 {
						t.Errorf("Recorded was given %q, nothing was recorded", got)
					}
					if !strings.Contains(logs.String(), "progress not recorded") {
						t.Errorf("no log of the failure: %s", logs)
					}
					return
				}
				if len(mid.Results) != 1 || mid.Results[0].Name != itemName(0) || mid.Metadata.Written != 1 || mid.Metadata.Remaining != 2 {
					t.Errorf("at 1.5 s, the item finished at 0 s is not recorded while the next waits: results %+v, %+v", mid.Results, mid.Metadata)
				}
				if got, want := rec.names(), []string{itemName(0) + " OK"}; !slices.Equal(got, want) {
					t.Errorf("Recorded at 1.5 s: %q, want %q", got, want)
				}
				done := waitDone(t, r, op.ID)
				if done.Metadata.Written != 3 || fe.total() != 3 {
					t.Errorf("done: %+v after %d Exec calls, want 3 written by 3", done.Metadata, fe.total())
				}
				closeRunner(t, r) // the run ends after Recorded (which may come after Wait saw the operation done)
				want := []string{itemName(0) + " OK", itemName(1) + " OK", itemName(2) + " OK"}
				if got := rec.names(); !slices.Equal(got, want) {
					t.Errorf("Recorded: %q, want each item once: %q", got, want)
				}
			})
		})
	}
}
