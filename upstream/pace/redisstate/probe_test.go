package redisstate_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/secretbroker/secretbroker/upstream/pace"
	"github.com/secretbroker/secretbroker/upstream/pace/redisstate"
	"github.com/secretbroker/secretbroker/upstream/pace/redistest"
	"github.com/secretbroker/secretbroker/upstream/pace/statetest"
)

// A pause written by the previous version (a rolling upgrade: the holds
// hash has pause and reason, and no word of a probe) is taken to need a
// probe when it is a secondary pause, as that version's replicas each
// probed after one: once it is over, one replica's request is the probe
// and the others wait for it. A primary-quota pause (GitHub said when it
// ends) needs none.
func TestPreviousVersionsPauseIsProbed(t *testing.T) {
	tests := []struct {
		name   string
		reason pace.Reason
		probe  bool
	}{
		{"secondary pause", pace.ReasonPause, true},
		{"primary quota used up", pace.ReasonPrimary, false},
	}
	srv := redistest.Start(t)
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, t0 := context.Background(), statetest.T0
			cred := "upgrade-" + strconv.Itoa(i)
			lim := pace.StateLimits{SecondaryPause: time.Minute}
			a := newState(t, newClient(t, srv), cred, lim, 2)
			b := newState(t, newClient(t, srv), cred, lim, 2)
			a.Sync(ctx, t0.Add(-time.Hour))
			b.Sync(ctx, t0.Add(-time.Hour))
			end := t0.Add(time.Minute)
			h := redisstate.DefaultPrefix + "{" + cred + "}:h"
			if err := newClient(t, srv).HSet(ctx, h, "pause", end.UnixMilli(), "reason", int(tc.reason)).Err(); err != nil {
				t.Fatal(err)
			}
			if v := b.Start(ctx, t0, pace.Grant{ID: "b0", Cost: 1}); v.OK || !v.Held || !v.At.Equal(end) {
				t.Fatalf("Start within the pause = %+v, want held until its end", v)
			}
			probe := pace.Grant{ID: "a1", Cost: 1}
			if v := a.Start(ctx, end, probe); !v.OK || v.Probe != tc.probe {
				t.Fatalf("Start at the pause's end = %+v, want granted, Probe %v", v, tc.probe)
			}
			v := b.Start(ctx, end, pace.Grant{ID: "b1", Cost: 1})
			if v.OK == tc.probe || v.Probe != tc.probe {
				t.Fatalf("another replica's Start = %+v, want a wait for the probe %v", v, tc.probe)
			}
			if !tc.probe {
				return
			}
			// Its answer lifts the limit for every replica.
			a.Done(ctx, end.Add(time.Second), probe, pace.RateLimit{Status: 200, Remaining: -1, Used: -1})
			if v := b.Start(ctx, end.Add(time.Second), pace.Grant{ID: "b2", Cost: 1}); !v.OK || v.Probe {
				t.Fatalf("Start after the probe's answer = %+v, want granted, no probe", v)
			}
		})
	}
}
