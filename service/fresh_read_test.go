package service

import (
	"fmt"
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

// A PutSecret's unchanged check reads GitHub after the call began: it does
// not take the answer of another caller's GET of the secret that was in
// flight before (served before a value was written straight at GitHub),
// so that value is overwritten, not acknowledged as unchanged.
func TestUnchangedCheckReadsAfterTheCall(t *testing.T) {
	for _, reader := range []bool{false, true} {
		t.Run(fmt.Sprintf("reader in flight %v", reader), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				logs := &syncBuffer{}
				logger := newTestLogger(logs)
				emu := emulator.New(emulator.Options{Token: testToken, Logger: logger})
				emu.SeedDemo()
				const scope = "repos/octo-org/hello-world/actions"
				tr := &lateAnswers{inner: newEmulatorTransport(emu), path: "/" + scope + "/secrets/DB_PASS", delay: 20 * time.Second}
				client, err := upstream.New(upstream.Config{BaseURL: emulatorURL, Token: upstream.Token(testToken),
					HTTPClient: &http.Client{Transport: tr}, Logger: logger})
				if err != nil {
					t.Fatal(err)
				}
				h := newHarnessWith(t, client, logs, Options{Logger: logger})
				ctx := t.Context()
				name := scope + "/secrets/DB_PASS"
				if _, err := h.broker.PutSecret(ctx, plain(name, "ours")); err != nil {
					t.Fatal(err)
				}
				time.Sleep(10 * time.Second)
				tr.mu.Lock()
				tr.armed = true
				tr.mu.Unlock()
				var wg sync.WaitGroup
				if reader {
					wg.Go(func() { _, _ = h.broker.GetSecret(ctx, &secretbrokerv1.GetSecretRequest{Name: name}) })
				}
				time.Sleep(3 * time.Second)
				// Someone writes another value straight at GitHub.
				other, err := upstream.New(upstream.Config{BaseURL: emulatorURL, Token: upstream.Token(testToken),
					HTTPClient: &http.Client{Transport: newEmulatorTransport(emu)}})
				if err != nil {
					t.Fatal(err)
				}
				sc := mustScope(t, scope)
				pk, err := other.GetPublicKey(ctx, sc)
				if err != nil {
					t.Fatal(err)
				}
				sealed := sealFor(t, &secretbrokerv1.PublicKey{KeyId: string(pk.KeyID), Key: pk.Key}, "theirs")
				if _, err := other.PutSecret(ctx, sc, "DB_PASS", upstream.PutSecretBody{EncryptedValue: sealed, KeyID: pk.KeyID}); err != nil {
					t.Fatal(err)
				}
				time.Sleep(2 * time.Second)
				// The put begins after that write is done.
				resp, err := h.broker.PutSecret(ctx, plain(name, "ours"))
				if err != nil {
					t.Fatal(err)
				}
				wg.Wait()
				if got, _ := emu.Open(scope, "DB_PASS"); string(got) != "ours" || resp.GetUnchanged() || !resp.GetDrift() {
					t.Errorf("put after a write at GitHub: unchanged=%v drift=%v, GitHub holds %q; want written, with drift", resp.GetUnchanged(), resp.GetDrift(), got)
				}
			})
		})
	}
}
