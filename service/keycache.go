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

// keyFetcher fetches a scope's current public key from GitHub.
type keyFetcher interface {
	GetPublicKey(ctx context.Context, s upstream.Scope) (upstream.PublicKey, error)
}

// sealingKey is a scope's public key, decoded and ready to seal with.
type sealingKey struct {
	id      upstream.KeyID
	encoded string // base64, as GitHub sent it
	key     [32]byte
	fetched time.Time
}

// keyCache caches each scope's public key. Concurrent misses for one scope
// are merged into one upstream call (singleflight); no lock is held across
// an upstream call. A waiter whose context ends stops waiting and forgets
// the call, as net.Resolver does, so the next caller starts afresh rather
// than joining a fetch that may be stuck.
type keyCache struct {
	fetch   keyFetcher
	ttl     time.Duration
	now     func() time.Time
	timeout time.Duration // bound on one fetch, which outlives its callers

	group singleflight.Group
	mu    sync.RWMutex
	keys  map[string]sealingKey // by scope path
}

func newKeyCache(fetch keyFetcher, ttl time.Duration, now func() time.Time) *keyCache {
	return &keyCache{
		fetch:   fetch,
		ttl:     ttl,
		now:     now,
		timeout: 30 * time.Second,
		keys:    make(map[string]sealingKey),
	}
}

// get returns the scope's key, from the cache while it is fresh.
func (c *keyCache) get(ctx context.Context, s upstream.Scope) (sealingKey, error) {
	path := s.Path()
	c.mu.RLock()
	k, ok := c.keys[path]
	c.mu.RUnlock()
	if ok && (c.ttl <= 0 || c.now().Sub(k.fetched) < c.ttl) {
		return k, nil
	}
	return c.load(ctx, s, path)
}

// refresh drops the cached key when it is still the one named stale, then
// returns the scope's current key. A key another caller has already
// replaced is not dropped again, so one rotation costs one fetch.
func (c *keyCache) refresh(ctx context.Context, s upstream.Scope, stale upstream.KeyID) (sealingKey, error) {
	path := s.Path()
	c.mu.Lock()
	if k, ok := c.keys[path]; ok && k.id == stale {
		delete(c.keys, path)
	}
	c.mu.Unlock()
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

func (c *keyCache) load(ctx context.Context, s upstream.Scope, path string) (sealingKey, error) {
	ch := c.group.DoChan(path, func() (any, error) {
		// The fetch serves every waiter, so it must not end with the
		// first caller's context; it keeps the caller's trace.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.timeout)
		defer cancel()
		pk, err := c.fetch.GetPublicKey(fctx, s)
		if err != nil {
			return sealingKey{}, err
		}
		k, err := decodeKey(pk)
		if err != nil {
			return sealingKey{}, err
		}
		k.fetched = c.now()
		c.mu.Lock()
		c.keys[path] = k
		c.mu.Unlock()
		return k, nil
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return sealingKey{}, r.Err
		}
		return r.Val.(sealingKey), nil
	case <-ctx.Done():
		c.group.Forget(path)
		return sealingKey{}, fmt.Errorf("waiting for the public key of %s: %w", path, ctx.Err())
	}
}

func decodeKey(pk upstream.PublicKey) (sealingKey, error) {
	if pk.KeyID == "" {
		return sealingKey{}, fmt.Errorf("GitHub sent a public key without a key_id")
	}
	raw, err := base64.StdEncoding.DecodeString(pk.Key)
	if err != nil || len(raw) != 32 {
		return sealingKey{}, fmt.Errorf("GitHub sent public key %s that is not 32 base64-encoded bytes", pk.KeyID)
	}
	k := sealingKey{id: pk.KeyID, encoded: pk.Key}
	copy(k.key[:], raw)
	return k, nil
}
