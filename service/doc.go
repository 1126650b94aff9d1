// Package service is the broker's logic behind secretbroker.v1.SecretService:
// it parses and validates resource names and requests, caches each scope's
// public key, seals plaintext values with libsodium sealed boxes, preserves
// what GitHub would otherwise clear, and maps GitHub's errors to gRPC codes
// in one place. It remembers what it wrote in a state store (record.go,
// package state) to skip unchanged writes, detect drift (DetectDrift) and
// make a scope hold a set of values with ownership (SyncSecrets, sync.go,
// whose per-item Executor an operation runner calls). It runs async
// SyncSecrets and BatchPutSecrets as long-running operations on one
// operation.Runner per Server and serves them (GetOperation, ListOperations,
// CancelOperation, WaitOperation; operations.go). It talks to GitHub only
// through the Upstream interface.
package service
