package service

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/upstream"
	"github.com/secretbroker/secretbroker/upstream/emulator"
)

// lateAnswers delivers the answer to the next GET of path late (once
// armed): GitHub served it at once, in its state then; the network took
// its time.
type lateAnswers struct {
	inner http.RoundTripper
	path  string
	delay time.Duration
	mu    sync.Mutex
	armed bool
}

func (l *lateAnswers) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := l.inner.RoundTrip(r)
	l.mu.Lock()
	late := l.armed && r.Method == http.MethodGet && r.URL.Path == l.path
	if late {
		l.armed = false
	}
	l.mu.Unlock()
	if late {
		time.Sleep(l.delay) // fake time: the test runs in a synctest bubble
	}
	return resp, err
}

// The reads that judge a write unchanged are made after the call began:
// a put's GET of the secret, and the listing of the scope a batch, a sync
// or a sync's operation judges by. None takes the answer of another
// caller's read that was in flight before (a GetSecret, a DetectDrift:
// served before a value was written straight at GitHub), so that value is
// overwritten, not acknowledged as unchanged.
func TestUnchangedCheckReadsAfterTheCall(t *testing.T) {
	const (
		scope  = "repos/octo-org/hello-world/actions"
		secret = "DB_PASS"
		name   = scope + "/secrets/" + secret
	)
	// write writes "ours" as via does and reports whether the broker
	// answered unchanged and whether it saw drift.
	type write func(ctx context.Context, t *testing.T, h *harness) (unchanged, drift bool)
	put := func(ctx context.Context, t *testing.T, h *harness) (bool, bool) {
		r, err := h.broker.PutSecret(ctx, plain(name, "ours"))
		if err != nil {
			t.Fatal(err)
		}
		return r.GetUnchanged(), r.GetDrift()
	}
	batch := func(ctx context.Context, t *testing.T, h *harness) (bool, bool) {
		r, err := h.broker.BatchPutSecrets(ctx, &secretbrokerv1.BatchPutSecretsRequest{
			Requests: []*secretbrokerv1.PutSecretRequest{plain(name, "ours")}})
		if err != nil {
			t.Fatal(err)
		}
		return r.GetResults()[0].GetUnchanged(), r.GetResults()[0].GetDrift()
	}
	syncs := func(async bool) write {
		return func(ctx context.Context, t *testing.T, h *harness) (bool, bool) {
			r, err := h.broker.SyncSecrets(ctx, &secretbrokerv1.SyncSecretsRequest{Parent: scope,
				Secrets: map[string]string{secret: "ours"}, Async: async})
			if err != nil {
				t.Fatal(err)
			}
			results := r.GetResults()
			if async {
				results = waitOp(ctx, t, h.broker, r.GetOperation().GetName(), 0).GetResponse().GetSyncResults()
			}
			return results[0].GetAction() == secretbrokerv1.SyncAction_SYNC_ACTION_UNCHANGED, results[0].GetDrift()
		}
	}
	getSecret := func(ctx context.Context, h *harness) {
		_, _ = h.broker.GetSecret(ctx, &secretbrokerv1.GetSecretRequest{Name: name})
	}
	detectDrift := func(ctx context.Context, h *harness) {
		_, _ = h.broker.DetectDrift(ctx, &secretbrokerv1.DetectDriftRequest{Parent: scope})
	}
	tests := []struct {
		name string
		// late is the path of the read whose answer comes late, reader
		// the call that reads it (nil: none in flight).
		late   string
		reader func(ctx context.Context, h *harness)
		write  write
	}{
		{"put", "/" + name, nil, put},
		{"put, GetSecret in flight", "/" + name, getSecret, put},
		{"batch, DetectDrift in flight", "/" + scope + "/secrets", detectDrift, batch},
		{"sync, DetectDrift in flight", "/" + scope + "/secrets", detectDrift, syncs(false)},
		{"async sync, DetectDrift in flight", "/" + scope + "/secrets", detectDrift, syncs(true)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				logs := &syncBuffer{}
				logger := newTestLogger(logs)
				emu := emulator.New(emulator.Options{Token: testToken, Logger: logger})
				emu.SeedDemo()
				tr := &lateAnswers{inner: newEmulatorTransport(emu), path: tt.late, delay: 20 * time.Second}
				client, err := upstream.New(upstream.Config{BaseURL: emulatorURL, Token: upstream.Token(testToken),
					HTTPClient: &http.Client{Transport: tr}, Logger: logger})
				if err != nil {
					t.Fatal(err)
				}
				h := newHarnessWith(t, client, logs, Options{Logger: logger})
				closeOps(t, h.server)
				ctx := t.Context()
				if _, err := h.broker.PutSecret(ctx, plain(name, "ours")); err != nil {
					t.Fatal(err)
				}
				time.Sleep(10 * time.Second)
				tr.mu.Lock()
				tr.armed = true
				tr.mu.Unlock()
				var wg sync.WaitGroup
				if tt.reader != nil {
					wg.Go(func() { tt.reader(ctx, h) })
				}
				time.Sleep(3 * time.Second)
				// Someone writes another value straight at GitHub.
				h.emu = emu
				if _, err := otherTool(t, h).broker.PutSecret(ctx, plain(name, "theirs")); err != nil {
					t.Fatal(err)
				}
				time.Sleep(2 * time.Second)
				// The write begins after that write is done.
				unchanged, drift := tt.write(ctx, t, h)
				wg.Wait()
				if got, _ := emu.Open(scope, secret); string(got) != "ours" || unchanged || !drift {
					t.Errorf("%s after a write at GitHub: unchanged=%v drift=%v, GitHub holds %q; want written, with drift", tt.name, unchanged, drift, got)
				}
			})
		})
	}
}
