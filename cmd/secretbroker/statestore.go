package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/secretbroker/secretbroker/service/operation"
	"github.com/secretbroker/secretbroker/service/state"
)

// registerStateFlags adds the state store's flags to fs: --state-dir
// (default none: the Redis store with --redis-url, else a memory store,
// lost on exit) and --state-hmac-key-file
// (default none: a random key generated once and kept in the store).
func registerStateFlags(fs *flag.FlagSet, cfg *Config) {
	fs.StringVar(&cfg.StateDir, "state-dir", "",
		"`directory` of the broker's state file ("+state.BoltFileName+"): what it wrote, to skip unchanged writes, detect drift and prune only what an owner wrote; one replica: it wins over --redis-url for this state (default: in Redis with --redis-url, shared by the replicas, else in memory, lost on exit)")
	fs.StringVar(&cfg.StateHMACKeyFile, "state-hmac-key-file", "",
		"`file` with the key (raw bytes, at least 32) the state's fingerprints are made under (default: a random key kept in the state store)")
	fs.DurationVar(&cfg.StateLockTimeout, "state-lock-timeout", state.DefaultLockTimeout,
		"how long a start waits for the lock on the --state-dir file while another process holds it (a broker on the same directory still stopping); a signal ends the wait")
}

// openState opens the state store the configuration asks for, with the
// key of --state-hmac-key-file when given:
//
//   - --state-dir: the file store under it (one replica). With a Redis as
//     well (--redis-url or --redis-url-file), the file store still wins,
//     with a warning: the replicas then do not share what they wrote.
//   - else, with a Redis (rc, the pacing's client on the same URL): the
//     Redis store, shared by every replica on that Redis.
//   - else a memory store, lost on exit.
//
// rc is nil when no Redis is configured. The caller closes the store
// (the Redis store leaves rc open: its owner closes it). Waiting for the
// file's lock ends when ctx does (openBolt).
func openState(ctx context.Context, cfg Config, logger *slog.Logger, rc redis.UniversalClient) (state.Store, error) {
	var opts state.Options
	if cfg.StateHMACKeyFile != "" {
		key, err := state.ReadKeyFile(cfg.StateHMACKeyFile)
		if err != nil {
			return nil, err
		}
		opts.HMACKey = key
	} else if !cfg.Dev && (cfg.StateDir != "" || rc != nil) {
		logger.Warn("state store: no --state-hmac-key-file, so the key of the value fingerprints and of the sealed values of async operations is kept in the store beside them: whoever can read the store can test guesses of a value and open the values of unfinished operations (and of finished ones whose bytes the store's file has not reused yet); give the broker a key file")
	}
	if cfg.Dev && (cfg.StateDir != "" || rc != nil) {
		logger.Warn("--dev: the embedded emulator keeps its secrets in memory, so a restart empties it while the state store keeps the records and the operations: after a restart they describe another GitHub (resumed operations write into the new, empty emulator, and unchanged judgements do not hold)")
	}
	switch {
	case cfg.StateDir != "":
		st, err := openBolt(ctx, cfg.StateDir, cfg.StateLockTimeout, opts, logger)
		if err != nil {
			return nil, fmt.Errorf("state store --state-dir %s: %w", cfg.StateDir, err)
		}
		logger.Info("state store opened", slog.String("path", st.Path()))
		if rc != nil {
			logger.Warn("state store: --state-dir wins over the Redis for the sync state; replicas do not share what they wrote (records, operations); drop --state-dir to keep it in Redis",
				slog.String("path", st.Path()), slog.String("redis", cfg.redisShown()))
		}
		return st, nil
	case rc != nil:
		st, err := state.NewRedis(rc, state.RedisOptions{Options: opts})
		if err != nil {
			return nil, fmt.Errorf("state store in Redis: %w", err)
		}
		logger.Info("state store in Redis, shared by the replicas", slog.String("redis", cfg.redisShown()), slog.String("prefix", st.Prefix()))
		return st, nil
	}
	st, err := state.NewMemory(opts)
	if err != nil {
		return nil, fmt.Errorf("state store: %w", err)
	}
	if !cfg.Dev {
		logger.Warn("state store in memory: a restart loses the async operations in progress and the records that skip unchanged writes; give --state-dir or --redis-url to keep them")
	}
	return st, nil
}

// boltLockStep is how long one try of openBolt waits for the file's lock
// before it looks at its context again.
const boltLockStep = 100 * time.Millisecond

// openBolt opens the file store under dir as state.OpenBolt does, waiting
// up to wait in all for the lock another process
// holds on the file (a broker still stopping, or a second one on the same
// --state-dir), and saying so once it waits; it stops waiting when ctx is
// done (a signal during the start), with an error wrapping ctx's.
func openBolt(ctx context.Context, dir string, wait time.Duration, opts state.Options, logger *slog.Logger) (*state.Bolt, error) {
	deadline := time.Now().Add(wait)
	for waited := false; ; waited = true {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("stopped waiting for the state file's lock: %w", err)
		}
		// At least a millisecond: 0 is the default timeout.
		opts.LockTimeout = max(min(boltLockStep, time.Until(deadline)), time.Millisecond)
		st, err := state.OpenBolt(dir, opts)
		if err == nil || !errors.Is(err, state.ErrLocked) || !time.Now().Before(deadline) {
			if err != nil && waited && errors.Is(err, state.ErrLocked) {
				return nil, fmt.Errorf("%w (waited %v in all, --state-lock-timeout)", err, wait)
			}
			return st, err
		}
		if !waited {
			logger.Info("state store: waiting for the lock on its file, which another process holds (another broker on this --state-dir, or one still stopping)",
				slog.String("dir", dir), slog.Duration("at_most", wait))
		}
	}
}

