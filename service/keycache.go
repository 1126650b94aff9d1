package service

import (
	"container/list"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/secretbroker/secretbroker/service/sealedbox"
	"github.com/secretbroker/secretbroker/upstream"
)

// keyFetcher fetches a scope's current public key from GitHub, outright or
// conditionally on an ETag.
type keyFetcher interface {
	GetPublicKey(ctx context.Context, s upstream.Scope) (upstream.PublicKey, error)
	RevalidatePublicKey(ctx context.Context, s upstream.Scope, etag string) (pk upstream.PublicKey, notModified bool, err error)
}

// maxQuotedKeyID bounds how much of a caller's key_id an error quotes.
const maxQuotedKeyID = 64

// maxKeyScopes bounds how many scopes the key cache holds a key (and a
// forced-revalidation budget) for. Scope names come from callers, so
// without a bound the cache would grow with every name sent. When a new
// scope's key would exceed the bound, the least recently used scope's key
// is dropped; the next request for that scope fetches it again. 10,000
// keys are a few megabytes.
const maxKeyScopes = 10000

// sealingKey is a scope's public key, decoded and ready to seal with.
type sealingKey struct {
	id      upstream.KeyID
	encoded string // base64, as GitHub sent it
	key     [32]byte
	etag    string // of the answer that carried it; "" when GitHub sent none
	checked time.Time
	// replaced is the id of the key this one replaced in the cache (""
	// for a scope's first key): a forced check that goes back to it
	// found no rotation to refund (revalidateKey).
	replaced upstream.KeyID
}

// keyCache caches each scope's public key. A key older than the TTL is
// revalidated with a conditional request (If-None-Match), which GitHub
// answers with 304 when the key is unchanged; a 304 does not count against
// GitHub's primary rate limit. Concurrent fetches for one scope are merged
// into one upstream call (share); no lock is held across an upstream call.
//
// A key is never dropped because of what a caller sent about it (only the
// bound, maxKeyScopes, drops keys, least recently used first). When a caller's
// request suggests the cached key is out of date (a key_id that is not the
// cached one, or GitHub's 422 to a write), revalidate checks it early, at
// most once per scope per TTL (the forced budget, kept apart from the
// TTL's own revalidations; a check that found a new key gives it back, so
// a second rotation within the TTL is found too), so that a caller cannot spend the broker's
// GitHub quota by sending wrong key ids. Each scope has two forced
// budgets (see budget): one that what callers seal and send can spend,
// and one for GitHub's 422 to a value the broker sealed, so that a
// caller's stale key_id never leaves another caller's plaintext put
// without its re-check after a rotation.
//
// Entries are keyed by foldedScope, which folds the case of the organization,
// owner and repository names (GitHub's names are not case sensitive, and a
// scope's key is the same however a caller spells it): case variants of
// one scope share one entry and one fetch. The cache holds at most
// maxKeyScopes scopes, dropping the least recently used.
//
// The cache reads the time with time.Now; its tests run in synctest
// bubbles, where that time is fake.
type keyCache struct {
	fetch keyFetcher
	ttl   time.Duration
	max   int // scopes kept; see maxKeyScopes

	group  upstream.Group[any]
	mu     sync.RWMutex
	keys   map[string]sealingKey // by foldedScope
	forced map[string]time.Time  // by foldedScope: when the last forced revalidation on callerBudget was sent; only for scopes in keys (store drops both)
	own    map[string]time.Time  // the same for brokerBudget
	order  lruOrder              // of keys' keys, least recently used first

	metrics *metrics     // nil counts nothing
	tracer  trace.Tracer // nil traces nothing
}

func newKeyCache(fetch keyFetcher, ttl time.Duration) *keyCache {
	return &keyCache{
		fetch:  fetch,
		ttl:    ttl,
		max:    maxKeyScopes,
		keys:   make(map[string]sealingKey),
		forced: make(map[string]time.Time),
		own:    make(map[string]time.Time),
	}
}

// budget names one of a scope's two forced-revalidation budgets. Each
// allows one forced revalidation per scope per forcedInterval, and neither
// spends the other's.
type budget int

