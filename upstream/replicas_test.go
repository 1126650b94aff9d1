package upstream_test

// Two replicas of the broker (two upstream.Clients, each with its own
// Redis connection and redisstate.State) share one credential's budget
// through a real redis-server, against one emulator with github.com's
// limits (content limits included), driven at once. Two broker processes
// end to end would add nothing to what the pacing does here; the clients
// are the part of a broker that talks to GitHub.
//
// The emulator, the clients and the pacers run in a testing/synctest
// bubble (fake time, reached in memory); Redis answers over loopback in
// real time, while the bubble's time stands still, and takes the time
// from the pacers (every script's now is the caller's).

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/crypto/nacl/box"

	"github.com/secretbroker/secretbroker/upstream"
	"github.com/secretbroker/secretbroker/upstream/emulator"
	"github.com/secretbroker/secretbroker/upstream/pace"
	"github.com/secretbroker/secretbroker/upstream/pace/redisstate"
	"github.com/secretbroker/secretbroker/upstream/pace/redistest"
)

const replicaToken = "replica-token"

// emuTransport serves requests in memory with the emulator and records when
// each accepted write (2xx) arrived.
type emuTransport struct {
	h http.Handler

	mu     sync.Mutex
	writes []time.Time
}

func (e *emuTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	at := time.Now()
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, r)
	if r.Body != nil {
		_ = r.Body.Close()
	}
	if r.Method == http.MethodPut && rec.Code/100 == 2 {
		e.mu.Lock()
		e.writes = append(e.writes, at)
		e.mu.Unlock()
	}
	return rec.Result(), nil
}

// replica is one broker replica's client and shared state.
type replica struct {
	client *upstream.Client
	state  *redisstate.State
	redis  *redis.Client
}

func newReplica(t *testing.T, addr, cred string, tr http.RoundTripper) *replica {
	t.Helper()
	r := &replica{redis: redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1,
		DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second})}
	pacing := upstream.DefaultPacing()
	c, err := upstream.New(upstream.Config{
		BaseURL:    "https://github.example",
		Token:      replicaToken,
		HTTPClient: &http.Client{Transport: tr},
		Pacing:     &pacing,
		SharedState: func(credential string, lim pace.StateLimits) (pace.State, error) {
			st, err := redisstate.New(redisstate.Options{Client: r.redis, Credential: cred + "-" + credential,
				Limits: lim, ExpectedReplicas: 2})
			r.state = st
			return st, err
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	r.client = c
	return r
}

func seal(t *testing.T, pk upstream.PublicKey, value string) upstream.PutSecretBody {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(pk.Key)
	if err != nil || len(raw) != 32 {
		t.Fatalf("public key: %v", err)
	}
	sealed, err := box.SealAnonymous(nil, []byte(value), (*[32]byte)(raw), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return upstream.PutSecretBody{EncryptedValue: base64.StdEncoding.EncodeToString(sealed), KeyID: pk.KeyID}
}

func TestReplicasShareOneBudget(t *testing.T) {
	srv := redistest.Start(t)
	const (
		perReplica = 400 // 800 writes: the hourly content budget (500) binds
		writers    = 4   // goroutines per replica
	)
	tests := []struct {
		name string
		// outage, when positive, stops Redis at t0+outage and restarts it,
		// empty, 100 s later.
		outage time.Duration
	}{
		{"steady", 0},
		{"redis restarted empty mid-run", 200 * time.Second},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				emu := emulator.New(emulator.Options{Token: replicaToken, Limits: emulator.GitHubLimits()})
				emu.AddOrg("octo")
				emu.AddRepo("octo", "app", false)
				tr := &emuTransport{h: emu}
				cred := "test" + strconv.Itoa(i)
				reps := []*replica{newReplica(t, srv.Addr, cred, tr), newReplica(t, srv.Addr, cred, tr)}
				ctx, cancel := context.WithCancel(t.Context())
				var bg sync.WaitGroup
				for _, r := range reps {
					bg.Go(func() { r.state.Run(ctx) })
				}
				scope := upstream.Scope{App: upstream.Actions, Owner: "octo", Repo: "app"}
				pk, err := reps[0].client.GetPublicKey(ctx, scope)
				if err != nil {
					t.Fatal(err)
				}
				t0 := time.Now()
				if tc.outage > 0 {
					bg.Go(func() {
						time.Sleep(tc.outage)
						srv.Stop()
						time.Sleep(100 * time.Second)
						srv.Restart()
					})
				}

				var mu sync.Mutex
				acked := map[string]string{}
				var failed []error
				var work sync.WaitGroup
				for ri, r := range reps {
					for w := range writers {
						work.Go(func() {
							for k := w; k < perReplica; k += writers {
								name := fmt.Sprintf("S_%d_%03d", ri, k)
								value := fmt.Sprintf("value-%d-%d", ri, k)
								_, err := r.client.PutSecret(ctx, scope, name, seal(t, pk, value))
								mu.Lock()
								if err != nil {
									failed = append(failed, err)
								} else {
									acked[name] = value
								}
								mu.Unlock()
							}
						})
					}
				}
				work.Wait()
				elapsed := time.Since(t0)
				cancel()
				bg.Wait()
				for _, r := range reps {
					_ = r.redis.Close()
				}

				st := emu.Stats()
				if st.SecondaryViolations != 0 || st.PrimaryViolations != 0 || st.ContentViolations != 0 {
					t.Errorf("emulator saw violations: %+v", st)
				}
				if len(failed) > 0 {
					t.Errorf("%d writes failed, first: %v", len(failed), failed[0])
				}
				// No acknowledged write is lost.
				for name, value := range acked {
					got, err := emu.Open("repos/octo/app/actions", name)
					if err != nil || string(got) != value {
						t.Fatalf("acknowledged %s: stored %q, %v", name, got, err)
					}
				}
				if len(acked) != 2*perReplica {
					t.Errorf("%d writes acknowledged, want %d", len(acked), 2*perReplica)
				}

				// The combined rate: the hourly budget is 500 writes; the
				// first hour from the first write saw at least 95% of it,
				// and never more (the emulator would have refused).
				tr.mu.Lock()
				writes := append([]time.Time(nil), tr.writes...)
				tr.mu.Unlock()
				sort.Slice(writes, func(a, b int) bool { return writes[a].Before(writes[b]) })
				first := writes[0]
				inHour := sort.Search(len(writes), func(k int) bool { return !writes[k].Before(first.Add(time.Hour)) })
				if inHour < 475 || inHour > 500 {
					t.Errorf("%d writes in the first hour, want 475 to 500 (95%% of the 500 permitted)", inHour)
				}
				// And the whole run took at most 5% more than the least
				// time the limits allow: 500 writes 1 s apart, the 501st an
				// hour after the first, then 299 more 1 s apart.
				least := time.Hour + 299*time.Second
				if elapsed > least+least/20 {
					t.Errorf("took %v, more than 5%% over the least time %v", elapsed, least)
				}
				t.Logf("%d writes, %d in the first hour, took %v (least %v)", len(writes), inHour, elapsed, least)
				for k, r := range reps {
					up, since := r.state.Up()
					if !up {
						t.Errorf("replica %d did not return to the shared budget: %s", k, r.state.Status())
					}
					// It fell back during the outage, and only then.
					if fell := !since.IsZero(); fell != (tc.outage > 0) || (fell && since.Before(t0.Add(tc.outage))) {
						t.Errorf("replica %d: fell back at %v (zero: never), outage at +%v", k, since, tc.outage)
					}
				}
			})
		})
	}
}

