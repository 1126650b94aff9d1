package main

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/secretbroker/secretbroker/upstream"
	"github.com/secretbroker/secretbroker/upstream/pace"
	"github.com/secretbroker/secretbroker/upstream/pace/redisstate"
)

// Timeouts of the Redis client; one pacing decision is bounded by
// redisstate.DefaultOpTimeout on top.
const (
	redisDialTimeout = time.Second
	redisIOTimeout   = 500 * time.Millisecond
)

// sharedStates is the broker's side of the pacing state its replicas share
// through Redis (--redis-url): one Redis client, one redisstate.State per
// credential, each checking Redis in the background.
type sharedStates struct {
	client   *redis.Client
	replicas int
	logger   *slog.Logger
	ctx      context.Context // the background loops' lifetime

	mu     sync.Mutex
	states map[string]*redisstate.State
	loops  sync.WaitGroup
}

// quietRedis drops go-redis' own log lines (a dial failure per attempt);
// redisstate logs one line per outage instead.
type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}

// newSharedStates returns the shared states of cfg's Redis; nil when no
// Redis is configured. The background loops run until ctx ends; close
// waits for them and closes the client.
func newSharedStates(ctx context.Context, cfg Config, logger *slog.Logger) (*sharedStates, error) {
	u := cfg.RedisURLInUse()
	if u == nil {
		return nil, nil
	}
	opts, err := redis.ParseURL(u.String())
	if err != nil {
		// The error may quote the URL: say only which setting is wrong.
		return nil, fmt.Errorf("the Redis URL (%s) is not usable by the Redis client", cfg.redisShown())
	}
	opts.DialTimeout = redisDialTimeout
	opts.ReadTimeout = redisIOTimeout
	opts.WriteTimeout = redisIOTimeout
	opts.ContextTimeoutEnabled = true
	opts.MaxRetries = -1 // a failure falls back at once; the heartbeat retries
	redis.SetLogger(quietRedis{})
	return &sharedStates{
		client:   redis.NewClient(opts),
		replicas: cfg.ExpectedReplicas,
		logger:   logger.With(slog.String("component", "pacing-state")),
		ctx:      ctx,
		states:   map[string]*redisstate.State{},
	}, nil
}

// stateFunc is upstream.Config.SharedState: a State per credential, its
// background loop started, until the broker stops or the client closes it
// (closingState).
func (s *sharedStates) stateFunc() upstream.StateFunc {
	return func(credential string, lim pace.StateLimits) (pace.State, error) {
		st, err := redisstate.New(redisstate.Options{Client: s.client, Credential: credential, Limits: lim,
			ExpectedReplicas: s.replicas, Logger: s.logger})
		if err != nil {
			return nil, err
		}
		s.mu.Lock()
		s.states[credential] = st
		s.mu.Unlock()
		st.Sync(s.ctx, time.Now()) // joins Redis now, or starts degraded
		ctx, stop := context.WithCancel(s.ctx)
		s.loops.Go(func() { st.Run(ctx) })
		return closingState{State: st, close: sync.OnceFunc(func() {
			stop()
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.states[credential] == st {
				delete(s.states, credential)
			}
		})}, nil
	}
}

// closingState is a credential's State as the upstream client holds it:
// the client closes it when it drops the credential (a GitHub App
// installation GitHub reports gone), which ends its heartbeat and takes it
// out of /readyz and secretbroker_pacer_shared_state_up. Its keys in Redis
// expire on their own.
type closingState struct {
	*redisstate.State
	close func()
}

// Close ends the state's background loop and forgets it; more calls do
// nothing.
func (c closingState) Close() { c.close() }

// detail is /readyz's detail: "" when every credential paces from Redis,
// else why not, one line.
func (s *sharedStates) detail() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var lines []string
	for _, st := range s.states {
		if line := st.Status(); line != "" {
			lines = append(lines, line)
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "; ")
}

// registerMetrics adds secretbroker_pacer_shared_state_up{credential}: 1
// while the credential paces from Redis, 0 while from its local budget.
func (s *sharedStates) registerMetrics(mp metric.MeterProvider) error {
	meter := mp.Meter("github.com/secretbroker/secretbroker/cmd/secretbroker")
	_, err := meter.Int64ObservableGauge("secretbroker_pacer_shared_state_up",
		metric.WithDescription("1 while the credential's pacing state is shared through Redis, 0 while Redis is unreachable and the replica paces within its local budget"),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			s.mu.Lock()
			defer s.mu.Unlock()
			for cred, st := range s.states {
				v := int64(0)
				if up, _ := st.Up(); up {
					v = 1
				}
				o.Observe(v, metric.WithAttributes(attribute.String("credential", cred)))
			}
			return nil
		}))
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	return nil
}

// redisClient is the client of cfg's Redis, for the state store too; nil
// when no Redis is configured.
func (s *sharedStates) redisClient() redis.UniversalClient {
	if s == nil {
		return nil
	}
	return s.client
}

// close waits for the background loops (ctx must have ended) and closes
// the client.
func (s *sharedStates) close() {
	s.loops.Wait()
	_ = s.client.Close()
}
