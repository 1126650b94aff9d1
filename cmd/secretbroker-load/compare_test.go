package main

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"
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
	// probes builds probes 10 ms apart with the given latencies in ms.
	probes := func(lat ...int) []recoveryProbe {
		p := make([]recoveryProbe, len(lat))
		for i, l := range lat {
			p[i] = recoveryProbe{at: ms(10 * i), lat: ms(l)}
		}
		return p
	}
	slow := []int{900, 800, 700, 600, 500, 400, 300, 200, 100, 90}
	fast := []int{1, 1, 1, 1, 1, 1, 1, 1, 1, 1}
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
		{"after the slow ones", probes(append(slow, fast...)...), ms(2), ms(50), true},
		{"an unanswered probe blocks its runs", probes(append(append([]int{}, fast[:5]...), append([]int{0}, fast...)...)...), ms(2), ms(60), true},
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

func TestMedian(t *testing.T) {
	get := func(f figures) float64 { return f.rps }
	tests := []struct {
		name string
		in   []float64
		want float64
	}{
		{"none", nil, 0},
		{"one", []float64{3}, 3},
		{"three", []float64{9, 1, 5}, 5},
		{"four takes the lower middle", []float64{4, 1, 3, 2}, 2},
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

// Two visits in a row to a secret never write the same value, so the
// broker never skips a compare PutSecret as unchanged.
func TestCompareValueIndexNeverRepeatsForASecret(t *testing.T) {
	last := map[int]int{} // secret -> value index it last got
	for i := range 50 * compareNames {
		v := compareValueIndex(i)
		if v < 0 || v >= compareNames {
			t.Fatalf("call %d: value index %d out of range", i, v)
		}
		if prev, ok := last[i%compareNames]; ok && prev == v {
			t.Fatalf("call %d writes secret %d the value %d it already holds", i, i%compareNames, v)
		}
		last[i%compareNames] = v
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
