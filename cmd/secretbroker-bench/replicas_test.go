package main

import (
	"io"
	"testing"
	"testing/synctest"
	"time"

	"github.com/secretbroker/secretbroker/upstream"
	"github.com/secretbroker/secretbroker/upstream/pace/redistest"
)

// Two replicas sharing one Redis write every item once, with no violation,
// in exactly the least time one broker's limits allow: they pace as one.
func TestMeasureReplicas(t *testing.T) {
	srv := redistest.Start(t)
	c := config{naiveConcurrency: 10, pacing: upstream.DefaultPacing(), replicas: 2, redisAddr: srv.Addr}
	const n, k = 40, 4
	synctest.Test(t, func(t *testing.T) {
		r, err := measure(t.Context(), c, "broker", n, k)
		if err != nil {
			t.Fatal(err)
		}
		if r.client != "broker ×2" || r.written != n || r.lost != 0 || r.failed != 0 || r.violations != 0 || r.retries != 0 {
			t.Errorf("%+v", r)
		}
		// Items go round robin to the scopes and to the replicas, so with
		// 4 scopes each replica writes to 2: each key is fetched once,
		// and each scope listed once at the end to read updated_at back.
		if want := brokerRequests(n, k, 2); r.requests != want {
			t.Errorf("%d requests, want %d", r.requests, want)
		}
		if want := 39 * time.Second; r.minimum != want || r.elapsed != want {
			t.Errorf("took %v, least %v; want %v", r.elapsed, r.minimum, want)
		}
	})
}

func TestReplicaFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--replicas", "0"},
		{"--replicas", "9"},
		{"--real-time", "--replicas", "2"}, // needs --redis-addr
	} {
		if err := realMain(t.Context(), args, io.Discard, io.Discard); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
}
