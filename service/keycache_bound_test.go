package service

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/secretbroker/secretbroker/upstream"
)

// scopeKeys serves each scope its own public key: the key id names the
// scope, so a test can tell which scope's key it was handed. It counts the
// requests for each scope, by the path as sent.
type scopeKeys struct {
	key string // any valid 32-byte key, base64

	mu    sync.Mutex
	calls map[string]int
	total atomic.Int32
}

func newScopeKeys(t *testing.T) *scopeKeys {
	return &scopeKeys{key: newFakeKeys(t).key, calls: map[string]int{}}
}

func (f *scopeKeys) GetPublicKey(_ context.Context, s upstream.Scope) (upstream.PublicKey, error) {
	f.total.Add(1)
	f.mu.Lock()
	f.calls[s.Path()]++
	f.mu.Unlock()
	id := "key-of-" + s.Path()
	return upstream.PublicKey{KeyID: upstream.KeyID(id), Key: f.key, ETag: `"` + id + `"`}, nil
}

func (f *scopeKeys) RevalidatePublicKey(ctx context.Context, s upstream.Scope, etag string) (upstream.PublicKey, bool, error) {
	pk, err := f.GetPublicKey(ctx, s)
	if err != nil || pk.ETag != etag {
		return pk, false, err
	}
	return upstream.PublicKey{ETag: etag}, true, nil
}

func (f *scopeKeys) callsFor(s upstream.Scope) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[s.Path()]
}

// nthOrgScope is the i-th of many distinct organization scopes.
func nthOrgScope(i int) upstream.Scope {
	return upstream.Scope{App: upstream.Actions, Org: fmt.Sprintf("org-%d", i)}
}

// checkKeyCacheBound checks the cache's maps against its bound and
// against each other: the LRU order, the keys and the forced budgets
// (which exist only for cached keys) stay in step.
func checkKeyCacheBound(t *testing.T, c *keyCache, bound int) {
	t.Helper()
	c.mu.RLock()
	defer c.mu.RUnlock()
	if n := len(c.keys); n > bound {
		t.Fatalf("%d keys cached, bound %d", n, bound)
	}
	if n, m := c.order.len(), len(c.keys); n != m {
		t.Fatalf("LRU order holds %d scopes, the cache %d", n, m)
	}
	for path := range c.forced {
		if _, ok := c.keys[path]; !ok {
			t.Fatalf("forced budget kept for %s, whose key was dropped", path)
		}
	}
}

// The key cache holds at most its bound of scopes, however many arrive,
// dropping the least recently used; a dropped scope's key is fetched
// again, and is that scope's key.
func TestKeyCacheBound(t *testing.T) {
	tests := []struct {
		name   string
		bound  int // 0: the default, maxKeyScopes
		scopes int
	}{
		{"bound 1", 1, 5},
		{"bound 3", 3, 20},
		{"bound 64, twice over", 64, 128},
		{"default bound", 0, maxKeyScopes + 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newScopeKeys(t)
			c := newKeyCache(f, time.Hour)
			bound := maxKeyScopes
			if tt.bound > 0 {
				c.max, bound = tt.bound, tt.bound
			}
			for i := range tt.scopes {
				s := nthOrgScope(i)
				k, err := c.get(t.Context(), s)
				if err != nil {
					t.Fatal(err)
				}
				if want := upstream.KeyID("key-of-" + s.Path()); k.id != want {
					t.Fatalf("%s: key %q, want %q", s, k.id, want)
				}
				if i < 2*bound || i == tt.scopes-1 {
					checkKeyCacheBound(t, c, bound)
				}
			}
			if got := c.len(); got != bound {
				t.Fatalf("%d keys cached after %d scopes, want the bound %d", got, tt.scopes, bound)
			}
			if got := int(f.total.Load()); got != tt.scopes {
				t.Fatalf("%d fetches for %d scopes", got, tt.scopes)
			}

			// The latest bound scopes are cached: no fetch.
			for i := tt.scopes - bound; i < tt.scopes; i++ {
				if _, err := c.get(t.Context(), nthOrgScope(i)); err != nil {
					t.Fatal(err)
				}
			}
			if got := int(f.total.Load()); got != tt.scopes {
				t.Fatalf("the %d most recent scopes cost %d more fetches, want 0", bound, got-tt.scopes)
			}

			// The first scope was dropped: fetched again, with its own key,
			// and cached again within the bound.
			first := nthOrgScope(0)
			k, err := c.get(t.Context(), first)
			if err != nil {
				t.Fatal(err)
			}
			if want := upstream.KeyID("key-of-" + first.Path()); k.id != want {
				t.Fatalf("refetched key %q, want %q", k.id, want)
			}
			if got := f.callsFor(first); got != 2 {
				t.Fatalf("%d fetches of the dropped scope, want 2", got)
			}
			if _, ok := c.cached(first); !ok {
				t.Fatal("the refetched key was not cached")
			}
			checkKeyCacheBound(t, c, bound)
		})
	}
}

