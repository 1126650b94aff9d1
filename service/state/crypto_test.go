package state

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"slices"
	"testing"
)

var sealTestKey = bytes.Repeat([]byte{0x5a}, 32)

// lpRef is the test's own length-prefixed encoding, written from the
// documentation rather than shared with the code.
func lpRef(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = binary.BigEndian.AppendUint64(out, uint64(len(p)))
		out = append(out, p...)
	}
	return out
}

func TestFingerprintKnownAnswer(t *testing.T) {
	f, err := NewFingerprinter(sealTestKey)
	if err != nil {
		t.Fatal(err)
	}
	k, err := hkdf.Key(sha256.New, sealTestKey, nil, "secretbroker state v1 fingerprint HMAC-SHA256 key", 32)
	if err != nil {
		t.Fatal(err)
	}
	mac := func(msg []byte) Fingerprint {
		m := hmac.New(sha256.New, k)
		m.Write(msg)
		return Fingerprint(m.Sum(nil))
	}
	value := []byte("hunter2")
	if got, want := f.Value(value), mac(lpRef([]byte("secretbroker.state.v1.value"), value)); got != want {
		t.Errorf("Value = %s, want %s", got, want)
	}
	msg := lpRef([]byte("secretbroker.state.v1.settings"), []byte("selected"))
	msg = binary.BigEndian.AppendUint64(msg, 3)
	for _, id := range []int64{-1, 7, 42} {
		msg = binary.BigEndian.AppendUint64(msg, uint64(id))
	}
	got := f.Settings(Settings{Visibility: "selected", SelectedRepositoryIDs: []int64{42, 7, -1, 42}})
	if want := mac(msg); got != want {
		t.Errorf("Settings = %s, want %s", got, want)
	}
	tag := mac(lpRef([]byte("secretbroker.state.v1.key-tag")))
	if got, want := f.KeyTag(), tag.String()[:16]; got != want {
		t.Errorf("KeyTag = %s, want %s", got, want)
	}
	other, err := NewFingerprinter(bytes.Repeat([]byte{7}, MinKeyLen))
	if err != nil {
		t.Fatal(err)
	}
	if other.KeyTag() == f.KeyTag() {
		t.Errorf("two keys share the tag %s", f.KeyTag())
	}
}

func TestFingerprintProperties(t *testing.T) {
	f, err := NewFingerprinter(sealTestKey)
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewFingerprinter(bytes.Repeat([]byte{0x5b}, 32))
	if err != nil {
		t.Fatal(err)
	}
	sel := func(vis string, ids ...int64) Settings {
		return Settings{Visibility: vis, SelectedRepositoryIDs: ids}
	}
	tests := []struct {
		name  string
		a, b  Fingerprint
		equal bool
	}{
		{"same value", f.Value([]byte("v")), f.Value([]byte("v")), true},
		{"other value", f.Value([]byte("v")), f.Value([]byte("w")), false},
		{"empty and nil value", f.Value(nil), f.Value([]byte{}), true},
		{"other key", f.Value([]byte("v")), other.Value([]byte("v")), false},
		{"selection order", f.Settings(sel("selected", 1, 2, 3)), f.Settings(sel("selected", 3, 1, 2)), true},
		{"selection duplicates", f.Settings(sel("selected", 1, 2)), f.Settings(sel("selected", 2, 1, 2)), true},
		{"selection differs", f.Settings(sel("selected", 1, 2)), f.Settings(sel("selected", 1, 3)), false},
		{"selection subset", f.Settings(sel("selected", 1, 2)), f.Settings(sel("selected", 1)), false},
		{"visibility", f.Settings(sel("all")), f.Settings(sel("private")), false},
		{"visibility with selection", f.Settings(sel("selected")), f.Settings(sel("selected", 0)), false},
		// lp makes the visibility's end unambiguous: "a" + id bytes
		// is not "a\x00..." with fewer ids.
		{"visibility bytes vs ids", f.Settings(sel("a", 1)), f.Settings(sel("a\x00\x00\x00\x00\x00\x00\x00\x01")), false},
		// Domain separation: a value equal to a settings encoding.
		{"value vs settings", f.Value(lpRef([]byte("all"))[0:]), f.Settings(sel("all")), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.a.Equal(tt.b); got != tt.equal {
				t.Errorf("Equal = %v, want %v", got, tt.equal)
			}
			if tt.a.IsZero() || tt.b.IsZero() {
				t.Error("a fingerprint of something is zero")
			}
		})
	}
	if !f.Settings(Settings{}).IsZero() {
		t.Error("zero settings have a fingerprint")
	}
	ids := []int64{3, 1, 2}
	f.Settings(sel("selected", ids...))
	if !slices.Equal(ids, []int64{3, 1, 2}) {
		t.Error("Settings sorted the caller's slice")
	}
}

