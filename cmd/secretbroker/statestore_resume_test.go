package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/secretbroker/secretbroker/service/operation"
	"github.com/secretbroker/secretbroker/service/state"
)

// TestResumeLoop: with the state in Redis, the broker resumes operations
// every resumeEvery (to take over those of a replica that died), every
// resumeRetry while Redis cannot be reached, and stops when the runner is
// closed or its context ends. Its warning says what failed: Redis out of
// reach, or state the broker cannot decode (which is not an outage), and
// warns again when that changes.
func TestResumeLoop(t *testing.T) {
	errDown := errors.New("redis: connection refused")
	errCorrupt := fmt.Errorf("service: resume operations: operation: resume: state: key: %w: the key kept in Redis is 3 bytes", state.ErrCorrupt)
	closed := fmt.Errorf("service: resume operations: %w", operation.ErrClosed)
	tests := []struct {
		name     string
		failed   error   // the start-up resume's error
		file     bool    // the state in a file (--state-dir), not Redis
		results  []error // what each call returns; the loop must stop after the last when it is ErrClosed
		want     []time.Duration
		log      string
		notLog   string
		warnings int // at most; 1 when zero
	}{
		{
			name:    "healthy: every lease until closed",
			results: []error{nil, nil, nil, closed},
			want:    []time.Duration{resumeEvery, 2 * resumeEvery, 3 * resumeEvery, 4 * resumeEvery},
		},
		{
			name:    "down at start-up: retried until back, then every lease",
			failed:  errDown,
			results: []error{errDown, nil, nil, closed},
			want:    []time.Duration{resumeRetry, 2 * resumeRetry, 2*resumeRetry + resumeEvery, 2*resumeRetry + 2*resumeEvery},
			log:     "reachable again",
		},
		{
			name:    "down later: warned once, retried",
			results: []error{nil, errDown, errDown, nil, closed},
			want: []time.Duration{resumeEvery, 2 * resumeEvery, 2*resumeEvery + resumeRetry,
				2*resumeEvery + 2*resumeRetry, 3*resumeEvery + 2*resumeRetry},
			log: "operations not resumed: the state store in Redis cannot be reached",
		},
		{
			name:    "corrupt state in Redis: not blamed on reachability",
			results: []error{errCorrupt, errCorrupt, nil, closed},
			want:    []time.Duration{resumeEvery, resumeEvery + resumeRetry, resumeEvery + 2*resumeRetry, 2*resumeEvery + 2*resumeRetry},
			log:     "operations not resumed: the state store holds state this broker cannot decode",
			notLog:  "reach",
		},
		{
			name:     "down, then corrupt: warned for each",
			results:  []error{errDown, errCorrupt, errCorrupt, closed},
			want:     []time.Duration{resumeEvery, resumeEvery + resumeRetry, resumeEvery + 2*resumeRetry, resumeEvery + 3*resumeRetry},
			log:      "cannot decode",
			warnings: 2,
		},
		{
			name:    "file store failing: not blamed on Redis",
			file:    true,
			results: []error{errors.New("bolt: disk I/O error"), nil, closed},
			want:    []time.Duration{resumeEvery, resumeEvery + resumeRetry, 2*resumeEvery + resumeRetry},
			log:     "operations not resumed: the state store failed",
			notLog:  "Redis",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var logs bytes.Buffer
				var mu sync.Mutex
				logger := slog.New(slog.NewTextHandler(&logs, nil))
				start := time.Now()
				var calls []time.Duration
				resume := func(context.Context) error {
					mu.Lock()
					defer mu.Unlock()
					calls = append(calls, time.Since(start))
					if len(calls) > len(tt.results) {
						return closed
					}
					return tt.results[len(calls)-1]
				}
				done := make(chan struct{})
				go func() {
					resumeLoop(t.Context(), resume, tt.failed, !tt.file, logger)
					close(done)
				}()
				<-done
				if !slices.Equal(calls, tt.want) {
					t.Errorf("resumed at %v, want %v", calls, tt.want)
				}
				if tt.log != "" && !strings.Contains(logs.String(), tt.log) {
					t.Errorf("log lacks %q: %s", tt.log, logs.String())
				}
				if tt.notLog != "" && strings.Contains(logs.String(), tt.notLog) {
					t.Errorf("log has %q: %s", tt.notLog, logs.String())
				}
				if n := strings.Count(logs.String(), "level=WARN"); n > max(tt.warnings, 1) {
					t.Errorf("%d warnings, want at most %d (one per trouble): %s", n, max(tt.warnings, 1), logs.String())
				}
			})
		})
	}
	t.Run("ends with its context", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			n := 0
			done := make(chan struct{})
			go func() {
				resumeLoop(ctx, func(context.Context) error { n++; return nil }, nil, true, slog.New(slog.DiscardHandler))
				close(done)
			}()
			time.Sleep(3*resumeEvery + time.Second)
			cancel()
			<-done
			if n != 3 {
				t.Errorf("resumed %d times in three leases, want 3", n)
			}
		})
	})
}

// countingResumer counts the resumes asked of it.
type countingResumer struct {
	mu    sync.Mutex
	calls int
}

func (c *countingResumer) ResumeOperations(context.Context) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	return 0, nil
}

func (c *countingResumer) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls
}

// TestResumeByStore: with a file store (--state-dir) operations are
// resumed at start and again every resumeEvery, so that those a killed
// process left leased to its runner are taken over once the lease ends;
// with a memory store, only at start.
func TestResumeByStore(t *testing.T) {
	tests := []struct {
		name string
		open func(t *testing.T) state.Store
		want int // resumes after start-up and 2.5 resumeEvery
	}{
		{"memory", func(t *testing.T) state.Store {
			st, err := state.NewMemory(state.Options{})
			if err != nil {
				t.Fatal(err)
			}
			return st
		}, 1},
		{"file", func(t *testing.T) state.Store {
			st, err := state.OpenBolt(t.TempDir(), state.Options{})
			if err != nil {
				t.Fatal(err)
			}
			return st
		}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := tt.open(t)
			defer st.Close()
			synctest.Test(t, func(t *testing.T) {
				r := &countingResumer{}
				stop, err := resumeOperations(t.Context(), r, st, slog.New(slog.DiscardHandler))
				if err != nil {
					t.Fatal(err)
				}
				time.Sleep(resumeEvery*5/2 + time.Second)
				synctest.Wait()
				stop()
				if got := r.count(); got != tt.want {
					t.Errorf("%d resumes, want %d", got, tt.want)
				}
			})
		})
	}
}
