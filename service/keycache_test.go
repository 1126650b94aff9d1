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

// fakeKeys serves public keys, with an ETag naming the key id; each call
// can be held on a gate.
type fakeKeys struct {
	calls       atomic.Int32  // every call, conditional or not
	conditional atomic.Int32  // calls with an ETag
	notModified atomic.Int32  // of those, answered "not modified"
	gate        chan struct{} // when non-nil, each fetch waits for a receive
	id          atomic.Int32
	key         string
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
	id := strconv.Itoa(int(f.id.Load()))
	return upstream.PublicKey{KeyID: upstream.KeyID(id), Key: f.key, ETag: `"` + id + `"`}, nil
}

func (f *fakeKeys) RevalidatePublicKey(ctx context.Context, s upstream.Scope, etag string) (upstream.PublicKey, bool, error) {
	f.conditional.Add(1)
	pk, err := f.GetPublicKey(ctx, s)
	if err != nil || pk.ETag != etag {
		return pk, false, err
	}
	f.notModified.Add(1)
	return upstream.PublicKey{ETag: etag}, true, nil
}

// manualClock is a clock that moves only when told to.
type manualClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *manualClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
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
	clk := &manualClock{now: time.Unix(1_700_000_000, 0)}
	c := newKeyCache(f, time.Minute, clk.Now)
	ctx := t.Context()

	k1, err := c.get(ctx, testScope)
	if err != nil || k1.id != "1" {
		t.Fatalf("get = %+v, %v", k1, err)
	}
	clk.advance(2 * time.Minute)
	k, err := c.get(ctx, testScope)
	if err != nil || k.id != "1" || f.calls.Load() != 2 || f.notModified.Load() != 1 {
		t.Fatalf("an expired key was not revalidated (%+v, %d fetches, %d not modified, %v)", k, f.calls.Load(), f.notModified.Load(), err)
	}
	// Revalidated, the key is fresh again for a whole TTL.
	clk.advance(30 * time.Second)
	if _, err := c.get(ctx, testScope); err != nil || f.calls.Load() != 2 {
		t.Fatalf("a revalidated key was fetched again (%d fetches, %v)", f.calls.Load(), err)
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

// A key that changed while cached comes back whole from the conditional
// request, and the cache takes it.
func TestKeyCacheRevalidationSeesNewKey(t *testing.T) {
	f := newFakeKeys(t)
	clk := &manualClock{now: time.Unix(1_700_000_000, 0)}
	c := newKeyCache(f, time.Minute, clk.Now)
	if _, err := c.get(t.Context(), testScope); err != nil {
		t.Fatal(err)
	}
	f.id.Store(7)
	clk.advance(time.Hour)
	k, err := c.get(t.Context(), testScope)
	if err != nil || k.id != "7" || f.conditional.Load() != 1 || f.notModified.Load() != 0 {
		t.Fatalf("get = %+v, %v (%d conditional, %d not modified); want key 7 from one conditional request",
			k, err, f.conditional.Load(), f.notModified.Load())
	}
}
