package identity

import (
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
)

// TestParseJWKSKeyAlgorithm: a key whose alg is one its type cannot verify
// is not usable, so a JWKS of only such keys is refused.
func TestParseJWKSKeyAlgorithm(t *testing.T) {
	ec := newECKey(t, "ec")
	ed := newEdKey(t, "ed")
	rsaKey := newRSAKey(t, "rsa", 2048)
	with := func(k keyPair, alg jose.SignatureAlgorithm) jose.JSONWebKey {
		j := k.jwk()
		j.Algorithm = string(alg)
		return j
	}
	tests := []struct {
		name   string
		key    jose.JSONWebKey
		usable bool
	}{
		{name: "P-256 for ES256", key: with(ec, jose.ES256), usable: true},
		{name: "P-256 without alg", key: with(ec, ""), usable: true},
		{name: "RSA for PS512", key: with(rsaKey, jose.PS512), usable: true},
		{name: "Ed25519 for EdDSA", key: with(ed, jose.EdDSA), usable: true},
		{name: "P-256 for RS256", key: with(ec, jose.RS256)},
		{name: "P-256 for ES384", key: with(ec, jose.ES384)},
		{name: "P-256 for ES512", key: with(ec, jose.ES512)},
		{name: "Ed25519 for PS256", key: with(ed, jose.PS256)},
		{name: "RSA for EdDSA", key: with(rsaKey, jose.EdDSA)},
		{name: "RSA for ES256", key: with(rsaKey, jose.ES256)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys, err := parseJWKS(jwksOf(t, tt.key))
			if tt.usable {
				if err != nil || len(keys) != 1 {
					t.Fatalf("parseJWKS = %d keys, %v; want the key", len(keys), err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), "no usable signing key") {
				t.Fatalf("parseJWKS = %d keys, %v; want no usable signing key", len(keys), err)
			}
		})
	}
}