// The cache drops the least recently used scope, not the oldest fetched:
// a scope in use stays cached while others come and go.
func TestKeyCacheDropsLeastRecentlyUsed(t *testing.T) {
	f := newScopeKeys(t)
	c := newKeyCache(f, time.Hour)
	c.max = 3
	hot := nthOrgScope(0)
	for i := range 20 {
		for _, s := range []upstream.Scope{hot, nthOrgScope(i + 1)} {
			if _, err := c.get(t.Context(), s); err != nil {
				t.Fatal(err)
			}
		}
		checkKeyCacheBound(t, c, 3)
	}
	if got := f.callsFor(hot); got != 1 {
		t.Fatalf("the scope in use was fetched %d times, want once", got)
	}
	// Of the others, the two latest are cached and the one before is not.
	for i, want := range map[int]bool{20: true, 19: true, 18: false} {
		if _, ok := c.cached(nthOrgScope(i)); ok != want {
			t.Errorf("%s cached: %v, want %v", nthOrgScope(i), ok, want)
		}
	}
}

// A forced revalidation's budgets (the callers' and the broker's own) are
// dropped with their scope's key, so that the budgets stay within the
// bound too; the scope's key is then fetched afresh, and a wrong key id
// may force one revalidation again.
func TestKeyCacheDropsForcedBudgetWithKey(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newScopeKeys(t)
		c := newKeyCache(f, time.Hour)
		c.max = 2
		a := nthOrgScope(0)
		k, err := c.get(t.Context(), a)
		if err != nil {
			t.Fatal(err)
		}
		// A caller names a's key as stale, and GitHub refuses a value the
		// broker sealed with it: one revalidation on each budget.
		if _, err := c.revalidate(t.Context(), a, k.id); err != nil {
			t.Fatal(err)
		}
		if _, err := c.revalidateSealing(t.Context(), a, k.id); err != nil {
			t.Fatal(err)
		}
		budgets := func() (callers, own bool) {
			c.mu.RLock()
			defer c.mu.RUnlock()
			_, callers = c.forced[foldedScope(a)]
			_, own = c.own[foldedScope(a)]
			return callers, own
		}
		if callers, own := budgets(); !callers || !own || f.callsFor(a) != 3 {
			t.Fatalf("callers' budget spent: %v, broker's: %v, fetches of a: %d; want both spent after 3", callers, own, f.callsFor(a))
		}
		for i := 1; i <= 2; i++ {
			if _, err := c.get(t.Context(), nthOrgScope(i)); err != nil {
				t.Fatal(err)
			}
		}
		checkKeyCacheBound(t, c, 2)
		if _, ok := c.cached(a); ok {
			t.Fatal("a is still cached after two newer scopes with a bound of 2")
		}
		if callers, own := budgets(); callers || own {
			t.Fatalf("budgets kept for a dropped key: callers' %v, broker's %v", callers, own)
		}
		// Revalidating the dropped scope fetches it outright, once.
		if _, err := c.revalidate(t.Context(), a, k.id); err != nil {
			t.Fatal(err)
		}
		if got := f.callsFor(a); got != 4 {
			t.Fatalf("%d fetches of a, want 4", got)
		}
		checkKeyCacheBound(t, c, 2)
	})
}

// countingLists counts list requests by scope path as sent, each one
// held on gate until the test releases it.
type countingLists struct {
	Upstream
	gate chan struct{}

	mu    sync.Mutex
	calls map[string]int
}

