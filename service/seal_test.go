package service

import (
	"crypto/rand"
	"encoding/base64"
	"strings"
	"testing"

	"golang.org/x/crypto/nacl/box"
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

func TestCheckSealed(t *testing.T) {
	valid := base64.StdEncoding.EncodeToString(make([]byte, 61)) // ends in "="
	tests := []struct {
		in, wantErr string
	}{
		{in: valid},
		{in: "c2VjcmV0", wantErr: "shorter than a sealed box"},
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

// BenchmarkSeal is the cost of sealing one 64-byte value.
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