const (
	// callerBudget is spent by what a caller seals and sends: a key_id
	// that is not the cached key's, GitHub's 422 to a caller-sealed
	// value, and GitHub's 422 to a put naming repository ids (an id
	// GitHub does not know is refused so too).
	callerBudget budget = iota
	// brokerBudget is spent by GitHub's 422 to a value the broker sealed
	// with the cached key.
	brokerBudget
)

// spent returns the map of b's last forced revalidations. c.mu must be held.
func (c *keyCache) spent(b budget) map[string]time.Time {
	if b == brokerBudget {
		return c.own
	}
	return c.forced
}

// get returns the scope's key: from the cache while it is fresh, else
// revalidated or fetched. It is traced as a "key cache lookup" span
// (keytrace.go). GitHub's 404 names the scope as s spells it (notFoundIn).
func (c *keyCache) get(ctx context.Context, s upstream.Scope) (sealingKey, error) {
	k, err := c.traced(ctx, s, "get", c.lookup)
	return k, notFoundIn(err, notFoundKey, scopeName(s), 0)
}

// lookup is get without its span.
func (c *keyCache) lookup(ctx context.Context, s upstream.Scope) (sealingKey, error) {
	k, ok := c.cached(s)
	if ok && c.fresh(k) {
		c.lookedUp(ctx, keyHit)
		return k, nil
	}
	return c.load(ctx, s)
}

// len returns how many scopes have a cached key.
func (c *keyCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.keys)
}

// fresh reports whether k was checked less than a TTL ago.
func (c *keyCache) fresh(k sealingKey) bool {
	return c.ttl <= 0 || time.Since(k.checked) < c.ttl
}

// forcedInterval is how often a scope's key may be revalidated by force:
// once per TTL, or per DefaultKeyTTL when keys never expire.
func (c *keyCache) forcedInterval() time.Duration {
	if c.ttl <= 0 {
		return DefaultKeyTTL
	}
	return c.ttl
}

// cached returns the scope's cached key, however old, without calling
// GitHub. A key found counts as used.
func (c *keyCache) cached(s upstream.Scope) (sealingKey, bool) {
	key := foldedScope(s)
	c.mu.Lock()
	defer c.mu.Unlock()
	k, ok := c.keys[key]
	if ok {
		c.order.touch(key)
	}
	return k, ok
}

// store caches k as the key of the scope whose foldedScope is key, then drops
// the least recently used scopes (with their forced budgets) while more
// than max are held. c.mu must be held.
func (c *keyCache) store(key string, k sealingKey) {
	c.keys[key] = k
	c.order.touch(key)
	for len(c.keys) > max(c.max, 1) {
		old, ok := c.order.oldest()
		if !ok {
			return
		}
		c.order.remove(old)
		delete(c.keys, old)
		delete(c.forced, old)
		delete(c.own, old)
	}
}

// revalidate returns the scope's current key when a caller has reason to
// think the key named stale is out of date. When the cache already holds
// another key, that one is returned and GitHub is not asked. Otherwise the
// cached key is revalidated before its TTL is out, with a conditional
// request (If-None-Match) that GitHub answers 304 without charging primary
// quota, but at most once per scope per forcedInterval: with the budget
// spent, the cached key is returned as it is. Concurrent revalidations of
// one scope are one request. The key is not dropped, so this never costs
// an unconditional fetch (but when GitHub sent the cached key without an
// ETag, the one budgeted revalidation cannot be conditional; and a key the
// bound has dropped, with its budget, is fetched as on a first use).
// It spends callerBudget: it is for what callers seal and send.
func (c *keyCache) revalidate(ctx context.Context, s upstream.Scope, stale upstream.KeyID) (sealingKey, error) {
	return c.revalidateOn(ctx, s, stale, callerBudget)
}

// revalidateSealing is revalidate for GitHub's 422 to a value the broker
// sealed with the key named stale. It spends brokerBudget, which what
// callers send cannot spend, with the same bound.
func (c *keyCache) revalidateSealing(ctx context.Context, s upstream.Scope, stale upstream.KeyID) (sealingKey, error) {
	return c.revalidateOn(ctx, s, stale, brokerBudget)
}

