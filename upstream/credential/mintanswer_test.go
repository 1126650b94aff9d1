package credential_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

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

// A mint whose answer gives no expiry ahead (expires_at past, as on a
// clock more than 59 minutes ahead of GitHub's, null or missing) is used
// for a minute all the same: ghinstallation would mint again for every
// request, a request of the app's that no pacer counts.
func TestMintWithoutExpiryAheadIsUsedAMinute(t *testing.T) {
	at := func(d time.Duration) func() string {
		return func() string { return `"expires_at":"` + time.Now().Add(d).UTC().Format(time.RFC3339) + `"` }
	}
	for _, tc := range []struct {
		name   string
		expiry func() string // in the bubble
		again  bool          // a mint once the minute is over
	}{
		{"an hour ahead", at(time.Hour), false},
		{"an hour past", at(-time.Hour), true},
		{"null", func() string { return `"expires_at":null` }, true},
		{"missing", func() string { return `"permissions":{}` }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				expiry := tc.expiry()
				key, _ := newKey(t)
				var mints atomic.Int64
				tr := roundTripFunc(func(r *http.Request) (*http.Response, error) {
					n := mints.Add(1)
					body := fmt.Sprintf(`{"token":"ghs_%d",%s}`, n, expiry)
					return &http.Response{StatusCode: http.StatusCreated, Header: http.Header{}, Request: r, Body: io.NopCloser(strings.NewReader(body))}, nil
				})
				a, err := credential.NewApp(credential.AppConfig{AppID: 77, PrivateKey: key, InstallationID: 5, BaseURL: "http://github.test", Transport: tr})
				if err != nil {
					t.Fatal(err)
				}
				in, err := a.For(t.Context(), "acme", "")
				if err != nil {
					t.Fatal(err)
				}
				tokens := func(n int) {
					t.Helper()
					for range n {
						if _, err := in.Token(t.Context()); err != nil {
							t.Fatal(err)
						}
					}
				}
				tokens(100)
				if n := mints.Load(); n != 1 {
					t.Fatalf("100 calls minted %d tokens, want 1", n)
				}
				time.Sleep(59 * time.Second)
				tokens(10)
				if n := mints.Load(); n != 1 {
					t.Fatalf("calls within the minute minted %d tokens, want 1", n)
				}
				time.Sleep(time.Second)
				tokens(10)
				want := int64(1)
				if tc.again {
					want = 2
				}
				if n := mints.Load(); n != want {
					t.Fatalf("calls after the minute minted %d tokens in all, want %d", n, want)
				}
			})
		})
	}
}