// resumeRetry is how often the broker tries again to resume operations
// while the state store in Redis cannot be reached.
const resumeRetry = 5 * time.Second

// resumeEvery is how often a broker with the state in Redis or a file
// looks for operations to take over: in Redis, one whose runner died
// keeps that runner's lease for at most operation.DefaultLease (the
// service's runner uses the default), so it is taken over within about
// two leases (with a file, the start-up resume takes them at once).
const resumeEvery = operation.DefaultLease

// resumeOperations resumes the operations a previous process left
// unfinished.
//
// With a memory store nothing outlives the process: the resume runs
// once, here. With a file (--state-dir), one process owns the store: a
// process that died (killed, out of memory) left its operations leased to
// its runner for up to a lease, and this process, holding the file's
// lock, knows that runner is dead, so the resume here takes them over at
// once (service.OperationOptions.Sole); its error is returned, and it
// runs again in the background every resumeEvery. With the state
// in Redis, the replicas share the operations, each held by a lease its
// runner renews: the resume runs here, then again in the background for
// the process's lifetime, every resumeEvery, to take over the operations
// of a replica that died (a live replica's operations are skipped, and
// one a replica's shutdown paused is taken at once). A Redis outage does not
// stop the broker (it serves while Redis is down, as its pacing does):
// the resume is then tried every resumeRetry until Redis is back. stop
// ends the background resume and waits for it; call it before the store
// closes. The background resume also ends once the runner is closed.
func resumeOperations(ctx context.Context, svc resumer, st state.Store, logger *slog.Logger) (stop func(), err error) {
	resume := func(ctx context.Context) error {
		n, err := svc.ResumeOperations(ctx)
		if err == nil && n > 0 {
			logger.Info("operations resumed", slog.Int("operations", n))
		}
		return err
	}
	err = resume(ctx)
	if err != nil && ctx.Err() != nil {
		// Stopped during the start (a signal): not a store that fails.
		return func() {}, err
	}
	_, inRedis := st.(*state.Redis)
	switch st.(type) {
	case *state.Redis:
	case *state.Bolt:
		if err != nil {
			return func() {}, err
		}
	default:
		return func() {}, err
	}
	if err != nil {
		logger.Warn("operations not resumed yet: "+resumeTrouble(err, inRedis)+"; trying again in the background",
			slog.Duration("every", resumeRetry), slog.Any("error", err))
	}
	failed := err // err is the result, which the return below sets
	rctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { resumeLoop(rctx, resume, failed, inRedis, logger) })
	return func() {
		cancel()
		wg.Wait()
	}, nil
}

// resumer resumes the operations left unfinished in the state store
// (*service.Server).
type resumer interface {
	ResumeOperations(ctx context.Context) (int, error)
}

// resumeTrouble says why resuming operations failed with err: the store
// holds state this broker cannot decode (a stored operation that does
// not decode is skipped and logged by the runner; this is what remains,
// such as a damaged server key in Redis), else, with the state in Redis
// (inRedis), Redis cannot be reached.
func resumeTrouble(err error, inRedis bool) string {
	switch {
	case errors.Is(err, state.ErrCorrupt):
		return "the state store holds state this broker cannot decode (damaged, or written by a newer version)"
	case inRedis:
		return "the state store in Redis cannot be reached"
	default:
		return "the state store failed"
	}
}

// resumeLoop calls resume every resumeEvery, or every resumeRetry while
// it fails (failed: the error of the last call, nil when it worked),
// until ctx ends or the runner is closed. It warns when resuming starts
// failing, or fails for another reason (see resumeTrouble), and says when
// it works again.
func resumeLoop(ctx context.Context, resume func(context.Context) error, failed error, inRedis bool, logger *slog.Logger) {
	t := time.NewTimer(resumeEvery)
	defer t.Stop()
	for {
		if failed != nil {
			t.Reset(resumeRetry)
		} else {
			t.Reset(resumeEvery)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := resume(ctx)
		switch {
		case err == nil:
			switch {
			case failed == nil:
			case errors.Is(failed, state.ErrCorrupt) || !inRedis:
				logger.Info("operations: resuming works again")
			default:
				logger.Info("operations: the state store in Redis is reachable again")
			}
			failed = nil
		case errors.Is(err, operation.ErrClosed) || ctx.Err() != nil:
			return
		default:
			if failed == nil || resumeTrouble(failed, inRedis) != resumeTrouble(err, inRedis) {
				logger.Warn("operations not resumed: "+resumeTrouble(err, inRedis)+"; trying again in the background",
					slog.Duration("every", resumeRetry), slog.Any("error", err))
			}
			failed = err
		}
	}
}