// revalidateOn is revalidate on budget b.
func (c *keyCache) revalidateOn(ctx context.Context, s upstream.Scope, stale upstream.KeyID, b budget) (sealingKey, error) {
	k, err := c.traced(ctx, s, "revalidate", func(ctx context.Context, s upstream.Scope) (sealingKey, error) {
		return c.revalidateKey(ctx, s, stale, b)
	})
	return k, notFoundIn(err, notFoundKey, scopeName(s), 0)
}

// revalidateKey is revalidateOn without its span.
func (c *keyCache) revalidateKey(ctx context.Context, s upstream.Scope, stale upstream.KeyID, b budget) (sealingKey, error) {
	k, ok := c.cached(s)
	if !ok {
		return c.lookup(ctx, s) // nothing cached yet: the first fetch
	}
	if k.id != stale {
		c.lookedUp(ctx, keyHit)
		return k, nil
	}
	path := foldedScope(s)
	// One shared call per budget: a revalidation on one budget must not
	// wait for, and share the answer of, one the other budget refused.
	return share(ctx, &c.group, "forced "+strconv.Itoa(int(b))+" "+path, func(ctx context.Context) (sealingKey, error) {
		c.mu.Lock()
		old, had := c.keys[path]
		switch {
		case !had:
			c.mu.Unlock()
			return c.lookup(ctx, s)
		case old.id != stale:
			// Replaced while this call waited to start.
			c.mu.Unlock()
			c.lookedUp(ctx, keyHit)
			return old, nil
		}
		forced := c.spent(b)
		if last, ok := forced[path]; ok && time.Since(last) < c.forcedInterval() {
			c.mu.Unlock()
			c.lookedUp(ctx, keyHit)
			return old, nil // budget spent
		}
		claimed := time.Now()
		forced[path] = claimed
		c.mu.Unlock()

		k, err := c.check(ctx, s, old, true)
		var te *upstream.ThrottledError
		if errors.As(err, &te) || (err != nil && ctx.Err() != nil) || (err == nil && k.id != old.id && k.id != old.replaced) {
			// The pacer sent nothing, the call ended before GitHub
			// answered (every caller left: it checked nothing), or the
			// check found a rotation: give the budget back. The budget bounds checks that find nothing;
			// one that found a new key was called for, and the next
			// rotation, however soon, must find its key too (refunds are
			// bounded by GitHub's rotations, which no caller causes). A
			// check that found the key the cached one replaced is no
			// rotation: while GitHub answers with the old key and the new
			// in turn (a lagging replica), a caller sending each key's id
			// in turn must not have every call checked at GitHub.
			c.mu.Lock()
			if forced := c.spent(b); forced[path].Equal(claimed) {
				delete(forced, path)
			}
			c.mu.Unlock()
		}
		return k, err
	})
}

// load fetches the scope's key, or revalidates the cached one, once for
// every concurrent caller.
func (c *keyCache) load(ctx context.Context, s upstream.Scope) (sealingKey, error) {
	return share(ctx, &c.group, foldedScope(s), func(ctx context.Context) (sealingKey, error) {
		// A load that finished between our miss and this call has already
		// stored a fresh key.
		old, had := c.cached(s)
		if had && c.fresh(old) {
			c.lookedUp(ctx, keyHit)
			return old, nil
		}
		return c.check(ctx, s, old, had)
	})
}

