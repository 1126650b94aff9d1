package sealedbox

import (
	"crypto/ecdh"
	cryptorand "crypto/rand"
	"encoding/base64"
	"strings"
	"testing"

	"filippo.io/edwards25519"
	"golang.org/x/crypto/curve25519"
	"golang.org/x/crypto/nacl/box"
	"golang.org/x/crypto/nacl/secretbox"
	//lint:ignore SA1019 the HSalsa20 step of crypto_box is measured.
	"golang.org/x/crypto/salsa20/salsa"
)

// benchValue is the value the broker's load figures seal: 64 bytes.
var benchValue = []byte(strings.Repeat("v", 64))

// BenchmarkSealAnonymous is the baseline: box.SealAnonymous and base64, as
// the broker sealed before this package and as a direct client seals.
func BenchmarkSealAnonymous(b *testing.B) {
	pub, _ := keyPair(b, cryptorand.Reader)
	b.ReportAllocs()
	for b.Loop() {
		sealed, err := box.SealAnonymous(nil, benchValue, pub, cryptorand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		_ = base64.StdEncoding.EncodeToString(sealed)
	}
}

// BenchmarkSeal is Base64, what the broker now does per value.
func BenchmarkSeal(b *testing.B) {
	pub, _ := keyPair(b, cryptorand.Reader)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Base64(pub, benchValue, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSealSteps measures each step of a seal and the alternatives
// for it, to show where the time goes and which lever pays.
func BenchmarkSealSteps(b *testing.B) {
	pub, _ := keyPair(b, cryptorand.Reader)
	var esk [32]byte
	cryptorand.Read(esk[:])
	var key [32]byte
	var nonce [24]byte
	raw := make([]byte, Overhead+len(benchValue))
	out := make([]byte, 0, len(raw))

	steps := []struct {
		name string
		fn   func(b *testing.B)
	}{
		{"rand32/crypto-rand-Read", func(b *testing.B) { cryptorand.Read(esk[:]) }},
		{"epk/ecdh-NewPrivateKey", func(b *testing.B) {
			k, err := ecdh.X25519().NewPrivateKey(esk[:])
			if err != nil {
				b.Fatal(err)
			}
			_ = k.PublicKey().Bytes()
		}},
		{"epk/curve25519-X25519-Basepoint", func(b *testing.B) {
			if _, err := curve25519.X25519(esk[:], curve25519.Basepoint); err != nil {
				b.Fatal(err)
			}
		}},
		{"epk/edwards-fixed-base", func(b *testing.B) {
			var s edwards25519.Scalar
			if _, err := s.SetBytesWithClamping(esk[:]); err != nil {
				b.Fatal(err)
			}
			var p edwards25519.Point
			copy(out[:32], p.ScalarBaseMult(&s).BytesMontgomery())
		}},
		{"shared/curve25519-X25519", func(b *testing.B) {
			if _, err := curve25519.X25519(esk[:], pub[:]); err != nil {
				b.Fatal(err)
			}
		}},
		{"shared/ecdh-ECDH", func(b *testing.B) {
			k, err := ecdh.X25519().NewPrivateKey(esk[:])
			if err != nil {
				b.Fatal(err)
			}
			p, err := ecdh.X25519().NewPublicKey(pub[:])
			if err != nil {
				b.Fatal(err)
			}
			if _, err := k.ECDH(p); err != nil {
				b.Fatal(err)
			}
		}},
		{"shared/ladder", func(b *testing.B) { x25519(&key, &esk, pub) }},
		{"exchange/edwards+ladder-one-inversion", func(b *testing.B) {
			if err := exchange(out[:32], &key, &esk, pub); err != nil {
				b.Fatal(err)
			}
		}},
		{"key/box-Precompute", func(b *testing.B) { box.Precompute(&key, pub, &esk) }},
		{"key/HSalsa20", func(b *testing.B) { salsa.HSalsa20(&key, new([16]byte), &key, &salsa.Sigma) }},
		{"nonce/blake2b-192", func(b *testing.B) {
			if err := sealNonce(&nonce, raw[:32], pub); err != nil {
				b.Fatal(err)
			}
		}},
		{"box/secretbox-Seal-64B", func(b *testing.B) { secretbox.Seal(out[:0], benchValue, &nonce, &key) }},
		{"base64/EncodeToString", func(b *testing.B) { _ = base64.StdEncoding.EncodeToString(raw) }},
		{"base64/encodeBase64", func(b *testing.B) { _ = encodeBase64(raw) }},
	}
	for _, s := range steps {
		b.Run(s.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				s.fn(b)
			}
		})
	}
}
