package service

import (
	"context"
	"encoding/base64"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/secretbroker/secretbroker/upstream"
)

// keyFetcher fetches a scope's current public key from GitHub, outright or
// conditionally on an ETag.
type keyFetcher interface {
	GetPublicKey(ctx context.Context, s upstream.Scope) (upstream.PublicKey, error)
	RevalidatePublicKey(ctx context.Context, s upstream.Scope, etag string) (pk upstream.PublicKey, notModified bool, err error)
}

// sealingKey is a scope's public key, decoded and ready to seal with.
type sealingKey struct {
	id      upstream.KeyID
	encoded string // base64, as GitHub sent it
	key     [32]byte
	etag    string // of the answer that carried it; "" when GitHub sent none
	checked time.Time
}

// keyCache caches each scope's public key. A key older than the TTL is
// revalidated with a conditional request (If-None-Match), which GitHub
// answers with 304 when the key is unchanged; a 304 does not count against
// GitHub's primary rate limit. Concurrent fetches for one scope are merged
// into one upstream call (share); no lock is held across an upstream call.
type keyCache struct {
	fetch keyFetcher
	ttl   time.Duration
	now   func() time.Time

	group singleflight.Group
	mu    sync.RWMutex
	keys  map[string]sealingKey // by scope path
}

func newKeyCache(fetch keyFetcher, ttl time.Duration, now func() time.Time) *keyCache {
	return &keyCache{
		fetch: fetch,
		ttl:   ttl,
		now:   now,
		keys:  make(map[string]sealingKey),
	}
}

// get returns the scope's key: from the cache while it is fresh, else
// revalidated or fetched.
func (c *keyCache) get(ctx context.Context, s upstream.Scope) (sealingKey, error) {
	k, ok := c.cached(s)
	if ok && (c.ttl <= 0 || c.now().Sub(k.checked) < c.ttl) {
		return k, nil
	}
	return c.load(ctx, s)
}

// cached returns the scope's cached key, however old, without calling
// GitHub.
func (c *keyCache) cached(s upstream.Scope) (sealingKey, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	k, ok := c.keys[s.Path()]
	return k, ok
}

// refresh drops the cached key when it is still the one named stale, then
// returns the scope's current key. A key another caller has already
// replaced is not dropped again, so one rotation costs one fetch.
func (c *keyCache) refresh(ctx context.Context, s upstream.Scope, stale upstream.KeyID) (sealingKey, error) {
	c.forget(s, stale)
	return c.get(ctx, s)
}

// forget drops the scope's cached key if it is the one named.
func (c *keyCache) forget(s upstream.Scope, id upstream.KeyID) {
	path := s.Path()
	c.mu.Lock()
	if k, ok := c.keys[path]; ok && k.id == id {
		delete(c.keys, path)
	}
	c.mu.Unlock()
}

// load fetches the scope's key, or revalidates the cached one, once for
// every concurrent caller.
func (c *keyCache) load(ctx context.Context, s upstream.Scope) (sealingKey, error) {
	path := s.Path()
	return share(ctx, &c.group, path, func(ctx context.Context) (sealingKey, error) {
		// A load that finished between our miss and this call has already
		// stored a fresh key.
		old, had := c.cached(s)
		if had && (c.ttl <= 0 || c.now().Sub(old.checked) < c.ttl) {
			return old, nil
		}
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
		}
		k.checked = c.now()
		c.mu.Lock()
		c.keys[path] = k
		c.mu.Unlock()
		return k, nil
	})
}

func decodeKey(pk upstream.PublicKey) (sealingKey, error) {
	if pk.KeyID == "" {
		return sealingKey{}, fmt.Errorf("GitHub sent a public key without a key_id")
	}
	raw, err := base64.StdEncoding.DecodeString(pk.Key)
	if err != nil || len(raw) != 32 {
		return sealingKey{}, fmt.Errorf("GitHub sent public key %s that is not 32 base64-encoded bytes", pk.KeyID)
	}
	k := sealingKey{id: pk.KeyID, encoded: pk.Key, etag: pk.ETag}
	copy(k.key[:], raw)
	return k, nil
}
