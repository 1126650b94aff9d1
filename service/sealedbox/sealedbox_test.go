package sealedbox

import (
	"bytes"
	"crypto/ecdh"
	cryptorand "crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"

	"golang.org/x/crypto/curve25519"
	"golang.org/x/crypto/nacl/box"
)

// maxValue is GitHub's limit on a secret's value, the largest message the
// broker seals.
const maxValue = 48 * 1024

// testSizes are message sizes around every boundary of the code: empty,
// Salsa20 and Poly1305 blocks, the stack box, base64 chunks and GitHub's
// 48 KB limit.
var testSizes = []int{
	0, 1, 2, 3, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 127, 128, 129, 255, 256,
	stackBox - Overhead - 1, stackBox - Overhead, stackBox - Overhead + 1,
	767, 768, 769, 1023, 1024, 1025, 4096, 12345, maxValue - 1, maxValue,
}

// seeded returns a deterministic byte stream for keys, messages and
// ephemeral secrets.
func seeded(seed uint64) *rand.ChaCha8 {
	var s [32]byte
	s[0], s[1] = byte(seed), byte(seed>>8)
	return rand.NewChaCha8(s)
}

func keyPair(t testing.TB, r io.Reader) (pub, priv *[32]byte) {
	t.Helper()
	pub, priv, err := box.GenerateKey(r)
	if err != nil {
		t.Fatal(err)
	}
	return pub, priv
}

func randBytes(r io.Reader, n int) []byte {
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		panic(err)
	}
	return b
}

// TestSealMatchesSealAnonymous is the known-answer test: for the same
// randomness Seal and Base64 give box.SealAnonymous's bytes exactly, for
// many keys and every test size.
func TestSealMatchesSealAnonymous(t *testing.T) {
	for i, size := range testSizes {
		for k := range 3 {
			src := seeded(uint64(i*3 + k))
			pub, _ := keyPair(t, src)
			msg := randBytes(src, size)
			ephemeral := randBytes(src, 32)

			want, err := box.SealAnonymous(nil, msg, pub, bytes.NewReader(ephemeral))
			if err != nil {
				t.Fatal(err)
			}
			got, err := Seal(nil, msg, pub, bytes.NewReader(ephemeral))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("size %d key %d: Seal differs from box.SealAnonymous at byte %d", size, k, firstDiff(got, want))
			}
			enc, err := Base64(pub, msg, bytes.NewReader(ephemeral))
			if err != nil {
				t.Fatal(err)
			}
			if wantEnc := base64.StdEncoding.EncodeToString(want); enc != wantEnc {
				t.Fatalf("size %d key %d: Base64 differs from base64(box.SealAnonymous)", size, k)
			}
		}
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestSealFixedVector pins the format to bytes computed once with
// box.SealAnonymous, so a change in either implementation shows.
func TestSealFixedVector(t *testing.T) {
	recipient := must32(t, "b6f6aa6b8e9ed4b9a1c1ef6fb9b0c8b5b0bd3e7e2f67a8b2e6a8e43df32c6a55")
	ephemeral := bytes.Repeat([]byte{0x42}, 32)
	const want = "EyxEK+AQ+9V+cmAzKKp25x/MwVA6riGTJ9FNnJmT9HKWNw20c3oCmcSZukG6i3qnTAbPpCgVMQ=="
	got, err := Base64(recipient, []byte("hunter2"), bytes.NewReader(ephemeral))
	if err != nil {
		t.Fatal(err)
	}
	ref, err := box.SealAnonymous(nil, []byte("hunter2"), recipient, bytes.NewReader(ephemeral))
	if err != nil {
		t.Fatal(err)
	}
	if got != want || base64.StdEncoding.EncodeToString(ref) != want {
		t.Fatalf("Base64 = %s, box.SealAnonymous = %s, want %s", got, base64.StdEncoding.EncodeToString(ref), want)
	}
}

// TestSealLibsodiumVector pins the format to bytes libsodium itself
// produced, not box.SealAnonymous (TestSealFixedVector): crypto_box_seal
// of libsodium 1.0.18 with its random source replaced by one that yields
// the ephemeral secret key below, for the recipient of
// crypto_box_seed_keypair(seed 00 01 .. 1f). The box opens with that
// recipient's secret key (crypto_box_seal_open did; so does
// box.OpenAnonymous). testdata/libsodium_vector.py prints it again.
func TestSealLibsodiumVector(t *testing.T) {
	recipient := must32(t, "4701d08488451f545a409fb58ae3e58581ca40ac3f7f114698cd71deac73ca01")
	recipientSecret := must32(t, "3d94eea49c580aef816935762be049559d6d1440dede12e6a125f1841fff8e6f")
	ephemeral := must32(t, "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f")
	msg := []byte("hunter2 \u2713 sealed for GitHub")
	const want = "NYBy1jZYgNGu6jKa35EhODhR7SGijjt16WXQ0s0WYlRLPv+ODhyMQg1OKPNOiIlbSrFybObzef5Q5R7cfhrTTQXUpR85Nt8CSlgc3zs="
	got, err := Base64(recipient, msg, bytes.NewReader(ephemeral[:]))
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("Base64 = %s, libsodium's crypto_box_seal = %s", got, want)
	}
	raw, err := base64.StdEncoding.DecodeString(want)
	if err != nil {
		t.Fatal(err)
	}
	if opened, ok := box.OpenAnonymous(nil, raw, recipient, recipientSecret); !ok || !bytes.Equal(opened, msg) {
		t.Fatalf("libsodium's box does not open with box.OpenAnonymous (ok=%v)", ok)
	}
}

