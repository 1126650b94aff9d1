package state

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
)

// HKDF-SHA256 info strings. Each key the package uses is derived from the
// server key with its own info string (and no salt), so no two uses share
// a key.
const (
	infoFingerprint = "secretbroker state v1 fingerprint HMAC-SHA256 key"
	infoPendingSeal = "secretbroker state v1 pending value AES-256-GCM key"
)

// Domain tags: the first field of every fingerprinted encoding, so that a
// value and a settings encoding never collide.
const (
	domainValue    = "secretbroker.state.v1.value"
	domainSettings = "secretbroker.state.v1.settings"
	domainKeyTag   = "secretbroker.state.v1.key-tag"
)

// Fingerprint is an HMAC-SHA256 fingerprint. The zero Fingerprint means
// "none" (for example no settings for a repository secret).
type Fingerprint [sha256.Size]byte

// IsZero reports whether f is the zero ("none") fingerprint.
func (f Fingerprint) IsZero() bool { return f == Fingerprint{} }

// Equal compares two fingerprints in constant time.
func (f Fingerprint) Equal(g Fingerprint) bool {
	return subtle.ConstantTimeCompare(f[:], g[:]) == 1
}

// String returns f in lower-case hex ("" for the zero fingerprint).
func (f Fingerprint) String() string {
	if f.IsZero() {
		return ""
	}
	return hex.EncodeToString(f[:])
}

// MarshalText encodes f as String does.
func (f Fingerprint) MarshalText() ([]byte, error) { return []byte(f.String()), nil }

// UnmarshalText decodes 64 hex digits, or "" for the zero fingerprint.
func (f *Fingerprint) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*f = Fingerprint{}
		return nil
	}
	if len(b) != 2*len(f) {
		return fmt.Errorf("fingerprint: %w: want %d hex digits, have %d bytes", ErrCorrupt, 2*len(f), len(b))
	}
	var g Fingerprint
	if _, err := hex.Decode(g[:], b); err != nil {
		return fmt.Errorf("fingerprint: %w: %w", ErrCorrupt, err)
	}
	if g.IsZero() {
		return fmt.Errorf("fingerprint: %w: the zero fingerprint is written as \"\"", ErrCorrupt)
	}
	*f = g
	return nil
}

// Fingerprinter computes fingerprints under a key derived from the server
// key:
//
//	K = HKDF-SHA256(secret = server key, salt = none,
//	                info = "secretbroker state v1 fingerprint HMAC-SHA256 key", 32 bytes)
//	Value(v)             = HMAC-SHA256(K, lp("secretbroker.state.v1.value") || lp(v))
//	Settings(vis, ids)   = HMAC-SHA256(K, lp("secretbroker.state.v1.settings") || lp(vis) ||
//	                                     u64(n) || u64(id_1) || ... || u64(id_n))
//
// where lp(x) = u64(len(x)) || x, u64 is 8 bytes big-endian, and id_1 <
// ... < id_n are the selected repository IDs sorted ascending with
// duplicates removed (a selection is a set), each as its two's-complement
// 64 bits. Every field has a length or a fixed size, so no two distinct
// inputs share an encoding. A Fingerprinter is safe for concurrent use.
type Fingerprinter struct {
	key []byte
	tag string
}

// NewFingerprinter returns a Fingerprinter for the server key (Store.Key).
func NewFingerprinter(serverKey []byte) (*Fingerprinter, error) {
	if err := checkKey(serverKey); err != nil {
		return nil, fmt.Errorf("state: fingerprint: %w", err)
	}
	k, err := hkdf.Key(sha256.New, serverKey, nil, infoFingerprint, 32)
	if err != nil {
		return nil, fmt.Errorf("state: fingerprint: derive key: %w", err)
	}
	f := &Fingerprinter{key: k}
	m := hmac.New(sha256.New, k)
	writeLP(m, []byte(domainKeyTag))
	f.tag = hex.EncodeToString(m.Sum(nil)[:8])
	return f, nil
}

// KeyTag names the key f fingerprints under, without telling it: 16 hex
// digits, the first 8 bytes of HMAC-SHA256(K, lp("secretbroker.state.v1.key-tag")).
// Records keep it (Record.FingerprintKey), so that fingerprints made under
// another key are not compared with f's.
func (f *Fingerprinter) KeyTag() string { return f.tag }

// Value returns the fingerprint of a secret value.
func (f *Fingerprinter) Value(value []byte) Fingerprint {
	m := hmac.New(sha256.New, f.key)
	writeLP(m, []byte(domainValue))
	writeLP(m, value)
	return sum(m)
}

// Settings returns the fingerprint of an organization secret's visibility
// and selected repositories (in any order; duplicates count once). For
// zero settings it returns the zero fingerprint.
func (f *Fingerprinter) Settings(s Settings) Fingerprint {
	if s.IsZero() {
		return Fingerprint{}
	}
	ids := slices.Clone(s.SelectedRepositoryIDs)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	m := hmac.New(sha256.New, f.key)
	writeLP(m, []byte(domainSettings))
	writeLP(m, []byte(s.Visibility))
	writeU64(m, uint64(len(ids)))
	for _, id := range ids {
		writeU64(m, uint64(id))
	}
	return sum(m)
}

type writer interface{ Write([]byte) (int, error) }

func writeU64(w writer, n uint64) {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], n)
	_, _ = w.Write(b[:]) // a hash never fails to write
}

func writeLP(w writer, b []byte) {
	writeU64(w, uint64(len(b)))
	_, _ = w.Write(b)
}

func sum(m interface{ Sum([]byte) []byte }) Fingerprint {
	var f Fingerprint
	copy(f[:], m.Sum(nil))
	return f
}
