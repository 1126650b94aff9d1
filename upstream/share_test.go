package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// slowRepoLookups is a transport that answers GET /repos/acme/api with id
// 9 after delay, or with the request's context error if that ends first
// (sending its cause to ended).
func slowRepoLookups(delay time.Duration, lookups *atomic.Int32, ended chan<- error) http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if !strings.EqualFold(r.URL.Path, "/repos/acme/api") {
			return nil, fmt.Errorf("unexpected request %s", r.URL.Path)
		}
		lookups.Add(1)
		select {
		case <-time.After(delay):
			return &http.Response{
				StatusCode: http.StatusOK,
				Header:     http.Header{"Content-Type": {"application/json"}},
				Body:       io.NopCloser(strings.NewReader(`{"id":9,"name":"api","full_name":"acme/api"}`)),
				Request:    r,
			}, nil
		case <-r.Context().Done():
			if ended != nil {
				ended <- context.Cause(r.Context())
			}
			return nil, r.Context().Err()
		}
	})
}

// repositoryID coalesces like a Group: a short-deadline waiter leaving
// does not make the next caller start a second lookup.
func TestRepositoryIDWaiters(t *testing.T) {
	tests := []struct {
		name        string
		lateAt      time.Duration // when the late caller asks
		keepWaiting bool          // whether a caller without a deadline waits all along
		wantLookups int32
		wantLateAt  time.Duration // when the late caller gets the id
	}{
		{"joins the running lookup while someone waits", 2 * time.Second, true, 1, 5 * time.Second},
		{"starts a new lookup once every waiter has left", 2 * time.Second, false, 2, 7 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var lookups atomic.Int32
				c, err := New(Config{
					Token:        testToken,
					LegacyRoutes: true,
					HTTPClient:   &http.Client{Transport: slowRepoLookups(5*time.Second, &lookups, nil)},
				})
				if err != nil {
					t.Fatal(err)
				}
				start := time.Now()
				var wg sync.WaitGroup
				wantID := func(name string, wantAt time.Duration) {
					id, err := c.repositoryID(t.Context(), "acme", "api")
					if at := time.Since(start); err != nil || id != 9 || at != wantAt {
						t.Errorf("%s: id %d, %v at %v; want 9 at %v", name, id, err, at, wantAt)
					}
				}
				if tt.keepWaiting {
					wg.Go(func() { wantID("patient caller", 5*time.Second) })
					synctest.Wait()
				}
				wg.Go(func() {
					ctx, cancel := context.WithTimeout(t.Context(), time.Second)
					defer cancel()
					_, err := c.repositoryID(ctx, "ACME", "api")
					if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) != time.Second {
						t.Errorf("impatient caller: %v at %v, want context.DeadlineExceeded at 1s", err, time.Since(start))
					}
				})
				synctest.Wait()
				time.Sleep(tt.lateAt)
				wg.Go(func() { wantID("late caller", tt.wantLateAt) })
				wg.Wait()
				if n := lookups.Load(); n != tt.wantLookups {
					t.Errorf("%d lookups, want %d", n, tt.wantLookups)
				}
			})
		})
	}
}

// A lookup is cancelled when its last waiter leaves, and not before; one
// that a waiter without a deadline waits for runs on, bounded by
// lookupTimeout.
func TestRepositoryIDAbandonedLookupCancelled(t *testing.T) {
	const s = time.Second
	tests := []struct {
		name          string
		leaves        []time.Duration // when each waiter leaves; 0: it waits on
		wantErr       error           // the cause of the lookup's end
		wantEnd       time.Duration
		wantWaitingOn error // what a waiter that waits on gets, wrapped
	}{
		{"a lone waiter leaves", []time.Duration{1 * s}, ErrCallAbandoned, 1 * s, nil},
		{"the last of two waiters leaves", []time.Duration{1 * s, 3 * s}, ErrCallAbandoned, 3 * s, nil},
		{"a waiter waits on", []time.Duration{1 * s, 0}, context.DeadlineExceeded, lookupTimeout, context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var lookups atomic.Int32
				ended := make(chan error, 1)
				c, err := New(Config{
					Token:        testToken,
					LegacyRoutes: true,
					Pacing:       &Pacing{MaxAttempts: 1},
					HTTPClient:   &http.Client{Transport: slowRepoLookups(time.Hour, &lookups, ended)},
				})
				if err != nil {
					t.Fatal(err)
				}
				start := time.Now()
				var wg sync.WaitGroup
				for i, leave := range tt.leaves {
					ctx, cancel := context.WithCancel(t.Context())
					if leave > 0 {
						time.AfterFunc(leave, cancel)
					}
					wg.Go(func() {
						defer cancel()
						_, err := c.repositoryID(ctx, "acme", "api")
						want := tt.wantWaitingOn
						if leave > 0 {
							want = context.Canceled
						}
						if !errors.Is(err, want) {
							t.Errorf("waiter %d: err = %v, want %v", i, err, want)
						}
					})
					synctest.Wait()
				}
				err = <-ended
				if at := time.Since(start); !errors.Is(err, tt.wantErr) || at != tt.wantEnd {
					t.Errorf("the lookup ended with %v at %v, want %v at %v", err, at, tt.wantErr, tt.wantEnd)
				}
				wg.Wait()
				if n := lookups.Load(); n != 1 {
					t.Errorf("%d lookups, want 1", n)
				}
			})
		})
	}
}