// hangTransport holds the first PUT until release is closed: the replica
// sending it dies with it in flight. Others go to next.
type hangTransport struct {
	next    http.RoundTripper
	once    sync.Once
	started chan struct{}
	release chan struct{}
}

func (h *hangTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	hang := false
	if r.Method == http.MethodPut {
		h.once.Do(func() { hang = true })
	}
	if hang {
		close(h.started)
		<-h.release
		return nil, fmt.Errorf("connection lost")
	}
	return h.next.RoundTrip(r)
}

// A replica killed while its write holds the shared write slot blocks the
// other for at most the slot's lease (3 write intervals); the other keeps
// serving, within the limits.
func TestReplicaKilledHoldingTheWriteSlot(t *testing.T) {
	srv := redistest.Start(t)
	synctest.Test(t, func(t *testing.T) {
		emu := emulator.New(emulator.Options{Token: replicaToken, Limits: emulator.GitHubLimits()})
		emu.AddOrg("octo")
		emu.AddRepo("octo", "app", false)
		tr := &emuTransport{h: emu}
		hang := &hangTransport{next: tr, started: make(chan struct{}), release: make(chan struct{})}
		a, b := newReplica(t, srv.Addr, "killed", hang), newReplica(t, srv.Addr, "killed", tr)
		ctx := t.Context()
		scope := upstream.Scope{App: upstream.Actions, Owner: "octo", Repo: "app"}
		pk, err := b.client.GetPublicKey(ctx, scope)
		if err != nil {
			t.Fatal(err)
		}
		// Both join Redis, past the fresh epoch's grace, before writing.
		time.Sleep(redisstate.DefaultSeedGrace)
		a.state.Sync(ctx, time.Now())
		b.state.Sync(ctx, time.Now())
		bctx, stopB := context.WithCancel(ctx)
		var bg sync.WaitGroup
		bg.Go(func() { b.state.Run(bctx) })

		var aDone sync.WaitGroup
		aDone.Go(func() { _, _ = a.client.PutSecret(ctx, scope, "A_DIES", seal(t, pk, "lost")) })
		<-hang.started
		killed := time.Now()
		_ = a.redis.Close() // A is gone: no renewal, no Done reaches Redis

		const n = 10
		for i := range n {
			if _, err := b.client.PutSecret(ctx, scope, fmt.Sprintf("B_%d", i), seal(t, pk, "v"+strconv.Itoa(i))); err != nil {
				t.Fatalf("B's write %d: %v", i, err)
			}
		}
		tr.mu.Lock()
		writes := append([]time.Time(nil), tr.writes...)
		tr.mu.Unlock()
		lease := 3 * time.Second // 3 × the 1 s write interval
		// A's write took the slot when it started (killed); B waits for
		// the lease to run out, exactly, and no longer.
		if len(writes) != n || writes[0].Sub(killed) != lease {
			t.Errorf("B's first write %v after A died, want the %v lease; %d writes", writes[0].Sub(killed), lease, len(writes))
		}
		for i := 1; i < len(writes); i++ {
			if d := writes[i].Sub(writes[i-1]); d != time.Second {
				t.Errorf("B's writes %d and %d %v apart, want 1s", i-1, i, d)
			}
		}
		if st := emu.Stats(); st.SecondaryViolations != 0 || st.PrimaryViolations != 0 {
			t.Errorf("violations: %+v", st)
		}
		close(hang.release)
		aDone.Wait()
		stopB()
		bg.Wait()
		_ = b.redis.Close()
	})
}

