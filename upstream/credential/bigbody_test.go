package credential_test

import (
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/secretbroker/secretbroker/upstream/credential"
)

// lazyBody is a response body of prefix followed by n bytes 'a' and
// suffix, made as it is read; read counts the bytes read.
type lazyBody struct {
	prefix, suffix io.Reader
	left           int64
	read           *atomic.Int64
}

func (b *lazyBody) Read(p []byte) (int, error) {
	n, err := b.read1(p)
	b.read.Add(int64(n))
	return n, err
}

func (b *lazyBody) read1(p []byte) (int, error) {
	if n, _ := b.prefix.Read(p); n > 0 {
		return n, nil
	}
	if b.left > 0 {
		n := min(int64(len(p)), b.left)
		copy(p, strings.Repeat("a", int(n)))
		b.left -= n
		return int(n), nil
	}
	return b.suffix.Read(p)
}

func (b *lazyBody) Close() error { return nil }

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// A token mint's answer is read up to a MiB: ghinstallation decodes it
// with a json.Decoder, which would buffer a token that never ends until
// the mint's timeout (a server on loopback sends gigabytes by then).
func TestMintAnswerBounded(t *testing.T) {
	for _, tc := range []struct {
		name    string
		token   int64 // bytes
		wantErr bool
	}{
		{"a token of 40 bytes", 40, false},
		{"a token of 256 MiB", 256 << 20, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key, _ := newKey(t)
			var read atomic.Int64
			tr := roundTripFunc(func(r *http.Request) (*http.Response, error) {
				body := &lazyBody{
					prefix: strings.NewReader(`{"token":"`),
					left:   tc.token,
					suffix: strings.NewReader(`","expires_at":"2999-01-01T00:00:00Z"}`),
					read:   &read,
				}
				return &http.Response{StatusCode: http.StatusCreated, Header: http.Header{}, Request: r, Body: body}, nil
			})
			a, err := credential.NewApp(credential.AppConfig{AppID: 77, PrivateKey: key, InstallationID: 5, BaseURL: "http://github.test", Transport: tr})
			if err != nil {
				t.Fatal(err)
			}
			in, err := a.For(t.Context(), "acme", "")
			if err != nil {
				t.Fatal(err)
			}
			tok, err := in.Token(t.Context())
			if !tc.wantErr {
				if err != nil || int64(len(tok)) != tc.token {
					t.Fatalf("token of %d bytes, err %v; want %d bytes", len(tok), err, tc.token)
				}
				return
			}
			if err == nil || tok != "" {
				t.Fatalf("token of %d bytes, err %v; want an error", len(tok), err)
			}
			if got := read.Load(); got > 2<<20 {
				t.Errorf("%d MiB of the answer read, want at most 2", got>>20)
			}
		})
	}
}
