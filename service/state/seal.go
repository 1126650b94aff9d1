package state

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
)

// Sealed pending values. An operation's pending value is stored as
//
//	sealed = 0x01 || nonce || AES-256-GCM-Seal(K, nonce, value, aad)
//
// where 0x01 is the format version, nonce is 12 random bytes, the
// ciphertext carries GCM's 16-byte tag at its end (so len(sealed) =
// 1 + 12 + len(value) + 16), and
//
//	K   = HKDF-SHA256(secret = server key, salt = none,
//	                  info = "secretbroker state v1 pending value AES-256-GCM key", 32 bytes)
//	aad = lp("secretbroker.state.v1.pending-value") || lp(operation ID) || lp(item name)
//
// with lp as in Fingerprinter. The aad binds a sealed value to its
// operation and item, so a value copied to another item or operation does
// not open. In the encoded operation (codec.go) sealed is standard base64.

const (
	sealVersion     = 0x01
	sealNonceLen    = 12
	sealOverhead    = 1 + sealNonceLen + 16
	domainPendingAD = "secretbroker.state.v1.pending-value"
)

// errSealOpen is returned when a sealed value does not authenticate: the
// key changed, or the bytes were altered.
var errSealOpen = errors.New("sealed value does not open under the current server key")

// sealer seals and opens pending values.
type sealer struct {
	aead cipher.AEAD
}

func newSealer(serverKey []byte) (*sealer, error) {
	if err := checkKey(serverKey); err != nil {
		return nil, fmt.Errorf("state: seal: %w", err)
	}
	k, err := hkdf.Key(sha256.New, serverKey, nil, infoPendingSeal, 32)
	if err != nil {
		return nil, fmt.Errorf("state: seal: derive key: %w", err)
	}
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, fmt.Errorf("state: seal: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("state: seal: %w", err)
	}
	return &sealer{aead: aead}, nil
}

func pendingAD(opID, name string) []byte {
	var b bytes.Buffer
	writeLP(&b, []byte(domainPendingAD))
	writeLP(&b, []byte(opID))
	writeLP(&b, []byte(name))
	return b.Bytes()
}

// seal seals a value for item name of operation opID.
func (s *sealer) seal(opID, name string, value []byte) []byte {
	out := make([]byte, 1+sealNonceLen, sealOverhead+len(value))
	out[0] = sealVersion
	_, _ = rand.Read(out[1:]) // crypto/rand.Read never fails (Go 1.24+).
	return s.aead.Seal(out, out[1:1+sealNonceLen], value, pendingAD(opID, name))
}

// open opens a sealed value. A malformed input wraps ErrCorrupt; one that
// does not authenticate wraps errSealOpen. Neither error holds the bytes.
func (s *sealer) open(opID, name string, sealed []byte) ([]byte, error) {
	if len(sealed) < sealOverhead {
		return nil, fmt.Errorf("sealed value: %w: %d bytes, shorter than %d", ErrCorrupt, len(sealed), sealOverhead)
	}
	if sealed[0] != sealVersion {
		return nil, fmt.Errorf("sealed value: %w: unknown format version %d", ErrCorrupt, sealed[0])
	}
	v, err := s.aead.Open(nil, sealed[1:1+sealNonceLen], sealed[1+sealNonceLen:], pendingAD(opID, name))
	if err != nil {
		return nil, fmt.Errorf("sealed value: %w", errSealOpen)
	}
	if v == nil {
		v = []byte{}
	}
	return v, nil
}
