package upstream_test

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/secretbroker/secretbroker/upstream"
)

// TestStreamResetRetried: a request whose HTTP/2 stream GitHub resets (a
// front end giving up on it mid-way) is retried, as the same failure over
// HTTP/1.1 (a dropped connection) is. github.com speaks HTTP/2, and the
// upstream transport prefers it.
func TestStreamResetRetried(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		name := "HTTP/1.1"
		if h2 {
			name = "HTTP/2"
		}
		t.Run(name, func(t *testing.T) {
			var n atomic.Int32
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if n.Add(1) == 1 {
					panic(http.ErrAbortHandler)
				}
				if got := r.ProtoMajor == 2; got != h2 {
					t.Errorf("the request came over %s", r.Proto)
				}
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write([]byte(`{"key_id":"1","key":"AAAA"}`))
			}))
			srv.EnableHTTP2 = h2
			srv.StartTLS()
			defer srv.Close()
			tr := upstream.NewTransport()
			tr.TLSClientConfig = srv.Client().Transport.(*http.Transport).TLSClientConfig
			p := upstream.DefaultPacing()
			p.BackoffBase, p.BackoffMax = time.Millisecond, time.Millisecond
			c, err := upstream.New(upstream.Config{BaseURL: srv.URL, Token: "ghp_streamresettoken0123456789", HTTPClient: &http.Client{Transport: tr}, Pacing: &p})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.GetPublicKey(t.Context(), upstream.Scope{App: upstream.Actions, Org: "o"}); err != nil {
				t.Errorf("after one reset: %v", err)
			}
			if got := n.Load(); got != 2 {
				t.Errorf("%d attempts, want 2", got)
			}
		})
	}
}
