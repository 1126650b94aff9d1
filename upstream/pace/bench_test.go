package pace

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"sync"
	"testing"
	"time"
)

// BenchmarkPacer10kQueued queues 10,000 requests from 100 callers (half
// reads, half unspaced writes, each with a deadline an hour away) while
// the MaxInFlight of 10 are taken, then frees them and drains the queue:
// every admitted request reports Done at once, which admits the next.
// One op is one such batch; ns/admission and allocs/admission divide it
// by the 10,000 admissions. The points budget is off and writes are not
// spaced, so only capacity holds the requests back: the figure is the
// pacer's own cost per event with a long queue.
func BenchmarkPacer10kQueued(b *testing.B) {
	benchPacer10kQueued(b, Config{MaxInFlight: 10})
}

// BenchmarkPacer10kQueuedCPUBudget is BenchmarkPacer10kQueued with the
// CPU-time budget on (DefaultCPUPerMinute, which the answers of a
// millisecond never fill): what it costs each admission and completion.
func BenchmarkPacer10kQueuedCPUBudget(b *testing.B) {
	benchPacer10kQueued(b, Config{MaxInFlight: 10, CPUPerMinute: DefaultCPUPerMinute})
}

func benchPacer10kQueued(b *testing.B, cfg Config) {
	const callers, perCaller = 100, 100
	const n = callers * perCaller
	maxInFlight := cfg.MaxInFlight
	p, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	reqs := make([]Request, n)
	for i := range reqs {
		reqs[i] = Request{Caller: fmt.Sprint("caller-", i%callers), Method: http.MethodGet, Route: "/r/{x}"}
		if i%2 == 1 {
			reqs[i].Method = http.MethodPut
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	// One answer first, so that the CPU-time budget (when on) expects a
	// millisecond of each request, not FirstReserve.
	warm, err := p.Acquire(ctx, Request{Caller: "warm", Method: http.MethodGet})
	if err != nil {
		b.Fatal(err)
	}
	warm.Done(http.StatusOK, nil, time.Millisecond)
	held := make([]*Permit, maxInFlight)
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	b.ReportAllocs()
	for b.Loop() {
		for i := range held {
			if held[i], err = p.Acquire(ctx, Request{Caller: "holder", Method: http.MethodGet}); err != nil {
				b.Fatal(err)
			}
		}
		var wg sync.WaitGroup
		for i := range reqs {
			wg.Go(func() {
				pm, err := p.Acquire(ctx, reqs[i])
				if err != nil {
					b.Error(err)
					return
				}
				pm.Done(http.StatusOK, nil, time.Millisecond)
			})
		}
		for p.Stats().Queued < n {
			runtime.Gosched()
		}
		for _, h := range held {
			h.Done(http.StatusOK, nil, time.Millisecond)
		}
		wg.Wait()
	}
	runtime.ReadMemStats(&ms1)
	admissions := float64(b.N) * n
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/admissions, "ns/admission")
	b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/admissions, "allocs/admission")
}

// BenchmarkReadAmid10kWrites is the case: 50 callers' batches of
// 200 writes (10,000) wait for the write slot, and one op is another
// caller's read (with a deadline), admitted at once and done: what the
// long queue costs a request that passes it. (The writes have no
// deadline: with one, all but the first few would be refused at once.)
func BenchmarkReadAmid10kWrites(b *testing.B) {
	const callers, perCaller = 50, 200
	p, err := New(Config{MaxInFlight: 10, WriteInterval: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	deadline, cancelDeadline := context.WithTimeout(ctx, 2*time.Hour)
	defer cancelDeadline()
	for i := range callers * perCaller {
		wg.Go(func() {
			pm, err := p.Acquire(ctx, Request{Caller: fmt.Sprint("batch-", i%callers), Method: http.MethodPut, Route: "/r/{x}"})
			if err == nil { // the first: it holds the slot to the end
				<-ctx.Done()
				pm.Unsent()
			}
		})
	}
	for p.Stats().Queued < callers*perCaller-1 { // one write is in flight
		runtime.Gosched()
	}
	read := Request{Caller: "other", Method: http.MethodGet, Route: "/r/{x}"}
	b.ReportAllocs()
	for b.Loop() {
		pm, err := p.Acquire(deadline, read)
		if err != nil {
			b.Fatal(err)
		}
		pm.Done(http.StatusOK, nil, time.Millisecond)
	}
}
