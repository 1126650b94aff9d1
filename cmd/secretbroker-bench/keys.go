package main

import (
	"encoding/base64"
	"fmt"
)

func decodeKey(b64 string, key *[32]byte) error {
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(raw) != len(key) {
		return fmt.Errorf("the public key is not 32 base64-encoded bytes")
	}
	copy(key[:], raw)
	return nil
}

func encode(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
