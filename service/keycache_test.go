package service

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/nacl/box"

	"github.com/secretbroker/secretbroker/upstream"
)

// fakeKeys serves public keys; each call can be held on a gate.
type fakeKeys struct {
	calls atomic.Int32
	gate  chan struct{} // when non-nil, each fetch waits for a receive
	id    atomic.Int32
	key   string
}

func newFakeKeys(t *testing.T) *fakeKeys {
	pub, _, err := box.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeKeys{key: base64.StdEncoding.EncodeToString(pub[:])}
	f.id.Store(1)
	return f
}

func (f *fakeKeys) GetPublicKey(ctx context.Context, _ upstream.Scope) (upstream.PublicKey, error) {
	f.calls.Add(1)
	if f.gate != nil {
		select {
		case <-f.gate:
		case <-ctx.Done():
			return upstream.PublicKey{}, ctx.Err()
		}
	}
	return upstream.PublicKey{KeyID: upstream.KeyID(strconv.Itoa(int(f.id.Load()))), Key: f.key}, nil
}

var testScope = upstream.Scope{App: upstream.Actions, Org: "acme"}

func TestKeyCacheMergesConcurrentMisses(t *testing.T) {
	f := newFakeKeys(t)
	f.gate = make(chan struct{})
	c := newKeyCache(f, time.Hour, time.Now)
	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.get(t.Context(), testScope)
			errs <- err
		}()
	}
	// Let the one fetch finish once every caller is waiting on it.
	for f.calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	close(f.gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := f.calls.Load(); got != 1 {
		t.Fatalf("fetches = %d, want 1", got)
	}
	if _, err := c.get(t.Context(), testScope); err != nil || f.calls.Load() != 1 {
		t.Fatalf("a cached key was fetched again (%d fetches, %v)", f.calls.Load(), err)
	}
}

func TestKeyCacheWaiterDeadline(t *testing.T) {
	f := newFakeKeys(t)
	f.gate = make(chan struct{})
	c := newKeyCache(f, time.Hour, time.Now)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := c.get(ctx, testScope); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	// The forgotten call does not capture later callers: a new fetch starts.
	done := make(chan error, 1)
	go func() {
		_, err := c.get(t.Context(), testScope)
		done <- err
	}()
	// Without Forget the new caller would join the stuck first fetch and
	// no second fetch would start; bound the wait so that fails, not hangs.
	for start := time.Now(); f.calls.Load() < 2; time.Sleep(time.Millisecond) {
		if time.Since(start) > 10*time.Second {
			close(f.gate)
			t.Fatal("a caller after a forgotten fetch joined it instead of fetching afresh")
		}
	}
	close(f.gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestKeyCacheTTLAndRefresh(t *testing.T) {
	f := newFakeKeys(t)
	now := time.Unix(1_700_000_000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	c := newKeyCache(f, time.Minute, clock)
	ctx := t.Context()

	k1, err := c.get(ctx, testScope)
	if err != nil || k1.id != "1" {
		t.Fatalf("get = %+v, %v", k1, err)
	}
	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	if _, err := c.get(ctx, testScope); err != nil || f.calls.Load() != 2 {
		t.Fatalf("an expired key was not fetched again (%d fetches, %v)", f.calls.Load(), err)
	}

	// A rotation: refresh for the stale id fetches once; a second refresh
	// naming the same stale id finds the new key already in place.
	f.id.Store(2)
	for range 2 {
		k, err := c.refresh(ctx, testScope, "1")
		if err != nil || k.id != "2" {
			t.Fatalf("refresh = %+v, %v", k, err)
		}
	}
	if got := f.calls.Load(); got != 3 {
		t.Fatalf("fetches = %d, want 3", got)
	}
}

func TestDecodeKeyRejectsBadKeys(t *testing.T) {
	for _, pk := range []upstream.PublicKey{
		{KeyID: "", Key: base64.StdEncoding.EncodeToString(make([]byte, 32))},
		{KeyID: "1", Key: "not base64"},
		{KeyID: "1", Key: base64.StdEncoding.EncodeToString(make([]byte, 31))},
	} {
		if _, err := decodeKey(pk); err == nil {
			t.Errorf("decodeKey(%+v) accepted a bad key", pk)
		}
	}
}
