package operation

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/secretbroker/secretbroker/service/state"
)

// Exec runs one item of op and returns its result. op is a copy without
// Results and Pending (its ID, Caller, Kind, Parent, Owner, Force and
// Prune are set); item carries the value to write. Exec paces itself and
// must return promptly when ctx ends: ctx ends when the runner is closed
// without time to finish, or when the operation is cancelled. Its result's
// Name and Sent are set to item's; its Message must never hold a value.
type Exec func(ctx context.Context, op *state.Operation, item state.PendingItem) state.ItemResult

// Estimate returns how long the remaining items of an operation will take
// (the service derives it from the pacer's write interval and budget). It
// must be fast and must not block.
type Estimate func(remaining int) time.Duration

// Finish is called once each time this process stops running an
// operation (done, cancelled, paused by Close, or its progress could not
// be recorded), after its last item returned and before Close can return:
// the service flushes per-operation state there (its executor's read-back
// of what was written). ctx is not cancelled by a cancel of the operation;
// it is cancelled when Close ran out of time. It must not block for long.
type Finish func(ctx context.Context, id string)

// Recorded is called each time the store has recorded the results of some
// of op's items, with those results (op is the operation as recorded).
// Each item's result is passed once, when it is recorded: an item whose
// result a crash lost runs again and is passed then, and an item that
// ended without running (its value lost) or whose run panicked is passed
// too. The service counts its batch metrics there. It must be fast and
// must not block.
type Recorded func(ctx context.Context, op *state.Operation, results []state.ItemResult)

// Visible reports whether the calling identity may see op. The service
// passes one per request: the caller itself, and callers its policy lets
// read operations. A nil Visible lets everything through (internal use).
type Visible func(op *state.Operation) bool

// CallerOnly returns a Visible that shows a caller its own operations.
func CallerOnly(caller string) Visible {
	return func(op *state.Operation) bool { return op.Caller == caller }
}

// Defaults for Options.
const (
	DefaultMaxRunning    = 4
	DefaultFlushEvery    = 10
	DefaultFlushInterval = time.Second
	DefaultMaxWait       = time.Minute
	// DefaultMaxPerCaller bounds the unfinished operations of one caller
	// in a runner (Options.MaxPerCaller): each holds a goroutine, and
	// its items' values in the store, until it ends, and with GitHub's
	// 500 writes an hour a caller starting operations in a loop would
	// add them far faster than they end. 100 operations of up to 1,000
	// items are days of GitHub's content budget.
	DefaultMaxPerCaller = 100
)

// LostValueMessage is the message of an item whose value could not be
// opened after a restart (the server key changed).
const LostValueMessage = "value could not be recovered after a restart (the state key changed); resend"

// Errors, tested with errors.Is. A missing operation, or one the caller
// may not see, is an error wrapping state.ErrNotFound; a bad argument
// wraps state.ErrInvalid.
var (
	// ErrClosed: the runner was closed and starts nothing more.
	ErrClosed = errors.New("operation runner is closed")
	// ErrAlreadyExists: Start was given the ID of a stored operation.
	ErrAlreadyExists = errors.New("operation already exists")
	// ErrTooMany: Start was given an operation whose caller has
	// Options.MaxPerCaller unfinished operations in the runner already.
	ErrTooMany = errors.New("the caller has too many unfinished operations")
)

// ErrCancelRequested is the cause with which an operation's context ends
// when CancelOperation asks it to stop (context.Cause of the context Exec
// is given). An Exec that tells a cancelled item whose write may have
// taken effect from one the runner stopped reads it: the first is a
// result, the second runs again after a restart (Interrupted).
var ErrCancelRequested = errors.New("operation cancelled")