// Two replicas near the end of the primary quota, each with requests in
// flight (every answer takes 200 ms): together they never send more than
// x-ratelimit-remaining says are left, so GitHub refuses none, and they
// use the quota whole; the calls past it are refused by the pacers (their
// deadlines come before the reset), not sent. (Each replica's own bound
// alone lets GitHub refuse 6 here: both send the 8 each thinks are left.)
func TestReplicasShareThePrimaryQuota(t *testing.T) {
	srv := redistest.Start(t)
	const (
		quota   = 40
		callers = 8 // goroutines per replica
		calls   = 10
	)
	synctest.Test(t, func(t *testing.T) {
		emu := emulator.New(emulator.Options{Token: replicaToken, Limits: emulator.Limits{PrimaryPerHour: quota}})
		emu.AddOrg("octo")
		emu.AddRepo("octo", "app", false)
		emu.InjectFault(emulator.Fault{Latency: 200 * time.Millisecond, Times: 10 * 2 * callers * calls})
		tr := &emuTransport{h: emu}
		reps := []*replica{newReplica(t, srv.Addr, "primary", tr), newReplica(t, srv.Addr, "primary", tr)}
		scope := upstream.Scope{App: upstream.Actions, Owner: "octo", Repo: "app"}
		seedSharedStates(t, scope, reps[0].client, reps[1].client)
		var mu sync.Mutex
		sent, refused := 2, 0
		var others []error
		var work sync.WaitGroup
		for _, r := range reps {
			for range callers {
				work.Go(func() {
					for range calls {
						ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
						_, err := r.client.GetPublicKey(ctx, scope)
						cancel()
						_, throttled := errors.AsType[*upstream.ThrottledError](err)
						mu.Lock()
						switch {
						case err == nil:
							sent++
						case throttled:
							refused++
						default:
							others = append(others, err)
						}
						mu.Unlock()
					}
				})
			}
		}
		work.Wait()
		for _, r := range reps {
			_ = r.redis.Close()
		}
		st := emu.Stats()
		if st.PrimaryViolations != 0 {
			t.Errorf("GitHub refused %d requests past the primary quota (%+v)", st.PrimaryViolations, st)
		}
		if len(others) > 0 {
			t.Errorf("%d calls failed otherwise, first: %v", len(others), others[0])
		}
		if sent != quota || sent+refused != 2+2*callers*calls {
			t.Errorf("%d calls answered and %d refused by the pacers, want %d answered (the quota) and the rest refused", sent, refused, quota)
		}
		t.Logf("%d answered, %d refused by the pacers", sent, refused)
	})
}

// seedSharedStates makes each client's shared state with one call on
// scope, then waits (in fake time) past the new epoch's grace, after which
// the states decide from Redis, not from their local shares.
func seedSharedStates(t *testing.T, scope upstream.Scope, clients ...*upstream.Client) {
	t.Helper()
	for _, c := range clients {
		if _, err := c.GetPublicKey(t.Context(), scope); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(redisstate.DefaultSeedGrace + time.Second)
}
