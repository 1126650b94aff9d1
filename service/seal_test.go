package service

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"golang.org/x/crypto/nacl/box"

	"github.com/secretbroker/secretbroker/service/sealedbox"
)

func TestSealOpens(t *testing.T) {
	pub, priv, err := box.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, plain := range []string{"x", "hunter2", strings.Repeat("v", maxValueBytes)} {
		enc, err := seal(pub, []byte(plain))
		if err != nil {
			t.Fatal(err)
		}
		if err := checkSealed("encrypted_value", enc); err != nil {
			t.Fatalf("broker-sealed value fails the passthrough check: %v", err)
		}
		raw, err := base64.StdEncoding.DecodeString(enc)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := box.OpenAnonymous(nil, raw, pub, priv)
		if !ok || string(got) != plain {
			t.Fatalf("sealed value does not open to the plaintext (ok=%v, len %d)", ok, len(got))
		}
	}
}

// TestSealErrorHidesValue plants a value and seals it for a low-order key,
// which sealing refuses: the error says so and does not hold the value.
func TestSealErrorHidesValue(t *testing.T) {
	const planted = "PLANTED-seal-value-93ab"
	var lowOrder [32]byte // u = 0
	enc, err := seal(&lowOrder, []byte(planted))
	if err == nil || enc != "" {
		t.Fatalf("seal with a low-order key = %q, %v; want an error", enc, err)
	}
	if !errors.Is(err, sealedbox.ErrLowOrderKey) || strings.Contains(err.Error(), planted) ||
		strings.Contains(err.Error(), base64.StdEncoding.EncodeToString([]byte(planted))) {
		t.Fatalf("seal error %q: want ErrLowOrderKey without the value", err)
	}
}

func TestCheckSealed(t *testing.T) {
	valid := base64.StdEncoding.EncodeToString(make([]byte, 61)) // ends in "="
	tests := []struct {
		in, wantErr string
	}{
		{in: valid},
		{in: "c2VjcmV0", wantErr: "shorter than a sealed box"},
		{in: base64.StdEncoding.EncodeToString(make([]byte, box.AnonymousOverhead)), wantErr: "sealed box of an empty value"},
		{in: base64.StdEncoding.EncodeToString(make([]byte, box.AnonymousOverhead+1))},
		{in: "not base64!", wantErr: "must be standard base64"},
		{in: strings.TrimRight(valid, "="), wantErr: "must be standard base64"},
		{in: valid[:40] + "\n" + valid[40:], wantErr: "must be standard base64"},
		{in: valid[:40] + "\r\n" + valid[40:], wantErr: "must be standard base64"},
		{in: base64.URLEncoding.EncodeToString([]byte{0xfb, 0xff, 0xfe}), wantErr: "must be standard base64"},
		{in: base64.StdEncoding.EncodeToString(make([]byte, maxValueBytes+box.AnonymousOverhead+1)), wantErr: "seals more than"},
	}
	for _, tt := range tests {
		err := checkSealed("encrypted_value", tt.in)
		if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("checkSealed(%.20q) = %v, want %q", tt.in, err, tt.wantErr)
		}
	}
}

// BenchmarkSeal is the cost of sealing one 64-byte value (the baseline,
// box.SealAnonymous, is service/sealedbox's BenchmarkSealAnonymous).
func BenchmarkSeal(b *testing.B) {
	pub, _, err := box.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	value := []byte(strings.Repeat("v", 64))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := seal(pub, value); err != nil {
			b.Fatal(err)
		}
	}
}