func must32(t *testing.T, h string) *[32]byte {
	t.Helper()
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != 32 {
		t.Fatalf("bad hex key %q", h)
	}
	return (*[32]byte)(b)
}

// TestRoundTrip seals with crypto/rand for many random keys and every test
// size, plus random sizes, and opens with box.OpenAnonymous.
func TestRoundTrip(t *testing.T) {
	src := seeded(99)
	sizes := append([]int(nil), testSizes...)
	for range 40 {
		sizes = append(sizes, rand.New(src).IntN(maxValue+1))
	}
	for _, size := range sizes {
		pub, priv := keyPair(t, cryptorand.Reader)
		msg := randBytes(src, size)

		enc, err := Base64(pub, msg, nil)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := base64.StdEncoding.Strict().DecodeString(enc)
		if err != nil {
			t.Fatalf("size %d: not standard base64: %v", size, err)
		}
		if len(raw) != size+Overhead || Overhead != box.AnonymousOverhead {
			t.Fatalf("size %d: sealed box is %d bytes, want %d", size, len(raw), size+box.AnonymousOverhead)
		}
		got, ok := box.OpenAnonymous(nil, raw, pub, priv)
		if !ok || !bytes.Equal(got, msg) {
			t.Fatalf("size %d: Base64's box does not open to the message (ok=%v)", size, ok)
		}

		sealed, err := Seal([]byte("prefix"), msg, pub, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(sealed, []byte("prefix")) {
			t.Fatalf("size %d: Seal lost the prefix of out", size)
		}
		got, ok = box.OpenAnonymous(nil, sealed[len("prefix"):], pub, priv)
		if !ok || !bytes.Equal(got, msg) {
			t.Fatalf("size %d: Seal's box does not open to the message (ok=%v)", size, ok)
		}
	}
}

// TestSealAppendsInPlace checks Seal uses out's spare capacity as
// box.SealAnonymous does and leaves out's bytes alone.
func TestSealAppendsInPlace(t *testing.T) {
	src := seeded(7)
	pub, _ := keyPair(t, src)
	msg := randBytes(src, 100)
	ephemeral := randBytes(src, 32)
	buf := make([]byte, 3, 3+Overhead+len(msg))
	copy(buf, "abc")
	got, err := Seal(buf, msg, pub, bytes.NewReader(ephemeral))
	if err != nil {
		t.Fatal(err)
	}
	if &got[0] != &buf[0] {
		t.Error("Seal reallocated although out had the capacity")
	}
	want, _ := box.SealAnonymous([]byte("abc"), msg, pub, bytes.NewReader(ephemeral))
	if !bytes.Equal(got, want) {
		t.Error("Seal into spare capacity differs from box.SealAnonymous")
	}
}

// TestExchange checks exchange's ephemeral public key against
// curve25519.X25519(esk, Basepoint) and its shared secret against
// curve25519.X25519(esk, recipient), for random scalars and for scalars at
// the edges of clamping and of reduction mod l, with random recipients,
// recipients with the top bit set and recipients on the twist.
func TestExchange(t *testing.T) {
	scalars := [][]byte{
		make([]byte, 32),
		bytes.Repeat([]byte{0xff}, 32),
		bytes.Repeat([]byte{0x80}, 32),
		append([]byte{1}, make([]byte, 31)...),
		append(make([]byte, 31), 0x40),
		// l = 2^252 + 27742317777372353535851937790883648493, little endian.
		must32(t, "edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010")[:],
		must32(t, "ecd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010")[:],
		must32(t, "eed3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010")[:],
	}
	src := seeded(1)
	for range 500 {
		scalars = append(scalars, randBytes(src, 32))
	}
	for i, s := range scalars {
		recipient := randBytes(src, 32) // about half of these are on the twist
		if i%2 == 1 {
			recipient[31] |= 0x80
		}
		wantPub, err := curve25519.X25519(s, curve25519.Basepoint)
		if err != nil {
			t.Fatal(err)
		}
		wantShared, err := curve25519.X25519(s, recipient)
		if err != nil {
			t.Fatal(err)
		}
		var epk, shared [32]byte
		if err := exchange(epk[:], &shared, (*[32]byte)(s), (*[32]byte)(recipient)); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(epk[:], wantPub) {
			t.Fatalf("exchange(%x): public key %x, X25519 gives %x", s, epk, wantPub)
		}
		if !bytes.Equal(shared[:], wantShared) {
			t.Fatalf("exchange(%x, %x): shared secret %x, X25519 gives %x", s, recipient, shared, wantShared)
		}
	}
}

// TestLadder checks x25519 against crypto/ecdh's X25519 for random scalars
// and points (with the top bit set, which both ignore, and non-canonical
// u >= p) and against RFC 7748's vectors.
func TestLadder(t *testing.T) {
	rfc := []struct{ scalar, point, want string }{
		{ // RFC 7748, section 5.2
			"a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
			"e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
			"c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552",
		},
		{
			"4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
			"e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
			"95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957",
		},
		{ // RFC 7748, section 6.1: Bob's public key and the shared secret
			"77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
			"de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f",
			"4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742",
		},
	}
	for _, v := range rfc {
		var got [32]byte
		x25519(&got, must32(t, v.scalar), must32(t, v.point))
		if hex.EncodeToString(got[:]) != v.want {
			t.Errorf("x25519(%s, %s) = %x, want %s", v.scalar, v.point, got, v.want)
		}
	}

	src := seeded(2)
	for i := range 300 {
		scalar, point := randBytes(src, 32), randBytes(src, 32)
		switch i % 3 {
		case 1:
			point[31] |= 0x80
		case 2: // p + small, non-canonical
			copy(point, must32(t, "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")[:])
			point[0] += byte(i % 18)
		}
		want, wantErr := curve25519.X25519(scalar, point)
		var got [32]byte
		x25519(&got, (*[32]byte)(scalar), (*[32]byte)(point))
		if wantErr != nil {
			if !isZero(&got) {
				t.Fatalf("x25519(%x, %x) = %x, X25519 refuses it as low order", scalar, point, got)
			}
			continue
		}
		if !bytes.Equal(got[:], want) {
			t.Fatalf("x25519(%x, %x) = %x, X25519 gives %x", scalar, point, got, want)
		}
	}

	// And the shared secret both sides of an ecdh exchange agree on.
	for range 20 {
		a, _ := ecdh.X25519().GenerateKey(cryptorand.Reader)
		b, _ := ecdh.X25519().GenerateKey(cryptorand.Reader)
		want, err := a.ECDH(b.PublicKey())
		if err != nil {
			t.Fatal(err)
		}
		var got [32]byte
		x25519(&got, (*[32]byte)(a.Bytes()), (*[32]byte)(b.PublicKey().Bytes()))
		if !bytes.Equal(got[:], want) {
			t.Fatal("x25519 disagrees with crypto/ecdh")
		}
	}
}

// lowOrderPoints are the u-coordinates of Curve25519's points of order 1,
// 2, 4 and 8 (0, 1, two of order 8, p-1), the non-canonical encodings p and
// p+1, and each of those with the top bit set, which X25519 ignores.
func lowOrderPoints(t *testing.T) []*[32]byte {
	var out []*[32]byte
	for _, h := range []string{
		"0000000000000000000000000000000000000000000000000000000000000000",
		"0100000000000000000000000000000000000000000000000000000000000000",
		"e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
		"5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
		"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		"edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		"eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
	} {
		k := must32(t, h)
		high := *k
		high[31] |= 0x80
		out = append(out, k, &high)
	}
	return out
}

// TestLowOrderKeyRefused: a recipient key whose shared secret is all zeros
// is refused rather than sealed with a key anyone can compute.
func TestLowOrderKeyRefused(t *testing.T) {
	for _, key := range lowOrderPoints(t) {
		if _, err := curve25519.X25519(bytes.Repeat([]byte{7}, 32), key[:]); err == nil {
			t.Fatalf("%x is not low order by curve25519.X25519; the list is wrong", key)
		}
		if _, err := Base64(key, []byte("hunter2"), nil); !errors.Is(err, ErrLowOrderKey) {
			t.Errorf("Base64 with low-order key %x: err = %v, want ErrLowOrderKey", key, err)
		}
		if out, err := Seal(nil, []byte("hunter2"), key, nil); !errors.Is(err, ErrLowOrderKey) || out != nil {
			t.Errorf("Seal with low-order key %x: (%d bytes, %v), want ErrLowOrderKey", key, len(out), err)
		}
	}
}

// TestLowOrder: LowOrder holds for every encoding of a low-order point
// and for no other key, as curve25519.X25519 (which refuses an all-zero
// result) tells them apart: random keys (about half on the twist), with
// the top bit set, and non-canonical p + small.
func TestLowOrder(t *testing.T) {
	keys := lowOrderPoints(t)
	src := seeded(5)
	for i := range 300 {
		key := (*[32]byte)(randBytes(src, 32))
		switch i % 3 {
		case 1:
			key[31] |= 0x80
		case 2:
			*key = *must32(t, "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")
			key[0] += byte(i % 18)
		}
		keys = append(keys, key)
	}
	for _, key := range keys {
		_, err := curve25519.X25519(bytes.Repeat([]byte{7}, 32), key[:])
		if got, want := LowOrder(key), err != nil; got != want {
			t.Errorf("LowOrder(%x) = %v, want %v", key, got, want)
		}
	}
}

type failingReader struct{ n int } // gives n bytes, then fails

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, errors.New("entropy source failed")
	}
	n := min(r.n, len(p))
	r.n -= n
	return n, nil
}

