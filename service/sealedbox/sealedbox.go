// Package sealedbox owns the broker's sealing of secret values: libsodium
// sealed boxes (crypto_box_seal), the format GitHub's secrets API, the
// embedded emulator and golang.org/x/crypto/nacl/box.OpenAnonymous open.
//
// A sealed box is the ephemeral X25519 public key (32 bytes) followed by an
// XSalsa20-Poly1305 box (crypto_box) of the message from the ephemeral key
// to the recipient, whose 24-byte nonce is BLAKE2b-192(epk || recipient).
// The output is byte for byte what box.SealAnonymous produces for the same
// randomness (it reads the same 32 bytes, the ephemeral secret key), only
// cheaper:
//
//   - the ephemeral public key is a fixed-base scalar multiplication on
//     edwards25519 mapped to the Montgomery u-coordinate (as libsodium
//     does), instead of a variable-base X25519 ladder from the base point;
//   - the shared secret is one X25519 Montgomery ladder. box.SealAnonymous
//     runs three: one for the ephemeral public key and two in
//     box.Precompute, because curve25519.ScalarMult goes through
//     ecdh.NewPrivateKey, which computes a public key that is discarded;
//   - the two u-coordinates share one field inversion;
//   - a small value's box is built on the stack and base64 encoded straight
//     into the returned string: two allocations (the string and
//     x/crypto's BLAKE2b state for the nonce) where box.SealAnonymous and
//     base64.EncodeToString make seventeen.
//
// One deliberate difference: a recipient key of low order (whose shared
// secret is all zeros, so anyone could open the box) is refused with an
// error, where box.SealAnonymous seals with the all-zero secret.
package sealedbox

import (
	cryptorand "crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"

	"filippo.io/edwards25519"
	"filippo.io/edwards25519/field"
	"golang.org/x/crypto/blake2b"
	"golang.org/x/crypto/nacl/secretbox"
	//lint:ignore SA1019 HSalsa20 is crypto_box's key derivation (box.Precompute calls it); no other package exports it.
	"golang.org/x/crypto/salsa20/salsa"
)

// Overhead is how many bytes a sealed box adds to its message: the
// ephemeral public key and the Poly1305 tag.
const Overhead = 32 + secretbox.Overhead

// ErrLowOrderKey is returned for a recipient public key whose X25519 shared
// secret with any scalar is all zeros.
var ErrLowOrderKey = errors.New("sealedbox: recipient public key is a low-order point")

// LowOrder reports whether key, a recipient public key in any of its
// encodings, is a point of low order: one Seal refuses (ErrLowOrderKey),
// and whose box anyone could open when sealed by a library that does not
// check (box.SealAnonymous). It costs one X25519 ladder: the product with
// a clamped scalar is zero exactly for the points of low order, since a
// clamped scalar is a multiple of 8 and less than 8 times either curve's
// or its twist's large prime factor.
func LowOrder(key *[32]byte) bool {
	scalar := [32]byte{0: 9} // any; clamped by the ladder
	var u [32]byte
	x25519(&u, &scalar, key)
	return isZero(&u)
}

// stackBox is the largest sealed box (message plus Overhead) Base64 builds
// on the stack; a larger one takes a heap buffer.
const stackBox = 512

// Seal appends a sealed box of message for recipient to out and returns the
// result, exactly as box.SealAnonymous(out, message, recipient, rand) would.
// out must not overlap message. rand supplies the 32-byte ephemeral secret
// key; nil means crypto/rand. The error says only which step failed, never
// anything of message.
func Seal(out, message []byte, recipient *[32]byte, rand io.Reader) ([]byte, error) {
	ret, tail := sliceForAppend(out, Overhead+len(message))
	if err := sealInto(tail, message, recipient, rand); err != nil {
		return nil, err
	}
	return ret, nil
}

// Base64 seals message for recipient as Seal does and returns the sealed
// box in standard base64 with padding (RFC 4648), the form GitHub's
// encrypted_value takes.
func Base64(recipient *[32]byte, message []byte, rand io.Reader) (string, error) {
	n := Overhead + len(message)
	var stack [stackBox]byte
	var raw []byte
	if n <= len(stack) {
		raw = stack[:n]
	} else {
		raw = make([]byte, n)
	}
	if err := sealInto(raw, message, recipient, rand); err != nil {
		return "", err
	}
	return encodeBase64(raw), nil
}

