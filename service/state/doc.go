// Package state owns the broker's memory of what it wrote: one Record per
// secret it wrote (fingerprints of the value and of an organization
// secret's settings, the key_id it sealed with, GitHub's updated_at, the
// owner label, the operation whose item wrote it), the long-running operations (SyncSecrets and
// BatchPutSecrets with async set) with the pending work needed to resume
// them after a restart, and the server key that fingerprints and protects
// that state.
//
// # What is stored
//
// A Record is keyed by the secret's resource name, as the service formats
// it (service/names.go): "orgs/acme/actions/secrets/TOKEN",
// "repos/o/r/agents/secrets/X", "repos/o/r/environments/prod%2Feu/secrets/X".
// ListRecords(parent) returns exactly the records whose name is
// parent + "/secrets/" + NAME, by a prefix scan: "orgs/acme/actions" never
// sees "orgs/acme2/actions" or "orgs/acme/agents". The store never holds a
// value: only HMAC fingerprints (see Fingerprinter).
//
// An Operation follows AIP-151 (google.longrunning.Operation): an ID
// ("operations/{ID}" is its resource name), its caller, done, an error
// when it ended badly, progress counts as metadata, per-item results, and
// Pending: the items still to do, each with its value. Pending values are
// sealed with AES-256-GCM before they reach any store (format in seal.go),
// under a key derived from the server key with HKDF-SHA256, so a dump of
// the store (the bbolt file, a Redis RDB) shows no value. When the server
// key changes (another --state-hmac-key-file), sealed values cannot be
// opened any more: the operation still decodes, and each such item has
// ValueLost set so the service can fail it instead of writing garbage.
//
// # The server key
//
// Store.Key returns the key (at least 32 bytes). With
// --state-hmac-key-file the operator's file is read as raw bytes
// (ReadKeyFile) and passed in Options.HMACKey; without it a random key is
// generated once and kept in the store, so a file store keeps it across
// restarts and replicas sharing a Redis store share it. A key kept in the
// store sits beside the sealed values it protects: sealing then protects
// against a value showing up in a dump or a grep, not against someone who
// holds the whole store; an operator who wants the latter gives a key file.
//
// Losing the state costs writes, never correctness: without a record the
// broker writes.
//
// A done operation is kept OperationRetention (7 days) after it is stored
// done, then is gone as if it never was (ErrNotFound); every store deletes
// expired ones a bounded batch at a time as operations are written and
// listed. Operations not done never expire.
//
// # Implementations
//
// Memory (the default) keeps encoded records in maps, one per parent, and
// is lost on exit. Bolt keeps them in a bbolt file under --state-dir, one
// bucket per kind ("meta", "records", "operations", "operations_by_caller",
// and "operations_expires_at" and "operations_expiry" for retention),
// with keys that sort so that a parent's records and a caller's operations
// are contiguous; a second process opening the same file fails with
// ErrLocked after Options.LockTimeout instead of hanging.
//
// Redis (--redis-url without --state-dir) is shared by the replicas: a
// hash per parent ("{prefix}records:{parent}", field NAME, value the
// encoded Record) gives GetRecord/PutRecord/DeleteRecord as HGET/HSET/HDEL
// and ListRecords as one HGETALL; operations are strings "{prefix}op:{ID}"
// with sorted sets for all, the not-done ones and each caller's (score 0,
// member ID, ordered by ZRANGEBYLEX) for ListOperations, and
// "{prefix}ops:expiry" (score the expiry time) for the done ones, whose
// keys expire OperationRetention after they end; every operation
// write is WATCH/GET/MULTI/SET/EXEC, retried on conflict (which is why
// UpdateOperation's fn may run more than once); Key is
// SET "{prefix}hmac-key" NX followed by GET, so replicas agree on one key,
// and writes put it back when Redis lost it. A Redis outage is an error
// from every call within its timeout, never ErrNotFound.
// Encoded records and operations are the same bytes in every store
// (codec.go), so a Redis store shares the codec and the contract tests.
package state
