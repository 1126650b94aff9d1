package upstream

import (
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/secretbroker/secretbroker/upstream/metricstest"
	"github.com/secretbroker/secretbroker/upstream/pace"
)

// TestPacerObserverMetrics: each admission is one wait sample labelled
// with its reason (none for no wait); each pause that began is counted by
// kind, a pause that only grew is not.
func TestPacerObserverMetrics(t *testing.T) {
	wait := func(reason string) string {
		return "secretbroker_pacer_wait_seconds{credential=token,reason=" + reason + "}"
	}
	pauses := func(kind string) string {
		return "secretbroker_pacer_pauses_total{credential=token,kind=" + kind + "}"
	}
	reader := sdkmetric.NewManualReader()
	m, err := newMetrics(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
	if err != nil {
		t.Fatal(err)
	}
	o := m.observer(Credential)
	r := pace.Request{Caller: "token:PLANTED-caller", Method: "PUT", Route: "/r/{x}"}
	for _, a := range []struct {
		wait time.Duration
		why  pace.Reason
	}{
		{0, 0}, {0, 0}, {time.Second, pace.ReasonQueue}, {time.Second, pace.ReasonSpacing}, {2 * time.Second, pace.ReasonSpacing},
		{time.Minute, pace.ReasonBudget}, {time.Hour, pace.ReasonPrimary}, {time.Minute, pace.ReasonPause}, {time.Second, pace.ReasonBackoff},
	} {
		o.Admitted(r, a.wait, a.why)
	}
	until := time.Unix(1_700_000_000, 0)
	o.Held(pace.ReasonPause, until, true)
	o.Held(pace.ReasonPause, until.Add(time.Minute), false) // grew: not a new pause
	o.Held(pace.ReasonPrimary, until, true)
	o.Held(pace.ReasonBackoff, until, true)
	o.Held(pace.ReasonBackoff, until, true)
	o.Held(pace.ReasonSpacing, until, true) // not a hold: ignored

	got := metricstest.Read(t, reader)
	want := map[string]float64{
		wait("none"): 2, wait("in_flight"): 1, wait("spacing"): 2, wait("points"): 1,
		wait("primary"): 1, wait("secondary_pause"): 1, wait("backoff"): 1,
		pauses("secondary"): 1, pauses("primary"): 1, pauses("backoff"): 2,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected series %s = %v", k, got[k])
		}
	}
}

func TestWaitReasonAndPauseKind(t *testing.T) {
	for _, tc := range []struct {
		why    pace.Reason
		reason string
		kind   string
	}{
		{0, "none", ""},
		{pace.ReasonQueue, "in_flight", ""},
		{pace.ReasonSpacing, "spacing", ""},
		{pace.ReasonBudget, "points", ""},
		{pace.ReasonPrimary, "primary", "primary"},
		{pace.ReasonPause, "secondary_pause", "secondary"},
		{pace.ReasonBackoff, "backoff", "backoff"},
		{pace.ReasonContent, "content", ""},
		{pace.ReasonCPU, "cpu_time", ""},
	} {
		if got := WaitReason(tc.why); got != tc.reason {
			t.Errorf("WaitReason(%d) = %q, want %q", tc.why, got, tc.reason)
		}
		if got := pauseKind(tc.why); got != tc.kind {
			t.Errorf("pauseKind(%d) = %q, want %q", tc.why, got, tc.kind)
		}
	}
}