// Options configure a Runner.
type Options struct {
	// Store keeps the operations (required).
	Store state.Operations
	// Exec runs one item (required).
	Exec Exec
	// Estimate, when set, fills Progress.EstimatedCompletion.
	Estimate Estimate
	// Finish, when set, is called when this process stops running an
	// operation (see Finish).
	Finish Finish
	// Recorded, when set, is called with the results the store recorded
	// (see Recorded).
	Recorded Recorded
	// Logger receives the runner's logs; nil discards them.
	Logger *slog.Logger
	// MaxRunning bounds how many operations run at once; zero means
	// DefaultMaxRunning.
	MaxRunning int
	// FlushEvery bounds how many finished items may be unrecorded at once
	// (what a crash can repeat); zero means DefaultFlushEvery, 1 records
	// every item.
	FlushEvery int
	// FlushInterval bounds how long a finished item may stay unrecorded,
	// also while the next item waits for the pacer: the items finished
	// are recorded FlushInterval after the previous record at the latest.
	// Zero means DefaultFlushInterval.
	FlushInterval time.Duration
	// MaxWait bounds Wait's timeout, which defaults to it; zero means
	// DefaultMaxWait.
	MaxWait time.Duration
	// MaxPerCaller bounds how many unfinished operations one caller
	// (state.Operation.Caller) may have that this runner runs or queues:
	// Start refuses more with ErrTooMany. The operations of
	// unauthenticated callers (Caller empty) are counted by the address
	// they came from (state.Operation.ClientAddr), never together with
	// an authenticated caller's, whatever its name. Operations Resume
	// takes up count, and are never refused. Zero means
	// DefaultMaxPerCaller.
	MaxPerCaller int
	// Lease is how long an operation stays this runner's after its last
	// renewal: runners sharing a store (replicas on one Redis) do not run
	// an operation another runner holds, and take one over when its
	// lease ends (its runner died). A running operation's lease is
	// renewed every Lease/3. Zero means DefaultLease.
	Lease time.Duration
	// Volatile says Store lives in this process's memory: an operation
	// Close cuts is lost, not resumed after a restart, and the log says
	// so (at WARN).
	Volatile bool
	// Sole says no other live runner uses Store while this one does: a
	// file that one process holds locked (state.Bolt). An operation
	// another runner holds the lease on is then a dead process's (killed
	// before it could release it), and Resume and a run take it over at
	// once instead of waiting for the lease to end. Never set it for a
	// store that other processes share (Redis): their runners may be
	// alive.
	Sole bool
}

// Runner runs long-running operations. Its methods are safe for
// concurrent use.
type Runner struct {
	store         state.Operations
	exec          Exec
	estimate      Estimate
	onFinish      Finish
	onRecorded    Recorded
	log           *slog.Logger
	slots         chan struct{}
	waiting       atomic.Int64 // runs waiting for a slot (see run: turns)
	flushEvery    int
	flushInterval time.Duration
	maxWait       time.Duration
	id            string        // this runner's ID (state.Operation.Runner)
	lease         time.Duration // Options.Lease
	volatile      bool          // Options.Volatile
	sole          bool          // Options.Sole

	// ctx is the runner's lifetime: every operation runs under it, and
	// Close cancels it when its own context ends first.
	ctx  context.Context
	stop context.CancelFunc
	// closing is closed by Close: no item starts after it.
	closing chan struct{}
	wg      sync.WaitGroup

	// corrupt holds the IDs of stored operations that do not decode,
	// logged at ERROR once (see reportCorrupt).
	corruptMu sync.Mutex
	corrupt   map[string]bool

	mu           sync.Mutex
	closed       bool
	running      map[string]context.CancelCauseFunc // operations this process runs or queues
	callers      map[string]boundKey                // the bound's key of each of running, by ID
	byCaller     map[boundKey]int                   // running's operations by the bound's key; none at 0
	maxPerCaller int
	watches      map[string]*watch // Wait's notifications
	// unstarted holds the operations whose Start failed but which the
	// store may hold all the same (see withdraw), by ID, with their
	// CreateTime: Resume withdraws them instead of running them.
	unstarted map[string]time.Time
}