// sealInto writes the sealed box of message into dst, which is exactly
// Overhead+len(message) bytes and does not overlap message.
func sealInto(dst, message []byte, recipient *[32]byte, rand io.Reader) error {
	// The ephemeral secret key, read as box.GenerateKey reads it.
	var esk [32]byte
	defer clear(esk[:])
	if err := readKey(&esk, rand); err != nil {
		return fmt.Errorf("sealedbox: reading the ephemeral key: %w", err)
	}
	epk := dst[:32:32]
	var key [32]byte
	defer clear(key[:])
	if err := exchange(epk, &key, &esk, recipient); err != nil {
		return err
	}
	// The crypto_box key: HSalsa20 of the X25519 shared secret, as
	// box.Precompute derives it.
	var zeros [16]byte
	salsa.HSalsa20(&key, &zeros, &key, &salsa.Sigma)

	var nonce [24]byte
	if err := sealNonce(&nonce, epk, recipient); err != nil {
		return err
	}
	secretbox.Seal(dst[32:32], message, &nonce, &key)
	return nil
}

// readKey fills esk from rand, or from crypto/rand when rand is nil. The
// nil case calls crypto/rand.Read directly so that esk stays on the stack;
// a Reader behind an interface makes the buffer escape, so that case reads
// into a heap copy.
func readKey(esk *[32]byte, rand io.Reader) error {
	if rand == nil {
		_, err := cryptorand.Read(esk[:])
		return err
	}
	b := new([32]byte)
	defer clear(b[:])
	if _, err := io.ReadFull(rand, b[:]); err != nil {
		return err
	}
	*esk = *b
	return nil
}

// exchange writes the ephemeral public key X25519(esk, 9) to epk and the
// shared secret X25519(esk, recipient) to shared.
//
// The public key comes from a fixed-base multiplication on edwards25519,
// the clamped scalar times the Edwards base point, mapped to Montgomery
// u = (1+y)/(1-y) = (Z+Y)/(Z-Y). Clamping clears the cofactor bits, so
// reducing the scalar mod l (SetBytesWithClamping) leaves the point, in the
// prime-order subgroup, unchanged; and Z-Y is never zero, since a clamped
// scalar is never a multiple of l. The shared secret comes from the ladder,
// u = x/z. The two divisions share one inversion (Montgomery's trick):
// with i = 1/((Z-Y)·z), the public key is (Z+Y)·z·i and the secret x·(Z-Y)·i.
// A low-order recipient gives z = 0, so i = 0 and an all-zero secret, which
// is refused.
func exchange(epk []byte, shared, esk, recipient *[32]byte) error {
	var s edwards25519.Scalar
	defer func() { s = edwards25519.Scalar{} }()
	if _, err := s.SetBytesWithClamping(esk[:]); err != nil {
		return fmt.Errorf("sealedbox: clamping the ephemeral key: %w", err)
	}
	var p edwards25519.Point
	p.ScalarBaseMult(&s)
	_, y, z, _ := p.ExtendedCoordinates()

	x2, z2 := ladder(esk, recipient)

	var num, den, inv, u field.Element
	num.Add(z, y)
	den.Subtract(z, y)
	inv.Invert(u.Multiply(&den, &z2))

	u.Multiply(&num, &z2)
	u.Multiply(&u, &inv)
	copy(epk, u.Bytes())

	u.Multiply(&x2, &den)
	u.Multiply(&u, &inv)
	copy(shared[:], u.Bytes())
	if isZero(shared) {
		return ErrLowOrderKey
	}
	return nil
}

// sealNonce writes BLAKE2b-192(epk || recipient), crypto_box_seal's nonce.
func sealNonce(nonce *[24]byte, epk []byte, recipient *[32]byte) error {
	h, err := blake2b.New(24, nil)
	if err != nil {
		return fmt.Errorf("sealedbox: nonce hash: %w", err)
	}
	h.Write(epk)
	h.Write(recipient[:])
	h.Sum(nonce[:0])
	return nil
}

// encodeBase64 returns raw in standard base64 with one allocation, the
// string itself, encoding through a stack buffer in whole 3-byte groups.
func encodeBase64(raw []byte) string {
	enc := base64.StdEncoding
	var sb strings.Builder
	sb.Grow(enc.EncodedLen(len(raw)))
	var chunk [1024]byte
	const step = len(chunk) / 4 * 3 // raw bytes per full chunk
	for len(raw) > 0 {
		n := min(step, len(raw))
		enc.Encode(chunk[:], raw[:n])
		sb.Write(chunk[:enc.EncodedLen(n)])
		raw = raw[n:]
	}
	return sb.String()
}

// sliceForAppend extends in by n bytes, reallocating when it lacks the
// capacity, and returns the extended slice and its last n bytes.
func sliceForAppend(in []byte, n int) (head, tail []byte) {
	if total := len(in) + n; cap(in) >= total {
		head = in[:total]
	} else {
		head = make([]byte, total)
		copy(head, in)
	}
	tail = head[len(in):]
	return head, tail
}

// isZero reports in constant time whether x is all zeros.
func isZero(x *[32]byte) bool {
	var acc byte
	for _, b := range x {
		acc |= b
	}
	return acc == 0
}