func TestFingerprintText(t *testing.T) {
	f, _ := NewFingerprinter(sealTestKey)
	a := f.Value([]byte("v"))
	b, err := a.MarshalText()
	if err != nil || len(b) != 64 {
		t.Fatalf("MarshalText = %q, %v", b, err)
	}
	var back Fingerprint
	if err := back.UnmarshalText(b); err != nil || back != a {
		t.Fatalf("UnmarshalText: %v, %s", err, back)
	}
	if b, _ := (Fingerprint{}).MarshalText(); len(b) != 0 {
		t.Errorf("zero fingerprint marshals to %q", b)
	}
	for _, bad := range []string{"ab", string(bytes.Repeat([]byte("g"), 64)), string(bytes.Repeat([]byte("0"), 64)), string(b) + "00"} {
		if err := back.UnmarshalText([]byte(bad)); !errors.Is(err, ErrCorrupt) {
			t.Errorf("UnmarshalText(%q): %v, want ErrCorrupt", bad, err)
		}
	}
}

func TestNewFingerprinterShortKey(t *testing.T) {
	if _, err := NewFingerprinter(make([]byte, 31)); !errors.Is(err, ErrBadKey) {
		t.Fatalf("31-byte key: %v, want ErrBadKey", err)
	}
}

// TestSealFormat opens a sealed value with the test's own reading of the
// documented format.
func TestSealFormat(t *testing.T) {
	s, err := newSealer(sealTestKey)
	if err != nil {
		t.Fatal(err)
	}
	value := []byte("the value")
	sealed := s.seal("op1", "orgs/acme/actions/secrets/X", value)
	if sealed[0] != 0x01 {
		t.Fatalf("version byte %#x", sealed[0])
	}
	if len(sealed) != 1+12+len(value)+16 {
		t.Fatalf("sealed is %d bytes, want %d", len(sealed), 1+12+len(value)+16)
	}
	k, err := hkdf.Key(sha256.New, sealTestKey, nil, "secretbroker state v1 pending value AES-256-GCM key", 32)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := aes.NewCipher(k)
	gcm, _ := cipher.NewGCM(block)
	ad := lpRef([]byte("secretbroker.state.v1.pending-value"), []byte("op1"), []byte("orgs/acme/actions/secrets/X"))
	got, err := gcm.Open(nil, sealed[1:13], sealed[13:], ad)
	if err != nil {
		t.Fatalf("the documented format does not open: %v", err)
	}
	if !bytes.Equal(got, value) {
		t.Fatalf("opened %q", got)
	}
	if again := s.seal("op1", "orgs/acme/actions/secrets/X", value); bytes.Equal(again[1:13], sealed[1:13]) {
		t.Fatal("two seals used the same nonce")
	}
}

func TestSealOpen(t *testing.T) {
	s, _ := newSealer(sealTestKey)
	other, _ := newSealer(bytes.Repeat([]byte{1}, 32))
	const op, name = "op1", "orgs/acme/actions/secrets/X"
	sealed := s.seal(op, name, []byte("v"))
	flip := func(i int) []byte {
		b := slices.Clone(sealed)
		b[i] ^= 1
		return b
	}
	tests := []struct {
		name    string
		s       *sealer
		op, it  string
		sealed  []byte
		want    []byte
		wantErr error
	}{
		{"round trip", s, op, name, sealed, []byte("v"), nil},
		{"empty value", s, op, name, s.seal(op, name, nil), []byte{}, nil},
		{"other key", other, op, name, sealed, nil, errSealOpen},
		{"other operation", s, "op2", name, sealed, nil, errSealOpen},
		{"other item", s, op, name + "2", sealed, nil, errSealOpen},
		{"nonce altered", s, op, name, flip(1), nil, errSealOpen},
		{"ciphertext altered", s, op, name, flip(13), nil, errSealOpen},
		{"tag altered", s, op, name, flip(len(sealed) - 1), nil, errSealOpen},
		{"version", s, op, name, flip(0), nil, ErrCorrupt},
		{"short", s, op, name, sealed[:sealOverhead-1], nil, ErrCorrupt},
		{"empty", s, op, name, nil, nil, ErrCorrupt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.s.open(tt.op, tt.it, tt.sealed)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if tt.want != nil && (got == nil || !bytes.Equal(got, tt.want)) {
				t.Fatalf("opened %q, want %q", got, tt.want)
			}
		})
	}
}
