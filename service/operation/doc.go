// Package operation owns the engine of the broker's long-running
// operations (AIP-151, google.longrunning.Operation): SyncSecrets and
// BatchPutSecrets with async set. It persists an accepted operation before
// acknowledging it, runs its items in the background at a bounded
// concurrency, records progress and per-item results in the state store
// (service/state), estimates the completion time, cancels, waits (without
// polling for an operation it runs; reading every OtherRunnerPoll one
// another replica runs), resumes the operations a restarted broker left
// unfinished, and stops cleanly on shutdown.
//
// It does not decide what an item does: the service passes an Exec
// function that writes (or deletes, or skips) one item and returns its
// result; Exec paces itself (the pacer), so this package never sleeps
// between items. It does not decide who may see an operation either: the
// service passes a Visible predicate (the caller, or callers its policy
// lets read operations) to Get, List, Cancel and Wait. An optional Finish
// callback tells the service when this process stops running an
// operation, to flush what it kept for it.
//
// # Items, persistence and crashes
//
// One operation's items run one after the other, in order. Running them
// concurrently would not make an operation faster (every write waits for
// the same credential's pacer), would let items finish out of order, and
// would widen what a crash can repeat. Items of several operations run at
// once, up to Options.MaxRunning; the others wait for a slot, persisted.
// Operations take turns: while another operation waits for a slot, one
// that holds a slot gives it up after each item and queues again, so a
// caller's long operations cannot keep another's short one from starting
// (it waits for one item of each, at most).
//
// Results are recorded in groups of at most Options.FlushEvery items, and
// at least every Options.FlushInterval: a group's results are appended and
// its items removed from Pending in one store update, so Results and
// Pending never overlap and a crash repeats at most one group plus the
// item in flight. Every step is idempotent (a write of the desired value,
// a delete), so repeating an item is safe. A graceful Close records every
// finished item; an item interrupted by Close is left pending and runs
// again on Resume.
//
// # Leases: runners sharing a store
//
// Replicas with the state in Redis share the operations. Each Runner has
// a random ID, and an operation it runs is leased to it: Start stores the
// operation with Runner set to that ID and LeaseUntil Options.Lease ahead;
// a run first claims the operation in one atomic update (it does not run
// one whose lease another runner holds and has not ended: it logs that at
// DEBUG and leaves it, without calling Finish), renews the lease every
// Lease/3 while it runs (also while an item waits on the pacer), and
// checks at every update of its progress that it still holds it. A runner
// that finds another one took the operation over (its own lease had
// ended), or whose lease ended while the store could not be reached,
// stops running it (INFO): the item in flight may thus run twice, which
// is safe. Resume skips operations another runner holds; called every
// Lease, it takes over the operations of a runner that died within about
// two leases. Close releases the leases of the operations it pauses
// (LeaseUntil zero), so another runner's next Resume takes them at once.
// A runner on a store no other process uses (Options.Sole: a file its
// process holds locked) takes over another runner's lease at once, since
// that runner's process is dead.
// A CancelOperation answered by a replica that does not run the
// operation marks it, and its runner stops it at its next renewal.
// Leases compare the replicas' clocks: they should agree to well within
// a lease.
//
// A finished operation keeps its Results and drops Pending, so no sealed
// value outlives it in the store's live data. One that ended with items
// it did not run (cancelled) has a result for each of them all the same,
// after the others (state.ItemResult.NotRun, codes.Canceled, "not run: "
// and why): one result per item. The storage under it may
// keep the old bytes a while (bbolt's freed pages until it reuses them, a
// Redis append-only file until it is rewritten): they stay sealed, and
// only the server key opens them (state's package doc, "The server key").
// Operations returned by this package
// never carry a value: Pending items keep their names with Value nil.
package operation