// New returns a Runner with a new random ID. Call Resume at start-up
// (and every Lease when other runners share the store, to take over the
// operations of one that died) and Close at shutdown.
func New(opts Options) (*Runner, error) {
	if opts.Store == nil || opts.Exec == nil {
		return nil, fmt.Errorf("operation: new runner: %w: Store and Exec are required", state.ErrInvalid)
	}
	if opts.MaxRunning < 0 || opts.FlushEvery < 0 || opts.FlushInterval < 0 || opts.MaxWait < 0 || opts.Lease < 0 || opts.MaxPerCaller < 0 {
		return nil, fmt.Errorf("operation: new runner: %w: negative option", state.ErrInvalid)
	}
	r := &Runner{
		store:         opts.Store,
		exec:          opts.Exec,
		estimate:      opts.Estimate,
		onFinish:      opts.Finish,
		onRecorded:    opts.Recorded,
		log:           opts.Logger,
		volatile:      opts.Volatile,
		sole:          opts.Sole,
		slots:         make(chan struct{}, orDefault(opts.MaxRunning, DefaultMaxRunning)),
		flushEvery:    orDefault(opts.FlushEvery, DefaultFlushEvery),
		flushInterval: orDefault(opts.FlushInterval, DefaultFlushInterval),
		maxWait:       orDefault(opts.MaxWait, DefaultMaxWait),
		id:            newRunnerID(),
		lease:         orDefault(opts.Lease, DefaultLease),
		closing:       make(chan struct{}),
		running:       map[string]context.CancelCauseFunc{},
		callers:       map[string]boundKey{},
		byCaller:      map[boundKey]int{},
		maxPerCaller:  orDefault(opts.MaxPerCaller, DefaultMaxPerCaller),
		corrupt:       map[string]bool{},
		watches:       map[string]*watch{},
		unstarted:     map[string]time.Time{},
	}
	if r.log == nil {
		r.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	r.ctx, r.stop = context.WithCancel(context.Background())
	return r, nil
}

// orDefault returns v, or def when v is zero.
func orDefault[T int | time.Duration](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

// Start persists op as a new, not done operation and runs it in the
// background, detached from ctx (which bounds only the persisting). When
// Start returns nil the operation is stored: a crash after it is resumed
// by Resume. When it returns an error nothing runs: a store that kept the
// operation all the same (a Redis transaction that ran, its answer lost)
// gets it ended at once, or by the next Resume when the store cannot be
// reached then, done with codes.Unavailable and no item run.
//
// op.ID is generated (state.NewOperationID) when empty; an ID already
// stored is refused with ErrAlreadyExists. Results may hold items the
// caller decided without running them (they count towards Total and the
// counts); Pending holds the items to run. Start sets CreateTime,
// UpdateTime, Done=false, CancelRequested=false, Error=nil and the
// metadata (Total = len(Results)+len(Pending), Remaining = len(Pending)),
// and gives this runner the operation's lease (Runner, LeaseUntil).
// The caller's op is not modified. The returned operation carries no value.
func (r *Runner) Start(ctx context.Context, op *state.Operation) (*state.Operation, error) {
	if op == nil {
		return nil, fmt.Errorf("operation: start: %w: nil operation", state.ErrInvalid)
	}
	now := time.Now()
	o := *op
	o.Results = slices.Clone(op.Results)
	o.Pending = slices.Clone(op.Pending)
	if o.ID == "" {
		o.ID = state.NewOperationID(now)
	} else if _, err := r.store.GetOperation(ctx, o.ID); err == nil {
		return nil, fmt.Errorf("operation: start %s: %w", o.ID, ErrAlreadyExists)
	} else if !errors.Is(err, state.ErrNotFound) {
		return nil, fmt.Errorf("operation: start %s: %w", o.ID, err)
	}
	o.CreateTime, o.UpdateTime = now, now
	o.Done, o.CancelRequested, o.Error = false, false, nil
	o.Metadata = state.Progress{Total: len(o.Results) + len(o.Pending)}
	o.Runner, o.LeaseUntil = r.id, now.Add(r.lease)
	r.progress(&o, now)

	opCtx, err := r.track(o.ID, boundKeyOf(&o), true)
	if err != nil {
		return nil, fmt.Errorf("operation: start %s: %w", o.ID, err)
	}
	if err := r.store.PutOperation(ctx, &o); err != nil {
		// A store may have kept what it failed to acknowledge (a Redis
		// transaction that ran, its answer lost): the caller is told the
		// operation was not started, so it must never run. It stays
		// tracked meanwhile, so that no Resume of this runner runs it.
		r.withdraw(ctx, o.ID, now)
		r.untrack(o.ID)
		return nil, fmt.Errorf("operation: start %s: %w", o.ID, err)
	}
	r.log.InfoContext(ctx, "operation started", "operation", o.ID, "kind", string(o.Kind),
		"caller", o.Caller, "total", o.Metadata.Total, "pending", len(o.Pending))
	go r.run(opCtx, o.ID)
	return redact(&o), nil
}

// Resume runs every stored operation that is not done, that this runner
// is not running yet, and whose lease no other runner holds (a lease
// ends at LeaseUntil, or when its runner's Close released it): call it
// at start-up, after New, and again every Lease while other runners
// share the store, to take over the operations of a runner that died.
// Items already recorded are not run again; an item whose value could
// not be opened (state.PendingItem.ValueLost) fails with codes.DataLoss
// and LostValueMessage; an operation whose cancellation was requested
// ends cancelled. A stored operation that does not decode (damaged, or
// written in a newer broker's format before a rollback) is logged at
// ERROR and left stored, not run; the others are resumed. It returns how
// many operations it resumed (one another runner claims between the
// listing and the run is then left to it).
// On a closed runner it returns an error wrapping ErrClosed.
func (r *Runner) Resume(ctx context.Context) (int, error) {
	const page = 100
	n := 0
	r.mu.Lock()
	closed := r.closed
	r.mu.Unlock()
	if closed {
		return 0, fmt.Errorf("operation: resume: %w", ErrClosed)
	}
	r.withdrawUnstarted(ctx)
	f := state.OperationFilter{NotDone: true, Limit: page, Corrupt: r.reportCorrupt(ctx)}
	for {
		ops, err := r.store.ListOperations(ctx, f)
		if err != nil {
			return n, fmt.Errorf("operation: resume: %w", err)
		}
		for _, op := range ops {
			r.mu.Lock()
			_, busy := r.running[op.ID]
			_, unstarted := r.unstarted[op.ID]
			r.mu.Unlock()
			if busy || unstarted {
				continue
			}
			if r.heldByOther(op, time.Now()) {
				r.log.DebugContext(ctx, "operation not resumed: another runner holds its lease", "operation", op.ID,
					"runner", op.Runner, "lease_until", op.LeaseUntil)
				continue
			}
			opCtx, err := r.track(op.ID, boundKeyOf(op), false)
			if err != nil {
				return n, fmt.Errorf("operation: resume %s: %w", op.ID, err)
			}
			r.log.InfoContext(ctx, "operation resumed", "operation", op.ID, "kind", string(op.Kind),
				"caller", op.Caller, "remaining", len(op.Pending), "finished", len(op.Results))
			go r.run(opCtx, op.ID)
			n++
		}
		if len(ops) < page {
			return n, nil
		}
		f.After = ops[len(ops)-1].ID
	}
}

// reportCorrupt returns a state.OperationFilter.Corrupt that logs each
// stored operation that does not decode: by its ID and the decode error
// (the stored bytes hold sealed values only, and the error none of
// them). It stays stored, neither run nor listed, until an operator
// deletes it or runs the broker version that wrote it. Resume runs every
// Lease with a shared store: each is logged at ERROR once per runner,
// then at DEBUG.
func (r *Runner) reportCorrupt(ctx context.Context) func(id string, err error) {
	return func(id string, err error) {
		r.corruptMu.Lock()
		seen := r.corrupt[id]
		r.corrupt[id] = true
		r.corruptMu.Unlock()
		level := slog.LevelError
		if seen {
			level = slog.LevelDebug
		}
		r.log.Log(ctx, level, "stored operation does not decode (damaged, or written by a newer broker version): not run or listed; delete it from the state store, or run the broker version that wrote it",
			"operation", id, "error", err)
	}
}

// Close stops the runner: no item starts after it is called and Start
// fails with ErrClosed. It waits for the items in flight to finish and be
// recorded; when ctx ends first it cancels them (their results are
// dropped, so they run again on Resume), waits for them to return, and
// returns ctx's error. Unfinished operations stay stored, not done, for
// the next Resume, with this runner's lease released (LeaseUntil zero),
// so another runner's next Resume takes them over at once. Close does
// not close the store.
func (r *Runner) Close(ctx context.Context) error {
	r.mu.Lock()
	if !r.closed {
		r.closed = true
		close(r.closing)
	}
	r.mu.Unlock()
	done := make(chan struct{})
	go func() {
		r.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		r.stop()
		return nil
	case <-ctx.Done():
		r.stop()
		<-done
		return fmt.Errorf("operation: close: %w", context.Cause(ctx))
	}
}

// boundKey is what the bound on one caller's unfinished operations
// (Options.MaxPerCaller) counts an operation under: its caller, or, for
// an unauthenticated caller's (Caller empty), the address its call came
// from. The two never mix: an address is never counted with a caller
// named like it.
type boundKey struct {
	caller string // the authenticated caller; "" for an unauthenticated one
	addr   string // an unauthenticated caller's address; "" otherwise
}

// boundKeyOf returns the key op counts under in the bound on one
// caller's unfinished operations. An operation stored before
// ClientAddr was kept counts with the other unauthenticated ones of no
// known address.
func boundKeyOf(op *state.Operation) boundKey {
	if op.Caller != "" {
		return boundKey{caller: op.Caller}
	}
	return boundKey{addr: op.ClientAddr}
}

// track registers an operation that this process runs, counted under
// caller in the bound on one caller's unfinished operations, and
// returns its context, which Cancel ends with ErrCancelRequested. With
// bounded, it refuses an operation when caller has maxPerCaller already
// (ErrTooMany).
func (r *Runner) track(id string, caller boundKey, bounded bool) (context.Context, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	if _, ok := r.running[id]; ok {
		return nil, fmt.Errorf("%w: already running", ErrAlreadyExists)
	}
	if bounded && r.byCaller[caller] >= r.maxPerCaller {
		return nil, fmt.Errorf("%w: %d, at most %d", ErrTooMany, r.byCaller[caller], r.maxPerCaller)
	}
	ctx, cancel := context.WithCancelCause(r.ctx)
	r.running[id] = cancel
	r.callers[id] = caller
	r.byCaller[caller]++
	r.wg.Add(1)
	return ctx, nil
}

// untrack forgets an operation this process no longer runs, and wakes
// its waiters: from now on they read the store (Wait).
func (r *Runner) untrack(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if cancel, ok := r.running[id]; ok {
		cancel(nil)
		delete(r.running, id)
		caller := r.callers[id]
		delete(r.callers, id)
		if r.byCaller[caller]--; r.byCaller[caller] <= 0 {
			delete(r.byCaller, caller)
		}
		r.wg.Done()
		if w := r.watches[id]; w != nil {
			close(w.ch)
			w.ch = make(chan struct{})
		}
	}
}

// progress sets op's counts, update time and estimate. Items not run
// (pending, or NotRun in a done operation) are remaining.
func (r *Runner) progress(op *state.Operation, now time.Time) {
	m := &op.Metadata
	m.Written, m.Unchanged, m.Failed, m.Remaining = 0, 0, 0, len(op.Pending)
	for _, res := range op.Results {
		switch {
		case res.NotRun:
			m.Remaining++
		case res.Code != codes.OK:
			m.Failed++
		case res.Unchanged:
			m.Unchanged++
		default:
			m.Written++
		}
	}
	op.UpdateTime = now
	switch {
	case op.Done:
		m.EstimatedCompletion = now
	case r.estimate != nil:
		m.EstimatedCompletion = now.Add(r.estimate(m.Remaining))
	default:
		m.EstimatedCompletion = time.Time{}
	}
}

// redact returns a copy of op without values.
func redact(op *state.Operation) *state.Operation {
	o := *op
	o.Results = slices.Clone(op.Results)
	o.Pending = make([]state.PendingItem, len(op.Pending))
	for i, p := range op.Pending {
		p.Value = nil
		p.Settings.SelectedRepositoryIDs = slices.Clone(p.Settings.SelectedRepositoryIDs)
		o.Pending[i] = p
	}
	if op.Pending == nil {
		o.Pending = nil
	}
	if op.Error != nil {
		e := *op.Error
		o.Error = &e
	}
	return &o
}

// withdrawTimeout bounds one attempt to withdraw an operation whose Start
// failed.
const withdrawTimeout = 5 * time.Second

// errNotThisStart: the stored operation is not the one a failed Start
// would have stored (done, another runner's, or created at another time).
var errNotThisStart = errors.New("not the operation of the failed start")

// withdraw ends operation id, whose Start (at created) failed to store it,
// when the store holds it all the same: a write the store applied but
// could not acknowledge. Its caller was told it was not started, so it
// ends done, with its values dropped and every item not run. When the
// store cannot be asked, the operation is remembered, and Resume
// withdraws it instead of running it. The operation's lease, taken by the
// failed Start, keeps other runners from it meanwhile.
func (r *Runner) withdraw(ctx context.Context, id string, created time.Time) {
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), withdrawTimeout)
	defer cancel()
	_, err := r.store.UpdateOperation(wctx, id, func(o *state.Operation) error {
		if o.Done || o.Runner != r.id || !o.CreateTime.Equal(created) {
			return errNotThisStart
		}
		r.end(o, &ending{
			err:    state.Status{Code: codes.Unavailable, Message: "not started: the state store failed while storing it"},
			notRun: "the operation was not started",
		}, time.Now())
		return nil
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case err == nil:
		delete(r.unstarted, id)
		r.log.WarnContext(ctx, "operation stored although storing it failed: ended without running it, as its caller was told it was not started",
			"operation", id)
	case errors.Is(err, state.ErrNotFound), errors.Is(err, errNotThisStart):
		delete(r.unstarted, id)
	default:
		if _, ok := r.unstarted[id]; !ok {
			r.log.WarnContext(ctx, "operation whose start failed cannot be checked in the state store; it is withdrawn at the next resume, never run",
				"operation", id, "error", err)
		}
		r.unstarted[id] = created
	}
}

// withdrawUnstarted withdraws the operations whose Start failed and
// which could not be withdrawn then.
func (r *Runner) withdrawUnstarted(ctx context.Context) {
	r.mu.Lock()
	pending := maps.Clone(r.unstarted)
	r.mu.Unlock()
	for id, created := range pending {
		r.withdraw(ctx, id, created)
	}
}
