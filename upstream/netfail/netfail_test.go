package netfail_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"syscall"
	"testing"

	"golang.org/x/net/http2"

	"github.com/secretbroker/secretbroker/upstream/netfail"
)

func TestTransient(t *testing.T) {
	urlErr := func(err error) error {
		return &url.Error{Op: "Put", URL: "https://api.github.com/repos/o/r/actions/secrets/S", Err: err}
	}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"reset", urlErr(&net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}), true},
		{"refused", urlErr(&net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}), true},
		{"EOF", urlErr(io.EOF), true},
		{"unexpected EOF", urlErr(io.ErrUnexpectedEOF), true},
		{"timeout", urlErr(context.DeadlineExceeded), true},
		{"HTTP/2 stream reset", urlErr(http2.StreamError{StreamID: 1, Code: http2.ErrCodeInternal}), true},
		{"HTTP/2 stream refused", urlErr(http2.StreamError{StreamID: 3, Code: http2.ErrCodeRefusedStream}), true},
		{"GOAWAY closed the connection", urlErr(errors.New(`http2: server sent GOAWAY and closed the connection; LastStreamID=1, ErrCode=INTERNAL_ERROR, debug=""`)), true},
		{"HTTP/2 connection lost", urlErr(errors.New("http2: client connection lost")), true},
		{"HTTP/2 connection closed", urlErr(errors.New("http2: client conn is closed")), true},
		{"HTTP/1.1 idle connection closed", urlErr(errors.New("http: server closed idle connection")), true},
		{"joined", fmt.Errorf("mint: %w", errors.Join(errors.New("other"), errors.New("http2: client connection lost"))), true},
		{"bad certificate", urlErr(x509.UnknownAuthorityError{}), false},
		{"refused redirect", urlErr(errors.New("github: redirect refused")), false},
		{"cancelled", urlErr(context.Canceled), false},
		{"other", errors.New("something else"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := netfail.Transient(tc.err); got != tc.want {
				t.Errorf("Transient(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

// TestTransientRealStreamReset: the error net/http's own HTTP/2 client
// returns when the server resets the request's stream (a handler that
// aborts, as a front end giving up on a request does) is transient.
func TestTransientRealStreamReset(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		panic(http.ErrAbortHandler) // RST_STREAM, INTERNAL_ERROR
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPut, srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := srv.Client().Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("the aborted request got %s", resp.Status)
	}
	if !netfail.Transient(err) {
		t.Errorf("Transient(%v) = false, want true", err)
	}
}

// TestTLSRefusalNotTransient: a server that refuses the client's
// certificate (its alert, under TLS 1.2 and 1.3) and a server whose
// certificate this machine does not trust fail for good: crypto/tls
// reports the alert as a *net.OpError, which was taken for a network
// failure and retried.
func TestTLSRefusalNotTransient(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAnyClientCert}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	defer srv.Close()
	get := func(tr *http.Transport) error {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err == nil {
			resp.Body.Close()
			t.Fatal("the request succeeded")
		}
		return err
	}
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		tr := srv.Client().Transport.(*http.Transport).Clone()
		tr.TLSClientConfig.MaxVersion = v
		if err := get(tr); netfail.Transient(err) {
			t.Errorf("TLS %x, no client certificate: Transient(%v) = true", v, err)
		}
	}
	if err := get(&http.Transport{}); netfail.Transient(err) { // the test server's certificate is not trusted
		t.Errorf("untrusted certificate: Transient(%v) = true", err)
	}
}