// TestErrorsNeverHoldTheMessage plants a known value and checks no error
// Seal or Base64 returns carries it, in any form.
func TestErrorsNeverHoldTheMessage(t *testing.T) {
	const planted = "PLANTED-secret-value-4f1c"
	msg := []byte(planted)
	forms := []string{planted, hex.EncodeToString(msg), base64.StdEncoding.EncodeToString(msg), base64.RawStdEncoding.EncodeToString(msg)}
	pub, _ := keyPair(t, seeded(3))
	tests := []struct {
		name    string
		key     *[32]byte
		rand    func() io.Reader // a fresh one per call
		wantErr string
	}{
		{name: "rand fails", key: pub, rand: func() io.Reader { return &failingReader{} }, wantErr: "entropy source failed"},
		{name: "rand short", key: pub, rand: func() io.Reader { return &failingReader{n: 31} }, wantErr: "reading the ephemeral key"},
		{name: "rand eof", key: pub, rand: func() io.Reader { return bytes.NewReader(nil) }, wantErr: "EOF"},
		{name: "low order key", key: lowOrderPoints(t)[4], rand: func() io.Reader { return nil }, wantErr: "low-order"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err1 := Base64(tt.key, msg, tt.rand())
			_, err2 := Seal(nil, msg, tt.key, tt.rand())
			for _, err := range []error{err1, err2} {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				for _, f := range forms {
					if strings.Contains(err.Error(), f) || strings.Contains(strings.ToLower(err.Error()), strings.ToLower(f)) {
						t.Fatalf("error %q holds the message", err)
					}
				}
			}
		})
	}
}