// check asks GitHub for the scope's key: conditionally on old's ETag when
// there is an old key with one, else outright. It stores and returns the
// answer.
func (c *keyCache) check(ctx context.Context, s upstream.Scope, old sealingKey, had bool) (sealingKey, error) {
	var (
		pk          upstream.PublicKey
		notModified bool
		err         error
	)
	if had && old.etag != "" {
		pk, notModified, err = c.fetch.RevalidatePublicKey(ctx, s, old.etag)
	} else {
		pk, err = c.fetch.GetPublicKey(ctx, s)
	}
	if err != nil {
		return sealingKey{}, err
	}
	k := old
	if !notModified {
		if k, err = decodeKey(pk); err != nil {
			return sealingKey{}, err
		}
		k.replaced = old.replaced
		if had && k.id != old.id {
			k.replaced = old.id
		}
	}
	switch {
	case !had:
		c.lookedUp(ctx, keyMiss)
	case notModified:
		c.lookedUp(ctx, keyRevalidated)
	case k.id != old.id:
		c.lookedUp(ctx, keyRotation)
	default:
		c.lookedUp(ctx, keyRefreshed)
	}
	k.checked = time.Now()
	path := foldedScope(s)
	c.mu.Lock()
	defer c.mu.Unlock()
	// A forced revalidation and a TTL one may run at once: a "not
	// modified" about a key that another answer has since replaced must
	// not put the old key back.
	if cur, ok := c.keys[path]; ok && notModified && cur.id != old.id {
		return cur, nil
	}
	c.store(path, k)
	return k, nil
}

// Bounds on what GitHub sends with a public key. GitHub's key ids are a
// score of digits and its ETags a quoted hash; a key is 44 characters of
// base64. Without them, an answer of a MiB (a key padded with line breaks,
// which Go's base64 decoder skips; an ETag as long as a header may be)
// would be held for each of the maxKeyScopes scopes, and a key_id that
// long written into every record of a secret sealed with it.
const (
	maxKeyIDLen = 256
	maxETagLen  = 256
)

func decodeKey(pk upstream.PublicKey) (sealingKey, error) {
	switch {
	case pk.KeyID == "":
		return sealingKey{}, fmt.Errorf("GitHub sent a public key without a key_id")
	case len(pk.KeyID) > maxKeyIDLen:
		return sealingKey{}, fmt.Errorf("GitHub sent a public key whose key_id is %d bytes long, over %d", len(pk.KeyID), maxKeyIDLen)
	}
	raw, err := base64.StdEncoding.DecodeString(pk.Key)
	if err != nil || len(raw) != 32 || len(pk.Key) != base64.StdEncoding.EncodedLen(32) {
		return sealingKey{}, fmt.Errorf("GitHub sent public key %q that is not 32 base64-encoded bytes", truncate(string(pk.KeyID), maxQuotedKeyID))
	}
	k := sealingKey{id: pk.KeyID, encoded: pk.Key, etag: pk.ETag}
	copy(k.key[:], raw)
	if sealedbox.LowOrder(&k.key) {
		// Every box sealed to it opens for anyone. libsodium refuses to
		// seal to it and so does the broker; handed to a caller, it might
		// be sealed to with a library that does not check.
		return sealingKey{}, fmt.Errorf("GitHub sent public key %q, a point of low order that no value may be sealed to", truncate(string(pk.KeyID), maxQuotedKeyID))
	}
	if len(k.etag) > maxETagLen {
		k.etag = "" // revalidated with an unconditional request
	}
	return k, nil
}

// lruOrder orders the keys of a bounded map from least to most recently
// used, so that its owner can drop the oldest when the map is full. It is
// not safe for concurrent use: the owner's lock guards it. The zero value
// is empty and ready to use.
type lruOrder struct {
	list list.List                // of string; Front is the least recently used
	at   map[string]*list.Element // each key's element in list
}

// touch marks key as the most recently used, adding it when absent.
func (o *lruOrder) touch(key string) {
	if e, ok := o.at[key]; ok {
		o.list.MoveToBack(e)
		return
	}
	if o.at == nil {
		o.at = make(map[string]*list.Element)
	}
	o.at[key] = o.list.PushBack(key)
}

// remove forgets key.
func (o *lruOrder) remove(key string) {
	if e, ok := o.at[key]; ok {
		o.list.Remove(e)
		delete(o.at, key)
	}
}

// oldest returns the least recently used key; false when there is none.
func (o *lruOrder) oldest() (string, bool) {
	e := o.list.Front()
	if e == nil {
		return "", false
	}
	key, _ := e.Value.(string)
	return key, true
}

// len returns how many keys o holds.
func (o *lruOrder) len() int { return len(o.at) }
