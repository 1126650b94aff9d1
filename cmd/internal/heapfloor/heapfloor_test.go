package heapfloor

import (
	"bytes"
	"log/slog"
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strings"
	"sync/atomic"
	"testing"
)

func TestPercentFor(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		name        string
		live, floor uint64
		want        int
	}{
		{"a small heap reaches the floor before the next collection", 8 * mib, 64 * mib, 700},
		{"4 MiB live", 4 * mib, 64 * mib, 1500},
		{"a tiny heap: capped where Go's minimum heap is the floor", 1 * mib, 64 * mib, 1600},
		{"nothing live yet", 0, 64 * mib, 1600},
		{"half the floor live: Go's default", 32 * mib, 64 * mib, 100},
		{"more than the floor live: Go's default", 200 * mib, 64 * mib, 100},
		{"just under half the floor", 31 * mib, 64 * mib, 106},
		{"no floor", 1 * mib, 0, 100},
		{"a floor under Go's minimum heap", 1 * mib, 2 * mib, 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := PercentFor(tt.live, tt.floor)
			if got != tt.want {
				t.Fatalf("PercentFor(%d, %d) = %d, want %d", tt.live, tt.floor, got, tt.want)
			}
			// The goal it gives (Go's: live × (1 + GOGC/100), at least
			// 4 MiB × GOGC/100) never exceeds the larger of the floor and
			// Go's default goal.
			goal := max(tt.live+tt.live*uint64(got)/100, runtimeHeapMinimum*uint64(got)/100)
			if most := max(tt.floor, 2*tt.live, runtimeHeapMinimum); goal > most {
				t.Fatalf("GOGC %d gives a goal of %d bytes, over %d", got, goal, most)
			}
		})
	}
}

func TestWithin(t *testing.T) {
	tests := []struct {
		floor, limit, want int64
	}{
		{64 << 20, math.MaxInt64, 64 << 20}, // no GOMEMLIMIT
		{64 << 20, 460 << 20, 64 << 20},     // the deployment's limit
		{64 << 20, 128 << 20, 32 << 20},     // a quarter of a small limit
		{64 << 20, 0, 64 << 20},
	}
	for _, tt := range tests {
		if got := Within(tt.floor, tt.limit); got != tt.want {
			t.Errorf("Within(%d, %d) = %d, want %d", tt.floor, tt.limit, got, tt.want)
		}
	}
}

// fakeGOGC stands in for debug.SetGCPercent and debug.SetMemoryLimit: it
// records each GOGC set, and whether GOGC was ever over 100 while the
// memory limit was over guard.
type fakeGOGC struct {
	current  int
	limit    int64
	guard    int64
	set      chan int
	bothHigh bool
}

func newFakeGOGC(limit, guard int64) *fakeGOGC {
	return &fakeGOGC{current: 100, limit: limit, guard: guard, set: make(chan int, 4)}
}

func (f *fakeGOGC) knobs() gcKnobs {
	check := func() {
		if f.current > 100 && f.limit > f.guard {
			f.bothHigh = true
		}
	}
	return gcKnobs{
		setPercent: func(p int) int {
			prev := f.current
			f.current = p
			check()
			f.set <- p
			return prev
		},
		setLimit: func(l int64) int64 {
			prev := f.limit
			if l >= 0 {
				f.limit = l
				check()
			}
			return prev
		},
	}
}

// nextSet runs collections until the tuner sets GOGC, and returns the
// value. A cleanup runs on its own goroutine after the collection that
// frees its object, usually before the next one ends; a thousand are
// only a bound on a broken hook.
func nextSet(t *testing.T, f *fakeGOGC) int {
	t.Helper()
	for range 1000 {
		runtime.GC()
		select {
		case p := <-f.set:
			return p
		default:
			runtime.Gosched()
		}
	}
	t.Fatal("GOGC was not set after 1,000 collections")
	return 0
}

// setNow returns the value GOGC was set to by what just ran.
func setNow(t *testing.T, f *fakeGOGC) int {
	t.Helper()
	select {
	case p := <-f.set:
		return p
	default:
		t.Fatal("GOGC was not set")
		return 0
	}
}

func TestRetunesAfterEachCollection(t *testing.T) {
	const mib = 1 << 20
	var live atomic.Uint64
	live.Store(1 * mib)
	const before = 460 * mib // GOMEMLIMIT as the deployment sets it
	f := newFakeGOGC(before, 128*mib)
	h := newTuner(64*mib, live.Load, f.knobs())
	steps := []struct {
		live      uint64
		percent   int
		limit     int64
		collected bool
	}{
		{1 * mib, 1600, 128 * mib, false}, // at start: the floor, under the guard's limit
		{8 * mib, 700, 128 * mib, true},   // the heap grew: the next collection sets less
		{40 * mib, 100, before, true},     // over half the floor: Go's default, the limit as it was
		{2 * mib, 1600, 128 * mib, true},  // shrank again: the floor again
	}
	for _, st := range steps {
		live.Store(st.live)
		p := 0
		if st.collected {
			p = nextSet(t, f)
		} else {
			p = setNow(t, f)
		}
		h.mu.Lock() // held while a collection's settings are applied
		l := f.limit
		h.mu.Unlock()
		if p != st.percent || l != st.limit {
			t.Fatalf("with %d MiB live: GOGC %d and a memory limit of %d MiB, want %d and %d MiB",
				st.live/mib, p, l/mib, st.percent, st.limit/mib)
		}
	}

	if f.bothHigh {
		t.Fatal("GOGC was raised while the memory limit was still over the guard")
	}
	h.stop()
	if p := setNow(t, f); p != 100 || f.limit != before {
		t.Fatalf("stop restored GOGC %d and a limit of %d MiB, want the original 100 and %d MiB", p, f.limit/mib, before/mib)
	}
	live.Store(8 * mib)
	h.afterGC() // a cleanup still pending when stop ran
	h.stop()
	select {
	case p := <-f.set:
		t.Fatalf("GOGC set to %d after stop", p)
	default:
	}
}

// gogc reads the process's GOGC.
func gogc() int64 {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int64(s[0].Value.Uint64())
}

func TestStart(t *testing.T) {
	before, limitBefore := gogc(), debug.SetMemoryLimit(-1)
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))

	// A floor of 1 GiB is far above this test binary's live heap.
	stop := Start(1<<30, false, logger)
	if got := gogc(); got <= 100 {
		stop()
		t.Fatalf("GOGC with a 1 GiB floor = %d, want more than 100", got)
	}
	stop()
	if got, limit := gogc(), debug.SetMemoryLimit(-1); got != before || limit != limitBefore {
		t.Fatalf("GOGC and memory limit after stop = %d, %d; want %d, %d as before", got, limit, before, limitBefore)
	}
	if !strings.Contains(logs.String(), "heap floor") {
		t.Errorf("no log line names the floor: %q", logs.String())
	}

	for _, tt := range []struct {
		name    string
		floor   int64
		gogcSet bool
		log     string
	}{
		{"GOGC in the environment wins", 1 << 30, true, "GOGC is set"},
		{"a floor of 0 is off", 0, false, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			logs.Reset()
			stop := Start(tt.floor, tt.gogcSet, logger)
			defer stop()
			if got := gogc(); got != before {
				t.Fatalf("GOGC = %d, want %d untouched", got, before)
			}
			if tt.log != "" && !strings.Contains(logs.String(), tt.log) {
				t.Errorf("log %q does not say %q", logs.String(), tt.log)
			}
		})
	}
}
