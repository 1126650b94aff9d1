package main

import (
	"context"
	"errors"
	"maps"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/grpc/codes"
)

// TestMain lets the test binary serve as the compare scenario's emulator
// child, as the command's own binary does (emuchild.go).
func TestMain(m *testing.M) {
	if isEmulatorChild() {
		if err := emulatorChildMain(os.Stdin, os.Stdout); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestCompareSmoke runs the compare scenario briefly against a real broker
// child process and the emulator child, and checks that every path was
// measured, every call succeeded and the tables have every row; not how
// fast anything was.
func TestCompareSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the broker")
	}
	o, env, progress := smokeEnv(t, "--scenario=compare", "--duration=300ms", "--rounds=1", "--workers=4", "--rate=100")
	r, err := runCompare(t.Context(), o, env)
	if err != nil {
		t.Fatalf("%v\n%s", err, progress)
	}
	for _, ph := range []struct {
		name string
		m    map[string][]figures
	}{{"saturation", r.sat}, {"fixed rate", r.fixed}} {
		for _, path := range comparePaths() {
			fs := ph.m[path]
			if len(fs) != 1 {
				t.Errorf("%s, %s: %d rounds measured, want 1", ph.name, path, len(fs))
				continue
			}
			f := fs[0]
			if f.calls < 1 || f.errs != 0 || f.rps <= 0 || f.p50 <= 0 || f.p99 < f.p50 || f.p999 < f.p99 || f.selfCPU < 0 {
				t.Errorf("%s, %s: %+v; want calls, none failed, ordered percentiles", ph.name, path, f)
			}
			if usesEmulator(path) && f.upstreamPerCall < 1 {
				t.Errorf("%s, %s: %.2f upstream requests a call, want at least one PUT each", ph.name, path, f.upstreamPerCall)
			}
			if !usesEmulator(path) && f.upstreamPerCall != 0 {
				t.Errorf("%s, %s: %.2f upstream requests a call, want none (the key is cached)", ph.name, path, f.upstreamPerCall)
			}
		}
	}
	if o := r.overload; o.sent < 1 || o.codes["OK"]+o.refusedFast < 1 || o.recoveryProbes < recoveryRun {
		t.Errorf("overload: %+v", o)
	}
	tab := r.markdown()
	rows := []string{"| broker gRPC PutSecret throughput / direct client's |", "| broker CPU per PutSecret / direct client's",
		"| new upstream connections per 1,000 broker gRPC PutSecrets, at saturation / at the fixed rate |", "| gateway / gRPC throughput, PutSecret |",
		"| gateway / gRPC throughput, cached GetPublicKey |", "| p99 at 100 calls/s, broker gRPC PutSecret minus direct client |",
		"| excess calls refused within 100 ms |", "| admitted calls' p50 / p99 |", "| broker RSS, highest sample",
		"| p50 back to normal after the flood ends |"}
	for _, path := range comparePaths() {
		rows = append(rows, "| "+path+" | ")
	}
	tableHas(t, tab, rows...)
	if n := strings.Count(tab, "| "+pathGRPCPut+" | "); n != 2 {
		t.Errorf("%d rows for %s, want 2 (saturation, fixed rate):\n%s", n, pathGRPCPut, tab)
	}
	noTokens(t, tab, progress.String())
}

func TestFirstRecovered(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	// probes builds probes 10 ms apart with the given latencies in ms: 0
	// unanswered, negative failed after that many ms.
	probes := func(lat ...int) []recoveryProbe {
		p := make([]recoveryProbe, len(lat))
		for i, l := range lat {
			p[i] = recoveryProbe{at: ms(10 * i), lat: ms(max(l, -l)), answered: l != 0, failed: l < 0}
		}
		return p
	}
	cat := func(runs ...[]int) []int { return slices.Concat(runs...) }
	slow := []int{900, 800, 700, 600, 500, 400, 300, 200, 100, 90}
	fast := []int{1, 1, 1, 1, 1, 1, 1, 1, 1, 1}
	halfFailed := []int{1, -1, 1, -1, 1, -1, 1, -1, 1, -1}
	oneFailed := []int{1, 1, 1, 1, 1, 1, 1, 1, 1, -10_000}
	tests := []struct {
		name   string
		probes []recoveryProbe
		target time.Duration
		at     time.Duration
		ok     bool
	}{
		{"too few", probes(fast[:9]...), ms(2), 0, false},
		{"recovered at once", probes(fast...), ms(2), 0, true},
		{"never", probes(slow...), ms(2), 0, false},
		{"after the slow ones", probes(cat(slow, fast)...), ms(2), ms(60), true}, // six fast of ten: both middle values fast
		{"an unanswered probe blocks its runs", probes(cat(fast[:5], []int{0}, fast)...), ms(2), ms(60), true},
		{"half failed fast is not recovered", probes(halfFailed...), ms(2), 0, false},
		{"one failed probe in the run is not recovered", probes(oneFailed...), ms(2), 0, false},
		{"recovered after the failed probe", probes(cat(oneFailed, fast)...), ms(2), ms(100), true},
		// Five at 1 ms and five at 4 ms: the median is 2.5 ms, not the
		// lower middle's 1 ms.
		{"the median of an even run is the mean of the middle two", probes(1, 4, 1, 4, 1, 4, 1, 4, 1, 4), ms(2), 0, false},
		{"a median at the target", probes(1, 3, 1, 3, 1, 3, 1, 3, 1, 3), ms(2), 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			at, _, ok := firstRecovered(tt.probes, tt.target)
			if at != tt.at || ok != tt.ok {
				t.Errorf("firstRecovered = %s, %t; want %s, %t", at, ok, tt.at, tt.ok)
			}
		})
	}
}