// TestBase64Allocations: sealing a small value with crypto/rand allocates
// the returned string and x/crypto's BLAKE2b state for the nonce, nothing
// else (box.SealAnonymous plus base64 makes 8).
func TestBase64Allocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	pub, _ := keyPair(t, cryptorand.Reader)
	msg := []byte(strings.Repeat("v", 64))
	allocs := testing.AllocsPerRun(50, func() {
		if _, err := Base64(pub, msg, nil); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 2 {
		t.Errorf("Base64 of a 64-byte value makes %v allocations, want 2", allocs)
	}
}

func TestEncodeBase64(t *testing.T) {
	src := seeded(5)
	for _, n := range []int{0, 1, 2, 3, 4, 767, 768, 769, 770, 1536, 1537, 5000} {
		raw := randBytes(src, n)
		if got, want := encodeBase64(raw), base64.StdEncoding.EncodeToString(raw); got != want {
			t.Errorf("encodeBase64 of %d bytes = %.40q..., want %.40q...", n, got, want)
		}
	}
}

// FuzzRoundTrip seals a fuzzed message with keys and randomness drawn from
// a fuzzed seed, checks the bytes against box.SealAnonymous and opens them.
func FuzzRoundTrip(f *testing.F) {
	f.Add(uint64(0), []byte(""))
	f.Add(uint64(1), []byte("hunter2"))
	f.Add(uint64(2), bytes.Repeat([]byte{0}, 64))
	f.Add(uint64(3), bytes.Repeat([]byte("x"), stackBox-Overhead))
	f.Add(uint64(4), bytes.Repeat([]byte("y"), stackBox-Overhead+1))
	f.Add(uint64(5), bytes.Repeat([]byte{0xff}, 3000))
	f.Fuzz(func(t *testing.T, seed uint64, msg []byte) {
		if len(msg) > maxValue {
			msg = msg[:maxValue]
		}
		src := seeded(seed)
		pub, priv := keyPair(t, src)
		ephemeral := randBytes(src, 32)

		enc, err := Base64(pub, msg, bytes.NewReader(ephemeral))
		if err != nil {
			t.Fatal(err)
		}
		raw, err := base64.StdEncoding.Strict().DecodeString(enc)
		if err != nil {
			t.Fatal(err)
		}
		want, err := box.SealAnonymous(nil, msg, pub, bytes.NewReader(ephemeral))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(raw, want) {
			t.Fatalf("differs from box.SealAnonymous at byte %d", firstDiff(raw, want))
		}
		got, ok := box.OpenAnonymous(nil, raw, pub, priv)
		if !ok || !bytes.Equal(got, msg) {
			t.Fatalf("does not open to the message (ok=%v)", ok)
		}
	})
}
