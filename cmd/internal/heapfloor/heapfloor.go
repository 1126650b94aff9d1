// Package heapfloor keeps Go's collector from running more often than a
// heap of a given size needs. The broker's live heap is small: a few MiB
// of keys, names, pools and connections. Under Go's default (GOGC=100)
// the collector runs whenever the heap has doubled, so at thousands of
// calls a second, each allocating a few KiB, it ran about 50 times a
// second: its mark workers and assists took a tenth of the broker's CPU,
// and its pauses and the mark phase's dedicated worker (a quarter of the
// CPUs) showed in the calls' latency (docs/BENCHMARKS.md, issue 12); the
// load command, a gRPC client at 12,000 calls a second, had the same
// problem and counted its own collections as the broker's latency.
//
// Start lets the heap grow to a floor before a collection: after each
// collection it sets GOGC so that the next one starts when the heap
// reaches the floor, and never below Go's 100, so that a large live heap
// (a flood of 1 MiB requests) is collected exactly as by default. This is
// the "GC tuner" that Uber and TiDB describe. GOMEMLIMIT still caps the
// heap, and the floor is held to a quarter of it.
package heapfloor

import (
	"log/slog"
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// runtimeHeapMinimum is the Go runtime's least heap goal at GOGC=100
// (defaultHeapMinimum, 4 MiB); it scales with GOGC.
const runtimeHeapMinimum = 4 << 20

// PercentFor is the GOGC that makes the next collection start when the
// heap reaches floor, given live bytes after the last one: at least 100,
// and at most what makes the runtime's own minimum heap the floor (a
// larger GOGC would raise that minimum above the floor).
func PercentFor(live, floor uint64) int {
	if floor == 0 {
		return 100
	}
	most := floor * 100 / runtimeHeapMinimum
	if live == 0 {
		return int(max(most, 100))
	}
	if floor/2 <= live {
		return 100
	}
	return int(max(min(floor*100/live-100, most), 100))
}

// Within is the floor kept under a memory limit (GOMEMLIMIT; no
// limit is math.MaxInt64): at most a quarter of it, so that the
// collector never works near the limit because of the floor.
func Within(floor, limit int64) int64 {
	if limit <= 0 || limit == math.MaxInt64 {
		return floor
	}
	return min(floor, limit/4)
}

// tuner retunes GOGC after each collection (see the package doc).
type tuner struct {
	floor uint64
	// live returns the heap's live bytes after the last collection.
	live  func() uint64
	knobs gcKnobs

	mu       sync.Mutex
	stopped  bool
	percent  int   // GOGC last set
	original int   // GOGC before the first change, restored by stop
	limit    int64 // the memory limit (GOMEMLIMIT) before, restored by stop
}

// gcKnobs are the collector's settings: debug.SetGCPercent and
// debug.SetMemoryLimit, each returning the previous value. Tests replace
// them.
type gcKnobs struct {
	setPercent func(int) int
	setLimit   func(int64) int64
}

// guardFloors is the memory limit, in floors, while GOGC is raised.
// GOGC is set after a collection has already taken its next goal from the
// GOGC before: when the live heap jumps (a flood of 1 MiB requests) from
// a few MiB to a hundred, that collection's goal is the hundred times
// 17 until the cleanup runs, which on busy CPUs can be many
// milliseconds later (the JSON flood's RSS reached 632 MB without the
// guard, against 185 MB under Go's defaults). The limit stops the heap
// at twice the floor instead; it is lifted as soon as GOGC is back to
// 100, so that a heap that is large for good is never collected near it.
const guardFloors = 2

// gcSentinel is the object whose cleanup runs after the collection that
// finds it unreachable: one is allocated per collection. It holds a
// pointer so that it is never in a tiny allocation (whose cleanups may
// never run).
type gcSentinel struct{ _ *gcSentinel }

// Start starts retuning GOGC after each collection for a heap
// floor of floor bytes (held under GOMEMLIMIT, Within) and
// returns the function that stops it and restores GOGC and the memory
// limit. With floor 0, or GOGC set in the environment (gogcSet: the
// operator has chosen), it does nothing.
func Start(floor int64, gogcSet bool, logger *slog.Logger) (stop func()) {
	if floor <= 0 || gogcSet {
		if gogcSet {
			logger.Info("collector: GOGC is set, --gc-heap-floor is not applied")
		}
		return func() {}
	}
	eff := Within(floor, debug.SetMemoryLimit(-1))
	logger.Info("collector: heap floor", slog.Int64("bytes", eff))
	h := newTuner(uint64(eff), liveHeapBytes, gcKnobs{setPercent: debug.SetGCPercent, setLimit: debug.SetMemoryLimit})
	return h.stop
}

// newTuner tunes the collector once for the live heap now and then
// after each collection.
func newTuner(floor uint64, live func() uint64, knobs gcKnobs) *tuner {
	h := &tuner{floor: floor, live: live, knobs: knobs, limit: knobs.setLimit(-1), percent: 100}
	h.original = h.applyLocked(PercentFor(live(), floor))
	h.arm()
	return h
}

// applyLocked sets GOGC to p, with the guard's memory limit while p is
// over 100 and the limit from before otherwise, and returns the GOGC
// before.
func (h *tuner) applyLocked(p int) int {
	limit := h.limit
	if p > 100 {
		limit = min(limit, int64(guardFloors*h.floor))
	}
	// Lower GOGC before the limit is lifted, and the limit before GOGC is
	// raised: never both high at once.
	var prev int
	if p > h.percent {
		h.knobs.setLimit(limit)
		prev = h.knobs.setPercent(p)
	} else {
		prev = h.knobs.setPercent(p)
		h.knobs.setLimit(limit)
	}
	h.percent = p
	return prev
}

// arm allocates the sentinel whose cleanup runs after the next
// collection.
func (h *tuner) arm() {
	runtime.AddCleanup(&gcSentinel{}, (*tuner).afterGC, h)
}

// afterGC sets GOGC for the heap the collection left, and arms for the
// next one, unless stopped.
func (h *tuner) afterGC() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped {
		return
	}
	if p := PercentFor(h.live(), h.floor); p != h.percent {
		h.applyLocked(p)
	}
	h.arm()
}

// stop ends the tuning and restores GOGC and the memory limit as they
// were.
func (h *tuner) stop() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped {
		return
	}
	h.stopped = true
	h.knobs.setPercent(h.original)
	h.knobs.setLimit(h.limit)
}

// liveHeapBytes is the heap's live bytes as of the last collection.
func liveHeapBytes() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}
