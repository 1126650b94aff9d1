package emulator

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestConnections: ConnState counts each connection the server accepts
// once, however many requests it carries.
func TestConnections(t *testing.T) {
	em := New(Options{})
	ts := httptest.NewUnstartedServer(em)
	ts.Config.ConnState = em.ConnState
	ts.Start()
	t.Cleanup(ts.Close)
	get := func(c *http.Client) {
		t.Helper()
		resp, err := c.Get(ts.URL + "/rate_limit")
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	tests := []struct {
		name      string
		keepAlive bool
		requests  int
		wantNew   int64
	}{
		{"keep-alive: one connection", true, 5, 1},
		{"no keep-alive: one a request", false, 3, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &http.Client{Transport: &http.Transport{DisableKeepAlives: !tt.keepAlive}}
			defer c.CloseIdleConnections()
			before := em.Connections()
			for range tt.requests {
				get(c)
			}
			if got := em.Connections() - before; got != tt.wantNew {
				t.Errorf("%d requests opened %d connections, want %d", tt.requests, got, tt.wantNew)
			}
		})
	}
}
