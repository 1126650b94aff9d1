package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"io"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/secretbroker/secretbroker/service/access"
	"github.com/secretbroker/secretbroker/service/identity"
)

// Planted bearer tokens: they must appear in no output.
const (
	plantedFlooder = "PLANTED-flooder-token-6f1e"
	plantedProber  = "PLANTED-prober-token-90ab"
)

func TestPercentile(t *testing.T) {
	oneTo := func(n int) []int {
		s := make([]int, n)
		for i := range s {
			s[i] = i + 1
		}
		return s
	}
	tests := []struct {
		name   string
		sorted []int
		p      float64
		want   int
		ok     bool
	}{
		{"empty", nil, 50, 0, false},
		{"p zero", oneTo(10), 0, 0, false},
		{"p over 100", oneTo(10), 101, 0, false},
		{"one sample p50", []int{7}, 50, 7, true},
		{"one sample p99", []int{7}, 99, 7, true},
		{"ten p50", oneTo(10), 50, 5, true},
		{"ten p90", oneTo(10), 90, 9, true},
		{"ten p99 rounds up", oneTo(10), 99, 10, true},
		{"ten max", oneTo(10), 100, 10, true},
		{"hundred p99", oneTo(100), 99, 99, true},
		{"hundred p1", oneTo(100), 1, 1, true},
		{"2000 p99", oneTo(2000), 99, 1980, true},
		{"2000 p99.9", oneTo(2000), 99.9, 1998, true},
		{"three p50", oneTo(3), 50, 2, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := percentile(tt.sorted, tt.p)
			if got != tt.want || ok != tt.ok {
				t.Errorf("percentile(%d samples, %g) = %d, %v; want %d, %v", len(tt.sorted), tt.p, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestCallersYAML(t *testing.T) {
	data := callersYAML([]caller{{name: flooderName, token: plantedFlooder}, {name: proberName, token: plantedProber}})
	for _, tok := range []string{plantedFlooder, plantedProber} {
		if bytes.Contains(data, []byte(tok)) {
			t.Fatalf("callers file holds a token:\n%s", data)
		}
		sum := sha256.Sum256([]byte(tok))
		if !bytes.Contains(data, []byte(hex.EncodeToString(sum[:]))) {
			t.Errorf("callers file lacks the hash of a token:\n%s", data)
		}
	}
	toks, err := identity.ParseTokens(data)
	if err != nil {
		t.Fatalf("the broker refuses the callers file: %v", err)
	}
	tests := []struct {
		token, want string
		ok          bool
	}{
		{plantedFlooder, "token:flooder", true},
		{plantedProber, "token:prober", true},
		{"someone-else", "", false},
	}
	for _, tt := range tests {
		got, ok := toks.Authenticate(tt.token)
		if got != tt.want || ok != tt.ok {
			t.Errorf("Authenticate(token of %q) = %q, %v; want %q, %v", tt.want, got, ok, tt.want, tt.ok)
		}
	}
}

func TestPolicyYAML(t *testing.T) {
	p, err := access.Parse([]byte(policyYAML()))
	if err != nil {
		t.Fatalf("the broker refuses the policy: %v", err)
	}
	const secret = repoScope + "/secrets/FLOOD_1"
	for _, caller := range []string{"token:flooder", "token:prober"} {
		for _, verb := range []string{access.Read, access.Write, access.Delete, access.ManageRepositories} {
			if !p.Allow(caller, verb, secret) {
				t.Errorf("policy denies %s %s on %s", caller, verb, secret)
			}
		}
	}
	if p.Allow("token:someone-else", access.Read, secret) {
		t.Error("policy allows a caller it does not name")
	}
}

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		check   func(t *testing.T, o options)
		wantErr string
	}{
		{name: "defaults", args: nil, check: func(t *testing.T, o options) {
			if !slices.Equal(o.scenarios, []string{"flood", "metadata", "cancel"}) || o.duration != 20*time.Second ||
				o.floodConcurrency != 300 || o.floodConns != 4 || o.floodBytes != 1<<20 || o.brokerBin != "" || len(o.brokerArgs) != 0 {
				t.Errorf("defaults: %+v", o)
			}
		}},
		{name: "one scenario and sizes", args: []string{"--scenario", "cancel", "--duration=5s", "--flood-concurrency=8", "--flood-conns=2", "--flood-bytes=8192", "--broker-bin=/x/sb"},
			check: func(t *testing.T, o options) {
				if !slices.Equal(o.scenarios, []string{"cancel"}) || o.duration != 5*time.Second || o.floodConcurrency != 8 ||
					o.floodConns != 2 || o.floodBytes != 8192 || o.brokerBin != "/x/sb" {
					t.Errorf("options: %+v", o)
				}
			}},
		{name: "pass-through after --", args: []string{"--scenario=flood", "--", "--caller-max-concurrent=64", "--log-level=warn"},
			check: func(t *testing.T, o options) {
				if !slices.Equal(o.brokerArgs, []string{"--caller-max-concurrent=64", "--log-level=warn"}) {
					t.Errorf("broker args %q", o.brokerArgs)
				}
				if !slices.Equal(o.args, []string{"--scenario=flood", "--", "--caller-max-concurrent=64", "--log-level=warn"}) {
					t.Errorf("args %q", o.args)
				}
			}},
		{name: "empty pass-through", args: []string{"--"}, check: func(t *testing.T, o options) {
			if len(o.brokerArgs) != 0 {
				t.Errorf("broker args %q", o.brokerArgs)
			}
		}},
		{name: "unknown scenario", args: []string{"--scenario=soak"}, wantErr: "--scenario"},
		{name: "zero duration", args: []string{"--duration=0s"}, wantErr: "--duration"},
		{name: "no goroutines", args: []string{"--flood-concurrency=0"}, wantErr: "--flood-concurrency"},
		{name: "more connections than goroutines", args: []string{"--flood-concurrency=2", "--flood-conns=3"}, wantErr: "--flood-conns"},
		{name: "batch too large", args: []string{"--flood-bytes=20000000"}, wantErr: "--flood-bytes"},
		{name: "broker flag before --", args: []string{"--caller-rps=1"}, wantErr: "not defined"},
		{name: "stray argument", args: []string{"flood"}, wantErr: "unexpected arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parseFlags(tt.args, io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseFlags(%q) error = %v; want one containing %q", tt.args, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseFlags(%q): %v", tt.args, err)
			}
			tt.check(t, o)
		})
	}
	if _, err := parseFlags([]string{"-h"}, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v; want flag.ErrHelp", err)
	}
}

func TestFloodShape(t *testing.T) {
	tests := []struct {
		bytes, items, value int
	}{
		{1 << 20, 64, 16 << 10},
		{8 << 10, 1, 8 << 10},
		{16 << 10, 1, 16 << 10},
		{16<<10 + 1, 2, 8<<10 + 0},
		{1000 * 16 << 10, 1000, 16 << 10},
	}
	for _, tt := range tests {
		items, value := floodShape(tt.bytes)
		if items != tt.items || value != tt.value {
			t.Errorf("floodShape(%d) = %d, %d; want %d, %d", tt.bytes, items, value, tt.items, tt.value)
		}
		if items > maxBatchItems || value > floodItemBytes || items*value > tt.bytes {
			t.Errorf("floodShape(%d) = %d × %d: out of bounds", tt.bytes, items, value)
		}
	}
}

func TestParseStatus(t *testing.T) {
	const status = "Name:\tsecretbroker\nVmPeak:\t 1300000 kB\nVmHWM:\t  181000 kB\nVmRSS:\t  172000 kB\nThreads:\t9\n"
	rss, hwm, err := parseStatus([]byte(status))
	if err != nil || rss != 172000<<10 || hwm != 181000<<10 {
		t.Errorf("parseStatus = %d, %d, %v", rss, hwm, err)
	}
	for _, bad := range []string{"Name:\tx\n", "VmHWM:\t 1 kB\n", "VmRSS:\t x kB\nVmHWM:\t 1 kB\n", "VmRSS:\t 1 MB\nVmHWM:\t 1 kB\n"} {
		if _, _, err := parseStatus([]byte(bad)); err == nil {
			t.Errorf("parseStatus(%q) did not fail", bad)
		}
	}
}

func TestParseStatCPU(t *testing.T) {
	// The command name may hold spaces and parentheses.
	const stat = "4242 (secret (broker)) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 120 0 0 20 0 9 0 100 0 0"
	got, err := parseStatCPU([]byte(stat))
	if err != nil || got != 3700*time.Millisecond {
		t.Errorf("parseStatCPU = %s, %v; want 3.7s", got, err)
	}
	if _, err := parseStatCPU([]byte("4242 (x) S 1 2")); err == nil {
		t.Error("parseStatCPU of a short line did not fail")
	}
}

func TestLogScan(t *testing.T) {
	l := newLogScan([]string{plantedFlooder})
	lines := []string{
		`time=2026-11-27T17:00:00Z level=INFO msg="secretbroker serving" grpc_addr=127.0.0.1:1`,
		`time=2026-11-27T17:00:01Z level=INFO msg="gRPC call" method=/secretbroker.v1.SecretService/GetPublicKey code=OK duration_ms=0.4 caller=token:prober`,
		`time=2026-11-27T17:00:01Z level=WARN msg="gRPC call" method=/secretbroker.v1.SecretService/BatchPutSecrets code=DeadlineExceeded duration_ms=2000`,
		`time=2026-11-27T17:00:01Z level=DEBUG msg="gRPC call" method=/grpc.health.v1.Health/Check code=OK`,
		`time=2026-11-27T17:00:02Z level=WARN msg="batch finished" items=64 failed=64`,
		`time=2026-11-27T17:00:03Z level=ERROR msg=boom error="token ` + plantedFlooder + `"`,
		`level=INFO msg="not a call" xcode=Internal`,
	}
	// Written in odd pieces, as a pipe delivers them.
	all := strings.Join(lines, "\n") + "\n"
	for len(all) > 0 {
		n := min(len(all), 37)
		if _, err := l.Write([]byte(all[:n])); err != nil {
			t.Fatal(err)
		}
		all = all[n:]
	}
	s := l.snapshot()
	if s.lines != len(lines) {
		t.Errorf("lines = %d; want %d", s.lines, len(lines))
	}
	if s.warnPlus != 3 {
		t.Errorf("WARN and above = %d; want 3", s.warnPlus)
	}
	wantMsgs := map[string]int{`WARN "gRPC call" code=DeadlineExceeded`: 1, `WARN "batch finished"`: 1, `ERROR "boom"`: 1}
	if !maps.Equal(s.warnMsgs, wantMsgs) {
		t.Errorf("warn messages = %v; want %v", s.warnMsgs, wantMsgs)
	}
	wantCalls := map[string]int{"OK": 1, "DeadlineExceeded": 1}
	if !maps.Equal(s.callCodes, wantCalls) {
		t.Errorf("call codes = %v; want %v", s.callCodes, wantCalls)
	}
	if tail := strings.Join(l.lastLines(), "\n"); strings.Contains(tail, plantedFlooder) || !strings.Contains(tail, "[redacted]") {
		t.Errorf("tail not redacted:\n%s", tail)
	}
}

func TestCommandLine(t *testing.T) {
	got := commandLine([]string{"--scenario=flood", "--", "--log-level=warn", "a b", "it's"})
	want := `go run ./cmd/secretbroker-load --scenario=flood -- --log-level=warn 'a b' 'it'\''s'`
	if got != want {
		t.Errorf("commandLine = %s; want %s", got, want)
	}
}

func TestBearerTokenNotFormatted(t *testing.T) {
	b := bearerToken{token: plantedFlooder}
	md, err := b.GetRequestMetadata(context.Background())
	if err != nil || md["authorization"] != "Bearer "+plantedFlooder {
		t.Errorf("metadata = %v, %v", md, err)
	}
	if s := b.String(); strings.Contains(s, plantedFlooder) {
		t.Errorf("String() = %q holds the token", s)
	}
}

// TestFloodSmoke runs a tiny flood against a real broker child process and
// checks the structure of what was measured, not its timing.
func TestFloodSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the broker")
	}
	ctx := t.Context()
	o, err := parseFlags([]string{"--scenario=flood", "--duration=1s", "--flood-concurrency=4", "--flood-conns=2", "--flood-bytes=8192"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	o.flooderToken, o.proberToken = plantedFlooder, plantedProber
	var progress bytes.Buffer
	env, cleanup, err := newRunEnv(ctx, o, &progress)
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()

	r, err := runFlood(ctx, o, env)
	if err != nil {
		t.Fatal(err)
	}
	if total(r.calls) == 0 {
		t.Fatal("no flood call was answered")
	}
	known := []string{"OK", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED"}
	for c := range r.calls {
		if !slices.Contains(known, c) {
			t.Errorf("flood call answered with %s; want one of %v (all: %v)", c, known, r.calls)
		}
	}
	if r.calls["OK"] > 0 && total(r.itemCodes) == 0 {
		t.Errorf("answered calls without item results: %v", r.calls)
	}
	wantProbes := int(o.duration / probeInterval)
	if len(r.probes) != wantProbes || total(r.probeCodes) != wantProbes {
		t.Errorf("probes: %d latencies, %d codes; want %d of each", len(r.probes), total(r.probeCodes), wantProbes)
	}
	if len(r.rss.samples) == 0 || r.rss.hwm <= 0 || r.rss.cpu <= 0 {
		t.Errorf("RSS not sampled: %d samples, peak %d, CPU %s", len(r.rss.samples), r.rss.hwm, r.rss.cpu)
	}
	if r.exitErr != nil {
		t.Errorf("broker exit: %v", r.exitErr)
	}
	if r.log.lines == 0 {
		t.Error("no broker log line was read")
	}

	tab := r.table(o).markdown()
	for _, want := range []string{"| broker peak RSS (VmHWM) |", "| prober latency p99 |", "| flood calls by code |"} {
		if !strings.Contains(tab, want) {
			t.Errorf("table lacks %q:\n%s", want, tab)
		}
	}
	for _, out := range []string{tab, progress.String()} {
		for _, tok := range []string{plantedFlooder, plantedProber} {
			if strings.Contains(out, tok) {
				t.Fatalf("output holds a token:\n%s", out)
			}
		}
	}
}