func TestMedianSorted(t *testing.T) {
	for _, tt := range []struct {
		in   []time.Duration
		want time.Duration
	}{
		{nil, 0},
		{[]time.Duration{7}, 7},
		{[]time.Duration{1, 5, 9}, 5},
		{[]time.Duration{1, 2, 4, 10}, 3},
		{[]time.Duration{1, 2}, 1}, // 1.5 ns, truncated
		{[]time.Duration{1, 1, 1, 1, 1, 10, 10, 10, 10, 10}, 5},
	} {
		if got := medianSorted(tt.in); got != tt.want {
			t.Errorf("medianSorted(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestMedian(t *testing.T) {
	get := func(f figures) float64 { return f.rps }
	tests := []struct {
		name string
		in   []float64
		want float64
	}{
		{"none", nil, 0},
		{"one", []float64{3}, 3},
		{"three: the middle", []float64{9, 1, 5}, 5},
		{"five: the middle", []float64{9, 1, 5, 7, 3}, 5},
		{"two: the mean of both", []float64{4, 1}, 2.5},
		{"four: the mean of the middle two", []float64{4, 1, 3, 2}, 2.5},
		{"four with equal middles", []float64{8, 3, 3, 1}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := make([]figures, len(tt.in))
			for i, v := range tt.in {
				fs[i].rps = v
			}
			if got := median(fs, get); got != tt.want {
				t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

// No two calls write the same value, whatever the paths between two
// visits to a secret, so the broker never skips a compare PutSecret as
// unchanged; every value is 64 bytes.
func TestCompareValueIsEveryCallsOwn(t *testing.T) {
	values := randomValues(compareNames, compareValueBytes)
	seen := map[string]int{}
	for _, i := range append(slices.Collect(func(yield func(int) bool) {
		for i := range 30_000 { // three visits to a secret 10,000 calls apart repeated the value before
			if !yield(i) {
				return
			}
		}
	}), 1<<40) {
		v := compareValue(values, i)
		if len(v) != compareValueBytes {
			t.Fatalf("call %d: %d bytes, want %d", i, len(v), compareValueBytes)
		}
		if prev, ok := seen[v]; ok {
			t.Fatalf("calls %d and %d write the same value", prev, i)
		}
		seen[v] = i
	}
}

// Every path and phase takes its index from one counter: the second
// phase, and the second path, do not start again at 0.
func TestSequenced(t *testing.T) {
	var got []int
	var mu sync.Mutex
	record := func(_ context.Context, i int) error {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, i)
		return nil
	}
	calls := sequenced(map[string]callFunc{pathGRPCPut: record, pathGatewayPut: record})
	for _, step := range []struct {
		path string
		i    int
	}{{pathGRPCPut, 0}, {pathGRPCPut, 1}, {pathGatewayPut, 0}, {pathGRPCPut, 0}, {pathGatewayPut, 1}} {
		if err := calls[step.path](t.Context(), step.i); err != nil {
			t.Fatal(err)
		}
	}
	if want := []int{0, 1, 2, 3, 4}; !slices.Equal(got, want) {
		t.Errorf("indexes %v, want %v", got, want)
	}
}

// A failed call is a latency sample at the time it failed, in both
// phases, and counted once among the calls.
func TestPhasesCountFailedCalls(t *testing.T) {
	const okAfter, failAfter = time.Millisecond, 50 * time.Millisecond
	call := func(_ context.Context, i int) error {
		if i%2 == 0 {
			time.Sleep(failAfter)
			return errors.New("UNAVAILABLE")
		}
		time.Sleep(okAfter)
		return nil
	}
	for _, tt := range []struct {
		name string
		run  func(ctx context.Context) phase
	}{
		{"saturate", func(ctx context.Context) phase { return saturate(ctx, call, 1, time.Second) }},
		{"fixed rate", func(ctx context.Context) phase { return fixedRate(ctx, call, 100, time.Second) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p := tt.run(t.Context())
				if p.errs == 0 || p.calls != len(p.lat) || p.calls < 2*p.errs-1 {
					t.Fatalf("%d calls, %d errors, %d samples; want every call a sample, about half failed", p.calls, p.errs, len(p.lat))
				}
				if l := p.lat[len(p.lat)-1]; l < failAfter {
					t.Errorf("slowest sample %s; want the failed calls' %s", l, failAfter)
				}
				if f := p.figures(); f.p99 < msFloat(failAfter) {
					t.Errorf("p99 %.2f ms; want the failed calls' %s", f.p99, failAfter)
				}
			})
		})
	}
}

// compareFixture is a run's result with the given rounds of every path
// (calls/s, errors), the same at saturation and at the fixed rate.
func compareFixture(rps map[string]float64, errs map[string][]float64) compareResult {
	r := compareResult{workers: 32, rate: 1000, rounds: 3, phaseLen: time.Second,
		sat: map[string][]figures{}, fixed: map[string][]figures{}}
	for _, path := range comparePaths() {
		for round := range 3 {
			f := figures{calls: 1000, rps: rps[path], p50: 1, p99: 2, p999: 3, brokerCPU: 100, selfCPU: 100}
			if e := errs[path]; e != nil {
				f.errs = e[round]
			}
			r.sat[path] = append(r.sat[path], f)
			r.fixed[path] = append(r.fixed[path], f)
		}
	}
	r.overload = overloadResult{rate: 2000, sent: 100, codes: map[string]int{"OK": 50, "RESOURCE_EXHAUSTED": 50}, refusedFast: 50,
		admittedP50: time.Millisecond, admittedP99: 2 * time.Millisecond, normalP50: time.Millisecond, normalP99: time.Millisecond,
		peakRSS: 100e6, recovered: true, recoveryProbes: 10, probeCodes: map[string]int{"OK": 10}}
	return r
}

// allRPS is 1,000 calls/s for every path.
func allRPS() map[string]float64 {
	m := map[string]float64{}
	for _, p := range comparePaths() {
		m[p] = 1000
	}
	return m
}

// Errors are the total over the rounds, and every target measured on a
// path with errors is not met, saying why.
func TestCompareTableErrors(t *testing.T) {
	r := compareFixture(allRPS(), map[string][]float64{pathGRPCPut: {0, 500, 0}})
	tab := r.markdown()
	if n := strings.Count(tab, "| "+pathGRPCPut+" | 1000 (500) |"); n != 2 {
		t.Errorf("%d rows for %s with 1000 calls and 500 errors (all in the middle round), want 2:\n%s", n, pathGRPCPut, tab)
	}
	if n := strings.Count(tab, "| "+pathDirect+" | 1000 (0) |"); n != 2 {
		t.Errorf("%d rows for %s with no errors, want 2:\n%s", n, pathDirect, tab)
	}
	for _, row := range r.ratios() {
		usesGRPCPut := !strings.Contains(row[0], "cached GetPublicKey") && !strings.HasPrefix(row[0], "floors:")
		if got := strings.Contains(row[3], "**no** (grpc-put: 1000 errors)"); got != usesGRPCPut {
			t.Errorf("%q: met %q; want a no for grpc-put's errors: %t", row[0], row[3], usesGRPCPut)
		}
	}
	for _, prefix := range []string{"| admitted calls' p50 / p99 |", "| p50 back to normal after the flood ends |"} {
		if line := lineWith(tab, prefix); !strings.HasSuffix(line, "| **no** (grpc-put: 1000 errors) |") {
			t.Errorf("%s; want a no for grpc-put's errors", line)
		}
	}

	clean := compareFixture(allRPS(), nil)
	for _, row := range clean.ratios() {
		if strings.Contains(row[3], "no") {
			t.Errorf("without errors: %q met %q", row[0], row[3])
		}
	}
}

// lineWith is the line of tab that starts with prefix.
func lineWith(tab, prefix string) string {
	for line := range strings.SplitSeq(tab, "\n") {
		if strings.HasPrefix(line, prefix) {
			return line
		}
	}
	return ""
}

// A printed value never seems to meet a target its verdict says it
// misses, or the other way round.
func TestRatiosValueAgreesWithVerdict(t *testing.T) {
	tests := []struct {
		name      string
		rps       map[string]float64
		cpu       float64 // broker µs per call, against the direct client's 100
		conns     float64
		p99       float64 // broker's fixed-rate p99, against the direct client's 2 ms
		row       string
		wantValue string
		wantMet   string
	}{
		{name: "throughput just under 0.6", rps: map[string]float64{pathGRPCPut: 599.6}, row: "broker gRPC PutSecret throughput", wantValue: "0.5996", wantMet: "**no**"},
		{name: "throughput at 0.6", rps: map[string]float64{pathGRPCPut: 600}, row: "broker gRPC PutSecret throughput", wantValue: "0.60", wantMet: "yes"},
		{name: "gateway key just under 0.7", rps: map[string]float64{pathGatewayKey: 698}, row: "gateway / gRPC throughput, cached", wantValue: "0.698", wantMet: "**no**"},
		{name: "gateway put just under 0.7", rps: map[string]float64{pathGatewayPut: 699.99}, row: "gateway / gRPC throughput, PutSecret", wantValue: "0.69999", wantMet: "**no**"},
		{name: "CPU just over 1.6", cpu: 160.4, row: "broker CPU per PutSecret", wantValue: "1.604×", wantMet: "**no**"},
		{name: "connections just over 10", conns: 10.04, row: "new upstream connections", wantValue: "10.04 / 10.04", wantMet: "**no**"},
		{name: "p99 just over 5 ms above", p99: 7.004, row: "p99 at 1000 calls/s", wantValue: "+5.004 ms", wantMet: "**no**"},
		{name: "p99 at 5 ms above", p99: 7, row: "p99 at 1000 calls/s", wantValue: "+5.00 ms", wantMet: "yes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rps := allRPS()
			maps.Copy(rps, tt.rps)
			r := compareFixture(rps, nil)
			for _, m := range []map[string][]figures{r.sat, r.fixed} {
				for i := range m[pathGRPCPut] {
					f := &m[pathGRPCPut][i]
					if tt.cpu > 0 {
						f.brokerCPU = tt.cpu
					}
					f.connsPer1000 = tt.conns
					if tt.p99 > 0 {
						f.p99 = tt.p99
					}
				}
			}
			for _, row := range r.ratios() {
				if !strings.HasPrefix(row[0], tt.row) {
					continue
				}
				if !strings.HasPrefix(row[1], tt.wantValue) || row[3] != tt.wantMet {
					t.Errorf("%q: value %q, met %q; want %q..., %q", row[0], row[1], row[3], tt.wantValue, tt.wantMet)
				}
				return
			}
			t.Fatalf("no row %q", tt.row)
		})
	}
}

func TestShown(t *testing.T) {
	atLeast := func(t float64) func(float64) bool { return func(v float64) bool { return v >= t } }
	below := func(t float64) func(float64) bool { return func(v float64) bool { return v < t } }
	for _, tt := range []struct {
		v      float64
		digits int
		ok     func(float64) bool
		want   string
		met    bool
	}{
		{0.7, 2, atLeast(0.7), "0.70", true},
		{0.71, 2, atLeast(0.7), "0.71", true},
		{0.698, 2, atLeast(0.7), "0.698", false},
		{0.6999999999999, 2, atLeast(0.7), "0.6999999999999", false},
		{149.96, 1, below(150), "149.96", true},
		{150, 1, below(150), "150.0", false},
		{0.123, 2, atLeast(0.7), "0.12", false},
	} {
		got, met := shown(tt.v, tt.digits, tt.ok)
		if got != tt.want || met != tt.met {
			t.Errorf("shown(%v, %d) = %q, %t; want %q, %t", tt.v, tt.digits, got, met, tt.want, tt.met)
		}
	}
}

// The overload table's values agree with their verdicts, count only
// RESOURCE_EXHAUSTED as refused, and print the recovery probes' codes.
func TestOverloadTable(t *testing.T) {
	r := compareFixture(allRPS(), nil)
	r.overload.peakRSS = 149_960_000
	r.overload.normalP99 = 2_501 * time.Microsecond                    // limit 7.503 ms
	r.overload.admittedP99 = 7_504 * time.Microsecond                  // over it
	r.overload.probeCodes = map[string]int{"OK": 12, "UNAVAILABLE": 3} // printed
	tab := r.markdown()
	for _, want := range []string{
		"| admitted calls' p50 / p99 | 1.0 ms / 7.504 ms | p99 ≤ 3 × 2.501 ms = 7.503 ms | **no** |",
		"| broker RSS, highest sample / peak (VmHWM, whole life) | 149.96 MB / 0.0 MB | < 150 MB | yes |",
		"| p50 back to normal after the flood ends | 0.000 s; probes by code: OK 12, UNAVAILABLE 3 | ≤ 2 s | yes |",
		"| excess calls refused within 100 ms | 50 of 50 not admitted (RESOURCE_EXHAUSTED within 100 ms) | all of them | yes |",
	} {
		if !strings.Contains(tab, want) {
			t.Errorf("no line %q in:\n%s", want, tab)
		}
	}
}

func TestRefusedFast(t *testing.T) {
	for _, tt := range []struct {
		code codes.Code
		l    time.Duration
		want bool
	}{
		{codes.ResourceExhausted, time.Millisecond, true},
		{codes.ResourceExhausted, refuseWithin, true},
		{codes.ResourceExhausted, refuseWithin + 1, false},
		{codes.Unavailable, time.Millisecond, false},
		{codes.DeadlineExceeded, time.Millisecond, false},
		{codes.Internal, time.Millisecond, false},
	} {
		if got := refusedFast(tt.code, tt.l); got != tt.want {
			t.Errorf("refusedFast(%s, %s) = %t, want %t", tt.code, tt.l, got, tt.want)
		}
	}
}

func TestRoundOrder(t *testing.T) {
	paths := []string{"a", "b", "c"}
	for round, want := range [][]string{{"a", "b", "c"}, {"c", "b", "a"}, {"a", "b", "c"}, {"c", "b", "a"}} {
		if got := roundOrder(paths, round); !slices.Equal(got, want) {
			t.Errorf("round %d: %q, want %q", round, got, want)
		}
	}
	if !slices.Equal(paths, []string{"a", "b", "c"}) {
		t.Errorf("roundOrder changed its argument: %q", paths)
	}
}

// The load command's HTTP clients keep idle connections for the whole run:
// a new connection to the emulator or the broker is theirs, not the
// client's idle timeout.
func TestHTTPClientKeepsIdleConnections(t *testing.T) {
	c, _ := newHTTPClient(8)
	tr, ok := c.Transport.(*http.Transport)
	if !ok {
		t.Fatalf("transport %T", c.Transport)
	}
	if tr.IdleConnTimeout != 0 || tr.MaxIdleConnsPerHost != 8 {
		t.Errorf("idle timeout %s, %d idle connections a host; want none, 8", tr.IdleConnTimeout, tr.MaxIdleConnsPerHost)
	}
}

func TestParseProcStat(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want cpuTimes
	}{
		// user nice system idle iowait irq softirq steal guest guest_nice
		{"kernel 5+", "cpu  100 5 50 1000 20 3 2 1 7 9\ncpu0 1 2 3 4 5 6 7 8\n", cpuTimes{busy: 161, all: 1181}},
		{"no steal", "cpu  100 5 50 1000 20 3 2\n", cpuTimes{busy: 160, all: 1180}},
		{"per-CPU line first", "cpu0 100 5 50 1000 20 3 2\n", cpuTimes{}},
		{"too short", "cpu 1 2 3\n", cpuTimes{}},
		{"not numbers", "cpu a b c d e f\n", cpuTimes{}},
		{"empty", "", cpuTimes{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := parseProcStat(tc.in); got != tc.want {
				t.Errorf("parseProcStat(%q) = %+v, want %+v", tc.in, got, tc.want)
			}
		})
	}
	if got := (cpuTimes{busy: 450, all: 900}).busySince(cpuTimes{busy: 250, all: 500}); got != 2 {
		t.Errorf("busySince: %v CPU-seconds, want 2", got)
	}
	if got := (cpuTimes{busy: 450, all: 900}).busySince(cpuTimes{}); got != 0 {
		t.Errorf("busySince an unread start: %v, want 0", got)
	}
}

func TestSelectPaths(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{"", comparePaths(), false},
		{"grpc-put", []string{pathGRPCPut}, false},
		{"gateway-key, direct", []string{pathDirect, pathGRPCPut, pathGatewayKey}, false},
		{"seal,seal", []string{pathSeal, pathGRPCPut}, false},
		{"grpc", nil, true},
		{"direct,", nil, true},
	} {
		got, err := selectPaths(tc.in)
		if (err != nil) != tc.wantErr || !slices.Equal(got, tc.want) {
			t.Errorf("selectPaths(%q) = %q, %v; want %q (error %v)", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}
