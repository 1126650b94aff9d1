package main

import (
	"context"
	"crypto/rand"
	"errors"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/secretbroker/secretbroker/upstream"
	"github.com/secretbroker/secretbroker/upstream/pace"
	"github.com/secretbroker/secretbroker/upstream/pace/redisstate"
)

// runReplicas runs c.replicas brokers, each with its own upstream client
// and Redis connection, sharing the credential's budget through the Redis
// at c.redisAddr (redisstate), and sends each its share of the items
// (round robin) in one BatchPutSecrets call, all at once.
func runReplicas(ctx context.Context, c config, w *world) ([]bool, int, error) {
	if c.redisAddr == "" {
		return nil, 0, errors.New("--replicas above 1 needs a Redis")
	}
	cred := "bench-" + rand.Text() // a fresh budget per run
	bg, stop := context.WithCancel(ctx)
	var loops sync.WaitGroup
	defer func() {
		stop()
		loops.Wait()
	}()
	type replica struct {
		up    *upstream.Client
		rc    *redis.Client
		items []item
		index []int
	}
	reps := make([]*replica, c.replicas)
	for i := range reps {
		r := &replica{rc: redis.NewClient(&redis.Options{Addr: c.redisAddr, MaxRetries: -1,
			DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second})}
		defer r.rc.Close()
		up, err := upstream.New(upstream.Config{BaseURL: emulatorURL, Token: benchToken, Pacing: &c.pacing, HTTPClient: w.hc,
			SharedState: func(credential string, lim pace.StateLimits) (pace.State, error) {
				st, err := redisstate.New(redisstate.Options{Client: r.rc, Credential: cred + "-" + credential,
					Limits: lim, ExpectedReplicas: c.replicas})
				if err != nil {
					return nil, err
				}
				st.Sync(ctx, time.Now())
				loops.Go(func() { st.Run(bg) })
				return st, nil
			}})
		if err != nil {
			return nil, 0, err
		}
		r.up = up
		reps[i] = r
	}
	for i, it := range w.items {
		r := reps[i%len(reps)]
		r.items = append(r.items, it)
		r.index = append(r.index, i)
	}
	done := make([]bool, len(w.items))
	errs := make([]error, len(reps))
	var wg sync.WaitGroup
	for i, r := range reps {
		wg.Go(func() {
			d, err := serveBatch(ctx, r.up, r.items)
			errs[i] = err
			for j, ok := range d {
				done[r.index[j]] = ok
			}
		})
	}
	wg.Wait()
	retries := 0
	for _, r := range reps {
		retries += r.up.PacerStats().Retries
	}
	return done, retries, errors.Join(errs...)
}