func (u *countingLists) ListSecrets(ctx context.Context, s upstream.Scope, _ upstream.Page) (upstream.SecretList, error) {
	u.mu.Lock()
	u.calls[s.Path()]++
	u.mu.Unlock()
	select {
	case <-u.gate:
	case <-ctx.Done():
		return upstream.SecretList{}, ctx.Err()
	}
	return upstream.SecretList{}, nil
}

func (u *countingLists) DeleteSecret(context.Context, upstream.Scope, string) error { return nil }

func (u *countingLists) total() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := 0
	for _, c := range u.calls {
		n += c
	}
	return n
}

// The shared reads keep a generation for at most their bound of scopes,
// however many are written. A scope dropped from the map is still at a
// generation past its last write, not back at the generation of a scope
// never written: a read that begins after the write never joins one that
// began before it.
func TestSharedReadsGenerationsBound(t *testing.T) {
	tests := []struct {
		name   string
		bound  int // 0: the default, maxReadGenerations
		others int // scopes written after the scope under test
	}{
		{"bound 1", 1, 1},
		{"bound 4", 4, 10},
		{"default bound", 0, maxReadGenerations + 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				u := &countingLists{gate: make(chan struct{}), calls: map[string]int{}}
				r := &sharedReads{Upstream: u, max: tt.bound}
				bound := tt.bound
				if bound == 0 {
					bound = maxReadGenerations
				}
				repo := upstream.Scope{App: upstream.Actions, Owner: "o", Repo: "r"}
				page := upstream.Page{Page: 1, PerPage: 100}
				var wg sync.WaitGroup
				defer func() { // also on failure, so that no list is left held
					close(u.gate)
					wg.Wait()
				}()
				list := func() {
					wg.Go(func() {
						if _, err := r.ListSecrets(t.Context(), repo, page); err != nil {
							t.Error(err)
						}
					})
					synctest.Wait()
				}
				list() // held: began before the scope's first write
				if err := r.DeleteSecret(t.Context(), repo, "X"); err != nil {
					t.Fatal(err)
				}
				for i := range tt.others {
					other := upstream.Scope{App: upstream.Actions, Owner: "o", Repo: fmt.Sprintf("other-%d", i)}
					if err := r.DeleteSecret(t.Context(), other, "X"); err != nil {
						t.Fatal(err)
					}
				}
				r.mu.Lock()
				n, ordered := len(r.gens), r.order.len()
				_, kept := r.gens[foldedScope(repo)]
				r.mu.Unlock()
				if n > bound || ordered != n {
					t.Fatalf("%d generations kept (%d ordered), bound %d", n, ordered, bound)
				}
				if kept {
					t.Fatalf("the scope written least recently is still kept after %d newer ones (bound %d)", tt.others, bound)
				}
				list() // began after the write: must not join the held list
				if got := u.total(); got != 2 {
					t.Fatalf("%d list requests, want 2: a list that began after a write joined one that began before it", got)
				}
				list() // same generation: joins the second
				if got := u.total(); got != 2 {
					t.Fatalf("%d list requests, want 2: lists of one generation did not share", got)
				}
			})
		})
	}
}

// lruOrder hands back keys least recently touched first.
func TestLRUOrder(t *testing.T) {
	tests := []struct {
		name string
		ops  string // t<key> touches, r<key> removes
		want string // keys, oldest first
	}{
		{"empty", "", ""},
		{"insertion order", "ta tb tc", "a b c"},
		{"touch moves to the back", "ta tb tc ta", "b c a"},
		{"remove", "ta tb tc rb", "a c"},
		{"remove absent", "ta rz", "a"},
		{"touch after remove", "ta tb ra ta", "b a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var o lruOrder
			for _, op := range strings.Fields(tt.ops) {
				switch op[0] {
				case 't':
					o.touch(op[1:])
				case 'r':
					o.remove(op[1:])
				}
			}
			var got []string
			for {
				k, ok := o.oldest()
				if !ok {
					break
				}
				got = append(got, k)
				o.remove(k)
			}
			if g := strings.Join(got, " "); g != tt.want {
				t.Fatalf("order %q, want %q", g, tt.want)
			}
			if o.len() != 0 {
				t.Fatalf("%d keys left after removing all", o.len())
			}
		})
	}
}
