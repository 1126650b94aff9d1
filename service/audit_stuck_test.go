package service

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/grpc/codes"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/service/audit"
	"github.com/secretbroker/secretbroker/service/identity"
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
// trail hangs, a change announced after it fails UNAVAILABLE (the trail
// cannot be written) when its call's deadline passes and sends nothing
// to GitHub, a denial answers by its deadline, and reads are served; they
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
			{"PutSecret", codes.Unavailable, func(ctx context.Context) error {
				_, err := h.server.PutSecret(identity.WithCaller(ctx, "token:admin"), plain(repoScope+"/secrets/SECOND", plantedSecret))
				return err
			}},
			{"DeleteSecret", codes.Unavailable, func(ctx context.Context) error {
				_, err := h.server.DeleteSecret(identity.WithCaller(ctx, "token:admin"), &secretbrokerv1.DeleteSecretRequest{Name: repoScope + "/secrets/SECOND"})
				return err
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
