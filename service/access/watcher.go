package access

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Watcher holds the policy read from a file and reloads it when the file's
// content changes. Policy and the Allow methods are lock-free; a broken file
// never replaces a good policy.
type Watcher struct {
	path   string
	logger *slog.Logger
	policy atomic.Pointer[Policy]

	mu      sync.Mutex        // serializes reading the file; guards the fields below
	lastSum [sha256.Size]byte // sha256 of the content last read, parsed or not
	readErr string            // the read failure last logged; "" after a good read
}

// NewWatcher reads and parses the policy file at path once and returns a
// Watcher holding it; an unreadable or invalid file is an error. A nil
// logger discards. NewWatcher logs nothing: the caller logs the start, with
// Policy().Rules().
func NewWatcher(path string, logger *slog.Logger) (*Watcher, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("access: read policy file: %w", err)
	}
	p, err := parse(data)
	if err != nil {
		return nil, fmt.Errorf("access: policy file %s: %w", path, err)
	}
	w := &Watcher{path: path, logger: logger, lastSum: sha256.Sum256(data)}
	w.policy.Store(p)
	return w, nil
}

// Policy returns the current policy.
func (w *Watcher) Policy() *Policy {
	return w.policy.Load()
}

// Allow reports whether the current policy allows verb on resource to
// caller; see Policy.Allow.
func (w *Watcher) Allow(caller, verb, resource string) bool {
	return w.Policy().Allow(caller, verb, resource)
}

// AllowSome reports whether the current policy allows verb on some secret
// of scope to caller; see Policy.AllowSome.
func (w *Watcher) AllowSome(caller, verb, scope string) bool {
	return w.Policy().AllowSome(caller, verb, scope)
}

// AllowEvery reports whether the current policy allows verb on every
// secret of scope to caller; see Policy.AllowEvery.
func (w *Watcher) AllowEvery(caller, verb, scope string) bool {
	return w.Policy().AllowEvery(caller, verb, scope)
}

// Reload reads and parses the file now, whether or not it changed. A good
// file replaces the policy and is logged at INFO with its rule count. An
// unreadable or invalid file keeps the last good policy, is logged at WARN
// with the reason (never the file's content) and is returned.
func (w *Watcher) Reload() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	data, err := os.ReadFile(w.path)
	if err != nil {
		err = fmt.Errorf("access: read policy file: %w", err)
		w.readErr = err.Error()
		w.logger.Warn("access policy not reloaded, keeping the last good policy", "path", w.path, "error", err)
		return err
	}
	w.readErr = ""
	w.lastSum = sha256.Sum256(data)
	return w.apply(data)
}

// Run checks the file every interval until ctx is done, and reloads it
// when its content changed. It compares content, not modification times:
// Kubernetes updates a mounted file by swapping a "..data" symlink, and
// reading the path follows the swap. A file that fails to read or parse is
// logged once for each distinct content (or read error), not on every
// tick. interval must be positive.
func (w *Watcher) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			w.check()
		}
	}
}

// check is one tick of Run.
func (w *Watcher) check() {
	w.mu.Lock()
	defer w.mu.Unlock()
	data, err := os.ReadFile(w.path)
	if err != nil {
		err = fmt.Errorf("access: read policy file: %w", err)
		if msg := err.Error(); msg != w.readErr {
			w.readErr = msg
			w.logger.Warn("access policy not reloaded, keeping the last good policy", "path", w.path, "error", err)
		}
		return
	}
	w.readErr = ""
	sum := sha256.Sum256(data)
	if sum == w.lastSum {
		return
	}
	w.lastSum = sum
	_ = w.apply(data) // apply logs the outcome
}

// apply parses data and, when it is valid, makes it the current policy.
// w.mu is held and w.lastSum is the sum of data.
func (w *Watcher) apply(data []byte) error {
	p, err := parse(data)
	if err != nil {
		err = fmt.Errorf("access: policy file %s: %w", w.path, err)
		w.logger.Warn("access policy not reloaded, keeping the last good policy", "path", w.path, "error", err)
		return err
	}
	w.policy.Store(p)
	w.logger.Info("access policy loaded", "path", w.path, "rules", p.Rules(), "sha256", hex.EncodeToString(w.lastSum[:8]))
	return nil
}
