package pace

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"testing/synctest"
)

// countingIdler counts Idle and Resume calls.
type countingIdler struct {
	mu             sync.Mutex
	idles, resumes int
}

func (c *countingIdler) Idle() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.idles++
}

func (c *countingIdler) Resume() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.resumes++
}

func (c *countingIdler) counts() (idles, resumes int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.idles, c.resumes
}

// TestIdler: a request admitted at once never idles; one that queues
// idles while it waits and resumes once when admitted, or when its
// context ends first.
func TestIdler(t *testing.T) {
	get := Request{Caller: "a", Method: http.MethodGet, Route: "/r"}
	tests := []struct {
		name string
		// cancel ends the waiting request's context instead of
		// letting it be admitted.
		cancel bool
	}{
		{"admitted after a wait", false},
		{"cancelled while waiting", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p, err := New(Config{MaxInFlight: 1})
				if err != nil {
					t.Fatal(err)
				}
				first := &countingIdler{}
				holder, err := p.Acquire(WithIdler(t.Context(), first), get)
				if err != nil {
					t.Fatal(err)
				}
				if i, r := first.counts(); i != 0 || r != 0 {
					t.Fatalf("admitted at once: %d idles, %d resumes; want none", i, r)
				}

				waiter := &countingIdler{}
				ctx, cancel := context.WithCancel(WithIdler(t.Context(), waiter))
				defer cancel()
				ch := acquireAsync(ctx, p, get)
				if i, r := waiter.counts(); i != 1 || r != 0 {
					t.Fatalf("queued: %d idles, %d resumes; want 1 and 0", i, r)
				}
				if tt.cancel {
					cancel()
				} else {
					holder.Done(http.StatusOK, nil, 0)
				}
				got := <-ch
				if (got.err == nil) == tt.cancel {
					t.Fatalf("Acquire: %v", got.err)
				}
				if got.p != nil {
					got.p.Done(http.StatusOK, nil, 0)
				}
				if i, r := waiter.counts(); i != 1 || r != 1 {
					t.Errorf("after the wait: %d idles, %d resumes; want 1 and 1", i, r)
				}
			})
		})
	}
}
