package redisstate_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/secretbroker/secretbroker/upstream/pace"
	"github.com/secretbroker/secretbroker/upstream/pace/redisstate"
	"github.com/secretbroker/secretbroker/upstream/pace/redistest"
	"github.com/secretbroker/secretbroker/upstream/pace/statetest"
)

// benchLogs are the logs' lengths the benchmarks run at, by the spacing
// of their requests: 895 in a minute is GitHub's points budget of 900
// almost spent.
var benchLogs = []struct {
	name  string
	every time.Duration
}{{"log=90", 667 * time.Millisecond}, {"log=900", 67 * time.Millisecond}}

// fullLog returns a State whose minute before the returned time is full:
// a request every every, each of took response time, completed.
func fullLog(b *testing.B, lim pace.StateLimits, every, took time.Duration) (*redisstate.State, time.Time) {
	b.Helper()
	srv := redistest.Start(b)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1, DialTimeout: time.Second,
		ReadTimeout: time.Second, WriteTimeout: time.Second})
	b.Cleanup(func() { _ = client.Close() })
	st, err := redisstate.New(redisstate.Options{Client: client, Credential: "bench", Limits: lim, ExpectedReplicas: 1})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	now := statetest.T0
	st.Sync(ctx, now.Add(-time.Hour))
	for i := range int(pace.Window / every) {
		g := pace.Grant{ID: "fill-" + strconv.Itoa(i), Cost: pace.ReadPoints, CPU: took, Took: took}
		if v := st.Start(ctx, now, g); !v.OK {
			b.Fatalf("filling the log: request %d refused: %+v", i, v)
		}
		st.Done(ctx, now, g, ok204)
		now = now.Add(every)
	}
	return st, now
}

// BenchmarkRequest is what one request costs the State (its Start,
// granted, and its Done) while the minute's logs are full, with the
// CPU-time budget on: at log=900, the steady state of a credential at
// GitHub's points budget. Time moves on by the spacing each request, so
// one entry leaves the window for each that comes.
func BenchmarkRequest(b *testing.B) {
	const took = 50 * time.Millisecond // 895 × 50 ms: 45 s of the 80 s budget
	lim := pace.StateLimits{PointsPerMinute: 900, CPUPerMinute: pace.DefaultCPUPerMinute, MaxInFlight: pace.MaxConcurrent}
	for _, bl := range benchLogs {
		b.Run(bl.name, func(b *testing.B) {
			st, now := fullLog(b, lim, bl.every, took)
			ctx := context.Background()
			i := 0
			for b.Loop() {
				g := pace.Grant{ID: "req-" + strconv.Itoa(i), Cost: pace.ReadPoints, CPU: took, Took: took}
				if v := st.Start(ctx, now, g); !v.OK {
					b.Fatalf("request %d refused: %+v", i, v)
				}
				st.Done(ctx, now, g, ok204)
				now = now.Add(bl.every)
				i++
			}
		})
	}
}

// BenchmarkWait is what a request the CPU-time budget holds back costs
// the State (its Start, a wait) while the minute's log is full (79.7 s of
// the 80 s budget) and the request is expected to take a second.
func BenchmarkWait(b *testing.B) {
	lim := pace.StateLimits{CPUPerMinute: pace.DefaultCPUPerMinute, MaxInFlight: pace.MaxConcurrent}
	for _, bl := range benchLogs {
		b.Run(bl.name, func(b *testing.B) {
			took := time.Duration(79.7 * float64(time.Second) / float64(pace.Window/bl.every)).Truncate(time.Millisecond)
			st, now := fullLog(b, lim, bl.every, took)
			ctx := context.Background()
			now = now.Add(-bl.every) // no entry has left the window
			for b.Loop() {
				if v := st.Start(ctx, now, pace.Grant{ID: "wait", Cost: pace.ReadPoints, CPU: time.Second}); v.OK || v.Why != pace.ReasonCPU {
					b.Fatalf("Start = %+v, want a wait for the CPU-time budget", v)
				}
			}
		})
	}
}
