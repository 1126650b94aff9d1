package service

import (
	"encoding/base64"
	"fmt"
	"strings"

	"golang.org/x/crypto/nacl/box"

	"github.com/secretbroker/secretbroker/service/sealedbox"
)

// maxValueBytes is GitHub's limit on a secret's value: 48 KB.
const maxValueBytes = 48 * 1024

// seal encrypts plaintext for the holder of key with a libsodium sealed box
// (crypto_box_seal) and returns it base64 encoded, as GitHub expects. The
// bytes are box.SealAnonymous's format; package sealedbox computes them at
// less than half its cost (one X25519 ladder instead of three).
func seal(key *[32]byte, plaintext []byte) (string, error) {
	value, err := sealedbox.Base64(key, plaintext, nil)
	if err != nil {
		return "", fmt.Errorf("sealing a value: %w", err)
	}
	return value, nil
}

// checkSealed checks a caller-sealed value: standard base64 (GitHub's
// pattern), and the size of a sealed box of 1 byte to 48 KB: a value is
// never empty, sealed by the caller or by the broker.
func checkSealed(field, encoded string) error {
	// Go's decoder skips CR and LF even in strict mode; GitHub's pattern
	// for encrypted_value does not.
	raw, err := base64.StdEncoding.Strict().DecodeString(encoded)
	if err != nil || strings.ContainsAny(encoded, "\r\n") {
		return invalidArg(field, "must be standard base64 (RFC 4648, with padding)")
	}
	if len(raw) < box.AnonymousOverhead {
		return invalidArg(field, "is %d bytes, shorter than a sealed box (%d bytes of overhead)", len(raw), box.AnonymousOverhead)
	}
	if len(raw) == box.AnonymousOverhead {
		return invalidArg(field, "is a sealed box of an empty value; a value is 1 byte to %d bytes (48 KB)", maxValueBytes)
	}
	if len(raw) > maxValueBytes+box.AnonymousOverhead {
		return invalidArg(field, "seals more than %d bytes, GitHub's limit on a secret value", maxValueBytes)
	}
	return nil
}
