package service

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc/codes"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/service/audit"
	"github.com/secretbroker/secretbroker/service/identity"
	"github.com/secretbroker/secretbroker/service/state"
	"github.com/secretbroker/secretbroker/upstream/emulator"
)

// stuckWriter is an audit sink whose writes hang until release is closed
// (a full pipe, a hung mount).
type stuckWriter struct {
	release chan struct{}
	buf     syncBuffer
}

func (w *stuckWriter) Write(p []byte) (int, error) {
	<-w.release
	return w.buf.Write(p)
}

// TestStuckTrailFailsChangesAtTheirDeadline: while a write of the audit
// trail hangs, a change announced after it fails DEADLINE_EXCEEDED when
// its call's deadline passes and sends nothing to GitHub (a batch's items
// are not sent in time), a denial answers by its deadline, and reads are served; they
// all waited for the stuck write without end, holding the broker's call
// slots, so that the broker ended up refusing reads too.
func TestStuckTrailFailsChangesAtTheirDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := &stuckWriter{release: make(chan struct{})}
		h := newHarness(t, harnessOpts{authz: mustPolicy(t), audit: audit.NewWriter(w, nil)})
		admin := identity.WithCaller(t.Context(), "token:admin")

		first := make(chan error, 1)
		go func() {
			_, err := h.server.PutSecret(admin, plain(repoScope+"/secrets/FIRST", plantedSecret))
			first <- err
		}()
		synctest.Wait() // FIRST's intent record is being written, stuck
		h.emu.ResetCounts()

		const deadline = 5 * time.Second
		calls := []struct {
			name string
			want codes.Code
			do   func(ctx context.Context) error
		}{
			{"PutSecret", codes.DeadlineExceeded, func(ctx context.Context) error {
				_, err := h.server.PutSecret(identity.WithCaller(ctx, "token:admin"), plain(repoScope+"/secrets/SECOND", plantedSecret))
				return err
			}},
			{"DeleteSecret", codes.DeadlineExceeded, func(ctx context.Context) error {
				_, err := h.server.DeleteSecret(identity.WithCaller(ctx, "token:admin"), &secretbrokerv1.DeleteSecretRequest{Name: repoScope + "/secrets/SECOND"})
				return err
			}},
			{"BatchPutSecrets", codes.OK, func(ctx context.Context) error {
				resp, err := h.server.BatchPutSecrets(identity.WithCaller(ctx, "token:admin"), batchOf(repoScope, "B", 2))
				if err != nil {
					return err
				}
				for _, r := range resp.GetResults() {
					if r.GetCode() != code.Code_RESOURCE_EXHAUSTED || !strings.Contains(r.GetMessage(), "nothing was sent") {
						return fmt.Errorf("item %s: %s %q, want RESOURCE_EXHAUSTED, not sent in time", r.GetName(), r.GetCode(), r.GetMessage())
					}
				}
				return nil
			}},
			{"denied GetSecret", codes.PermissionDenied, func(ctx context.Context) error {
				_, err := h.server.GetSecret(identity.WithCaller(ctx, "token:staging"), &secretbrokerv1.GetSecretRequest{Name: prodEnv + "/secrets/X"})
				return err
			}},
			{"ListSecrets", codes.OK, func(ctx context.Context) error {
				_, err := h.server.ListSecrets(identity.WithCaller(ctx, "token:admin"), &secretbrokerv1.ListSecretsRequest{Parent: repoScope})
				return err
			}},
		}
		for _, c := range calls {
			ctx, cancel := context.WithTimeout(t.Context(), deadline)
			start := time.Now()
			done := make(chan error, 1)
			go func() { done <- c.do(ctx) }()
			select {
			case err := <-done:
				if got := statusCode(err); got != c.want {
					t.Errorf("%s: %v (%v), want %v", c.name, got, err, c.want)
				}
				if took := time.Since(start); took > deadline {
					t.Errorf("%s answered after %v, past its %v deadline", c.name, took, deadline)
				}
			case <-time.After(time.Minute):
				close(w.release)
				<-done
				<-first
				t.Fatalf("%s: no answer a minute after its call's %v deadline, with the audit trail stuck", c.name, deadline)
			}
			cancel()
		}
		if n := h.emu.TotalRequests(); n != 1 { // ListSecrets's
			t.Errorf("%d requests went to GitHub while the trail was stuck, want 1 (the read)", n)
		}
		close(w.release)
		if err := <-first; err != nil {
			t.Errorf("the change whose intent was stuck: %v", err)
		}
	})
}

// switchWriter is an audit sink whose writes hang while stuck is set,
// until release is closed.
type switchWriter struct {
	stuck   atomic.Bool
	release chan struct{}
	buf     syncBuffer
}

func (w *switchWriter) Write(p []byte) (int, error) {
	if w.stuck.Load() {
		<-w.release
	}
	return w.buf.Write(p)
}

// TestItemCutWhileTrailStuckStaysPending: an operation's item waiting
// for a stuck audit trail when the runner stops is interrupted, as an
// item the stop cuts anywhere else: it stays pending and runs after the
// restart, not recorded as failed UNAVAILABLE, which would end it.
func TestItemCutWhileTrailStuckStaysPending(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st, err := state.NewMemory(state.Options{})
		if err != nil {
			t.Fatal(err)
		}
		w := &switchWriter{release: make(chan struct{})}
		h := newHarness(t, harnessOpts{audit: audit.NewWriter(w, nil), state: st, ops: OperationOptions{FlushEvery: 1}})
		op := &state.Operation{ID: "op1", Kind: state.KindBatchPutSecrets, Owner: "x",
			Pending: []state.PendingItem{{Name: repoScope + "/secrets/CUT", Value: []byte(plantedSecret)}}}
		op.Metadata.Total = 1
		if err := st.PutOperation(t.Context(), op); err != nil {
			t.Fatal(err)
		}
		w.stuck.Store(true)
		stuck := make(chan error, 1)
		go func() {
			_, err := h.server.PutSecret(t.Context(), plain(repoScope+"/secrets/STUCK", plantedSecret))
			stuck <- err
		}()
		synctest.Wait()
		if n, err := h.server.ResumeOperations(t.Context()); n != 1 || err != nil {
			t.Fatalf("resume %d %v", n, err)
		}
		synctest.Wait() // the item waits for the trail
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		_ = h.server.CloseOperations(ctx) // cuts the item after a second
		w.stuck.Store(false)
		close(w.release)
		<-stuck
		got, err := st.GetOperation(t.Context(), "op1")
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Pending) != 1 || len(got.Results) != 0 {
			t.Errorf("after the stop: pending %v, results %+v; want the item pending, to run after the restart", got.Pending, got.Results)
		}
		if n := h.emu.Count(emulator.RoutePutRepoSecret); n != 1 { // STUCK's, once released
			t.Errorf("%d PUTs went to GitHub, want 1 (STUCK's)", n)
		}
	})
}
