// Package service is the broker's logic behind secretbroker.v1.SecretService:
// it parses and validates resource names and requests, caches each scope's
// public key, seals plaintext values with libsodium sealed boxes, preserves
// what GitHub would otherwise clear, and maps GitHub's errors to gRPC codes
// in one place. It talks to GitHub only through the Upstream interface.
package service
