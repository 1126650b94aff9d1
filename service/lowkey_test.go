package service

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"google.golang.org/grpc/codes"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/upstream"
	"github.com/secretbroker/secretbroker/upstream/emulator"
)

// lowOrderKeys are encodings of X25519 points of low order (libsodium's
// blocklist, crypto_scalarmult/curve25519/ref10): every shared secret with
// one is all zeros, so a box sealed to it opens for anyone. libsodium's
// crypto_box_seal refuses them; Go's box.SealAnonymous and tweetsodium
// seal with the all-zero secret.
var lowOrderKeys = []struct{ name, hex string }{
	{"0", "0000000000000000000000000000000000000000000000000000000000000000"},
	{"1", "0100000000000000000000000000000000000000000000000000000000000000"},
	{"order 8", "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"},
	{"order 8, the other", "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"},
	{"p-1", "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"},
	{"p (0, not reduced)", "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"},
	{"p+1 (1, not reduced)", "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"},
	{"0 with the top bit set", "0000000000000000000000000000000000000000000000000000000000000080"},
}

// lowOrderUpstream is the emulator's GitHub answering every public-key
// request with one low-order key.
type lowOrderUpstream struct {
	Upstream
	key       string // base64
	keyFetchs atomic.Int32
}

func (u *lowOrderUpstream) GetPublicKey(context.Context, upstream.Scope) (upstream.PublicKey, error) {
	u.keyFetchs.Add(1)
	return upstream.PublicKey{KeyID: "568250167242549743", Key: u.key, ETag: `W/"low"`}, nil
}

func (u *lowOrderUpstream) RevalidatePublicKey(ctx context.Context, s upstream.Scope, _ string) (upstream.PublicKey, bool, error) {
	pk, err := u.GetPublicKey(ctx, s)
	return pk, false, err
}

// A low-order public key from GitHub is refused: the broker neither
// hands it to a caller (GetPublicKey), who might seal with a library that
// does not check, nor caches it, nor seals with it; nothing is PUT.
func TestLowOrderPublicKeyRefused(t *testing.T) {
	for _, tt := range lowOrderKeys {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				raw, err := hex.DecodeString(tt.hex)
				if err != nil || len(raw) != 32 {
					t.Fatal("bad test key")
				}
				emu := emulator.New(emulator.Options{Token: testToken})
				emu.SeedDemo()
				client, err := upstream.New(upstream.Config{
					BaseURL:    emulatorURL,
					Token:      upstream.Token(testToken),
					HTTPClient: &http.Client{Transport: newEmulatorTransport(emu)},
				})
				if err != nil {
					t.Fatal(err)
				}
				up := &lowOrderUpstream{Upstream: client, key: base64.StdEncoding.EncodeToString(raw)}
				srv := New(up, Options{})

				const parent = "orgs/octo-org/actions"
				pk, err := srv.GetPublicKey(t.Context(), &secretbrokerv1.GetPublicKeyRequest{Parent: parent})
				if err == nil {
					t.Fatalf("GetPublicKey handed out low-order key %q", pk.GetKey())
				}
				wantCode(t, err, codes.Internal)
				if n := srv.keys.len(); n != 0 {
					t.Errorf("the key cache holds %d keys after a low-order key, want 0", n)
				}
				_, err = srv.PutSecret(t.Context(), &secretbrokerv1.PutSecretRequest{
					Name: parent + "/secrets/TOKEN", Visibility: visibilityAll,
					Payload: &secretbrokerv1.PutSecretRequest_Value{Value: plantedSecret},
				})
				noLeak(t, err)
				wantCode(t, err, codes.Internal)
				if n := emu.Count(emulator.RoutePutOrgSecret); n != 0 {
					t.Errorf("%d PUTs with a low-order key, want 0", n)
				}
			})
		})
	}
}
