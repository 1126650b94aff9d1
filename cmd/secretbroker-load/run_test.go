package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/service/access"
	"github.com/secretbroker/secretbroker/service/identity"
	"github.com/secretbroker/secretbroker/upstream/emulator"
)

// Planted bearer tokens: they must appear in no output.
const (
	plantedFlooder = "PLANTED-flooder-token-6f1e"
	plantedProber  = "PLANTED-prober-token-90ab"
	plantedGRPC    = "PLANTED-grpc-prober-token-c3d2"
	plantedGitHub  = "PLANTED-github-token-77e0"
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
	data := callersYAML([]caller{{name: flooderName, token: plantedFlooder}, {name: proberName, token: plantedProber},
		{name: grpcProberName, token: plantedGRPC}})
	for _, tok := range []string{plantedFlooder, plantedProber, plantedGRPC} {
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
		{plantedGRPC, "token:grpc-prober", true},
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
	for _, caller := range []string{"token:flooder", "token:prober", "token:grpc-prober"} {
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
			if !slices.Equal(o.scenarios, []string{"flood", "gateway", "metadata", "cancel"}) || o.duration != 20*time.Second ||
				o.floodConcurrency != 300 || o.floodConns != 4 || o.floodBytes != 1<<20 || o.brokerBin != "" || len(o.brokerArgs) != 0 ||
				o.batches != 50 || o.batchItems != 1000 || o.batchRounds != 1 {
				t.Errorf("defaults: %+v", o)
			}
		}},
		{name: "compare", args: []string{"--scenario=compare", "--workers=8", "--rate=500", "--rounds=5"}, check: func(t *testing.T, o options) {
			if !slices.Equal(o.scenarios, []string{"compare"}) || o.workers != 8 || o.rate != 500 || o.rounds != 5 {
				t.Errorf("options: %+v", o)
			}
		}},
		{name: "overload rate at its bound", args: []string{"--scenario=compare", "--overload-rate=1000000"}, check: func(t *testing.T, o options) {
			if o.overloadRate != 1_000_000 {
				t.Errorf("options: %+v", o)
			}
		}},
		{name: "compare defaults", args: []string{"--scenario=compare"}, check: func(t *testing.T, o options) {
			if o.workers != 32 || o.rate != 1000 || o.rounds != 3 {
				t.Errorf("options: %+v", o)
			}
		}},
		{name: "all leaves batches and compare out", args: []string{"--scenario=all"}, check: func(t *testing.T, o options) {
			if slices.Contains(o.scenarios, "batches") || slices.Contains(o.scenarios, "compare") || len(o.scenarios) != 4 {
				t.Errorf("scenarios %q", o.scenarios)
			}
		}},
		{name: "batches", args: []string{"--scenario=batches", "--batches=7", "--batch-items=1000", "--batch-rounds=3"}, check: func(t *testing.T, o options) {
			if !slices.Equal(o.scenarios, []string{"batches"}) || o.batches != 7 || o.batchItems != 1000 || o.batchRounds != 3 {
				t.Errorf("options: %+v", o)
			}
		}},
		{name: "one scenario and sizes", args: []string{"--scenario", "cancel", "--duration=5s", "--flood-concurrency=8", "--flood-conns=2", "--flood-bytes=8192", "--broker-bin=/x/sb"},
			check: func(t *testing.T, o options) {
				if !slices.Equal(o.scenarios, []string{"cancel"}) || o.duration != 5*time.Second || o.floodConcurrency != 8 ||
					o.floodConns != 2 || o.floodBytes != 8192 || o.brokerBin != "/x/sb" {
					t.Errorf("options: %+v", o)
				}
			}},
		{name: "gateway", args: []string{"--scenario=gateway", "--flood-concurrency=50"}, check: func(t *testing.T, o options) {
			if !slices.Equal(o.scenarios, []string{"gateway"}) || o.floodConcurrency != 50 {
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
		{name: "no batches", args: []string{"--scenario=batches", "--batches=0"}, wantErr: "--batches"},
		{name: "no batch items", args: []string{"--batch-items=0"}, wantErr: "--batch-items"},
		{name: "too many batch items", args: []string{"--batch-items=1001"}, wantErr: "--batch-items"},
		{name: "no rounds", args: []string{"--batch-rounds=0"}, wantErr: "--batch-rounds"},
		{name: "no workers", args: []string{"--workers=0"}, wantErr: "--workers"},
		{name: "no rate", args: []string{"--rate=0"}, wantErr: "--rate"},
		{name: "no compare rounds", args: []string{"--rounds=0"}, wantErr: "--rounds"},
		{name: "negative overload rate", args: []string{"--overload-rate=-1"}, wantErr: "--overload-rate"},
		{name: "overload rate past a call a microsecond", args: []string{"--overload-rate=2000000000"}, wantErr: "--overload-rate"},
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
		// Without --dev the broker logs JSON lines.
		`{"time":"2026-11-27T17:00:04Z","level":"INFO","msg":"gRPC call","method":"/secretbroker.v1.SecretService/GetSecret","code":"OK","duration_ms":3.2,"caller":"token:prober"}`,
		`{"time":"2026-11-27T17:00:04Z","level":"WARN","msg":"gRPC call","method":"/secretbroker.v1.SecretService/BatchPutSecrets","code":"Unavailable","duration_ms":1}`,
		`{"level":"INFO","msg":"quoted","note":"level=ERROR msg=boom method=/secretbroker.v1.SecretService/GetSecret code=Internal"}`,
		`{"level":"ERROR","msg":"gRPC call","method":"/grpc.health.v1.Health/Check","code":42}`,
		`{not JSON level=ERROR msg=boom`,
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
	if s.warnPlus != 5 {
		t.Errorf("WARN and above = %d; want 5", s.warnPlus)
	}
	wantMsgs := map[string]int{`WARN "gRPC call" code=DeadlineExceeded`: 1, `WARN "batch finished"`: 1, `ERROR "boom"`: 1,
		`WARN "gRPC call" code=Unavailable`: 1, `ERROR "gRPC call"`: 1}
	if !maps.Equal(s.warnMsgs, wantMsgs) {
		t.Errorf("warn messages = %v; want %v", s.warnMsgs, wantMsgs)
	}
	wantCalls := map[string]int{"OK": 2, "DeadlineExceeded": 1, "Unavailable": 1}
	if !maps.Equal(s.callCodes, wantCalls) {
		t.Errorf("call codes = %v; want %v", s.callCodes, wantCalls)
	}
	if tail := strings.Join(l.lastLines(), "\n"); strings.Contains(tail, plantedFlooder) || !strings.Contains(tail, "[redacted]") {
		t.Errorf("tail not redacted:\n%s", tail)
	}
}

// BenchmarkLogScanCallLine is the cost of one broker "gRPC call" line in
// JSON, which the broker writes for every call the load phases send.
func BenchmarkLogScanCallLine(b *testing.B) {
	l := newLogScan([]string{plantedFlooder})
	line := []byte(`{"time":"2026-11-28T02:40:00.123456789Z","level":"INFO","msg":"gRPC call","method":"/secretbroker.v1.SecretService/GetPublicKey",` +
		`"resource":"repos/octo-org/hello-world/actions","code":"OK","duration_ms":0.041,"caller":"token:flooder",` +
		`"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7"}` + "\n")
	b.ReportAllocs()
	for b.Loop() {
		_, _ = l.Write(line)
	}
	if l.snapshot().callCodes["OK"] == 0 {
		b.Fatal("no call counted")
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

func TestJSONBatchBody(t *testing.T) {
	tests := []struct {
		name   string
		values []string
		first  int
	}{
		{"none", nil, 0},
		{"one", []string{"abc"}, 0},
		{"three from 64", []string{"a1", "b2", "c3"}, 64},
		{"characters JSON escapes", []string{`q"uote\back`, "tab\tnl\n", "é<>&"}, 7},
		{"flood shape", randomValues(4, 16<<10), 128},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			quoted, err := jsonStrings(tt.values)
			if err != nil {
				t.Fatal(err)
			}
			b := jsonBatchBody("GATEWAY", tt.first, quoted)
			data, err := io.ReadAll(b.reader())
			if err != nil {
				t.Fatal(err)
			}
			if int64(len(data)) != b.size {
				t.Errorf("size %d; the body has %d bytes", b.size, len(data))
			}
			var got secretbrokerv1.BatchPutSecretsRequest
			if err := protojson.Unmarshal(data, &got); err != nil {
				t.Fatalf("the body is not a BatchPutSecretsRequest: %v\n%.300s", err, data)
			}
			if want := batchRequest("GATEWAY", tt.first, tt.values); !proto.Equal(&got, want) {
				t.Errorf("body %.300s\ndecodes to %v; want %v", data, &got, want)
			}
			// A second reader reads the same body: the pieces are not consumed.
			again, _ := io.ReadAll(b.reader())
			if !bytes.Equal(again, data) {
				t.Error("a second reader read another body")
			}
			for i, q := range quoted { // the values are shared, not copied
				if &b.pieces[2*i+1][0] != &q[0] {
					t.Errorf("value %d was copied into the body", i)
				}
			}
		})
	}
}

func TestTimeoutHeader(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{2 * time.Second, "2S"},
		{time.Minute, "60S"},
		{1500 * time.Millisecond, "1500m"},
		{time.Millisecond, "1m"},
		{time.Microsecond, "1m"},
		{2*time.Second + time.Nanosecond, "2001m"},
	}
	for _, tt := range tests {
		if got := timeoutHeader(tt.d); got != tt.want {
			t.Errorf("timeoutHeader(%s) = %q; want %q", tt.d, got, tt.want)
		}
	}
}

func TestTransportKind(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"deadline", &url.Error{Op: "Post", URL: "http://x/" + plantedFlooder, Err: context.DeadlineExceeded}, "timeout"},
		{"net timeout", &net.OpError{Op: "read", Err: os.ErrDeadlineExceeded}, "timeout"},
		{"cancelled", fmt.Errorf("x: %w", context.Canceled), "cancelled"},
		{"reset", &url.Error{Op: "Post", URL: "u", Err: &net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)}}, "connection reset"},
		{"EOF", &url.Error{Op: "Post", URL: "u", Err: io.EOF}, "connection closed (EOF)"},
		{"refused", &url.Error{Op: "Post", URL: "u", Err: &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}}, syscall.ECONNREFUSED.Error()},
		{"other", &url.Error{Op: "Post", URL: "u", Err: errors.New("boom " + plantedFlooder)}, "*errors.errorString"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := transportKind(tt.err); got != tt.want {
				t.Errorf("transportKind = %q; want %q", got, tt.want)
			}
		})
	}
}

// TestPostBatch sends batches and probes to a stand-in gateway and checks
// what it received and how its answers are named and counted.
func TestPostBatch(t *testing.T) {
	type seen struct {
		method, path, contentType, auth, timeout string
		length                                   int64
		body                                     []byte
	}
	got := make(chan seen, 1)
	var status int
	var answer string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got <- seen{r.Method, r.URL.Path, r.Header.Get("Content-Type"), r.Header.Get("Authorization"), r.Header.Get("Grpc-Timeout"), r.ContentLength, body}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, answer)
	}))
	defer srv.Close()
	client, dials := newHTTPClient(2)
	defer client.CloseIdleConnections()

	quoted, _ := jsonStrings([]string{"v1", "v2"})
	body := jsonBatchBody("GATEWAY", 0, quoted)
	want, _ := io.ReadAll(body.reader())
	tests := []struct {
		name   string
		status int
		answer string
		want   string
		items  map[string]int
	}{
		{"served", 200, `{"results":[{"name":"A","code":"OK"},{"name":"B","code":"RESOURCE_EXHAUSTED"}]}`, "HTTP 200", map[string]int{"OK": 1, "RESOURCE_EXHAUSTED": 1}},
		{"proto names and numbers", 200, `{"results":[{"name":"A","code":8,"retry_after":"1s"}]}`, "HTTP 200", map[string]int{"RESOURCE_EXHAUSTED": 1}},
		{"not a response", 200, `{"nope":1}`, "HTTP 200", map[string]int{"undecodable answer": 1}},
		{"refused", 429, `{"code":8}`, "HTTP 429", nil},
		{"too large", 413, `{"code":3}`, "HTTP 413", nil},
		{"deadline", 504, `{"code":4}`, "HTTP 504", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, answer = tt.status, tt.answer
			var items tally
			if a := postBatch(t.Context(), client, srv.URL+batchPutPath, plantedFlooder, body, &items); a != tt.want {
				t.Errorf("answer %q; want %q", a, tt.want)
			}
			s := <-got
			if s.method != http.MethodPost || s.path != batchPutPath || s.contentType != "application/json" ||
				s.auth != "Bearer "+plantedFlooder || s.timeout != "2S" || s.length != body.size || !bytes.Equal(s.body, want) {
				t.Errorf("the gateway saw %s %s, Content-Type %q, Grpc-Timeout %q, Content-Length %d, body %q",
					s.method, s.path, s.contentType, s.timeout, s.length, s.body)
			}
			if !maps.Equal(items.counts(), tt.items) {
				t.Errorf("items %v; want %v", items.counts(), tt.items)
			}
		})
	}
	if n := dials.Load(); n != 1 {
		t.Errorf("%d connections for %d requests in a row; want 1, kept alive", n, len(tests))
	}

	p := gatewayProber("prober (JSON gateway)", client, srv.URL+publicKeyPath, plantedProber)
	for _, tt := range []struct {
		status int
		want   string
		ok     bool
	}{{200, "HTTP 200", true}, {429, "HTTP 429", false}, {503, "HTTP 503", false}} {
		status, answer = tt.status, `{"key_id":"1","key":"k"}`
		a, ok := p.probe(t.Context())
		s := <-got
		if a != tt.want || ok != tt.ok || s.method != http.MethodGet || s.path != publicKeyPath || s.auth != "Bearer "+plantedProber {
			t.Errorf("probe = %q, %v (saw %s %s); want %q, %v", a, ok, s.method, s.path, tt.want, tt.ok)
		}
	}

	srv.Close()
	var items tally
	if a := postBatch(t.Context(), client, srv.URL+batchPutPath, plantedFlooder, body, &items); !strings.HasPrefix(a, "transport: ") || strings.Contains(a, plantedFlooder) {
		t.Errorf("answer of a closed server %q", a)
	}
}

// tableHas fails t unless the markdown table tab holds every one of rows.
func tableHas(t *testing.T, tab string, rows ...string) {
	t.Helper()
	for _, want := range rows {
		if !strings.Contains(tab, want) {
			t.Errorf("table lacks %q:\n%s", want, tab)
		}
	}
}

// latencies is 100 latencies of each of ms milliseconds.
func latencies(ms ...int) []time.Duration {
	out := make([]time.Duration, 0, 100*len(ms))
	for _, m := range ms {
		for range 100 {
			out = append(out, time.Duration(m)*time.Millisecond)
		}
	}
	return out
}

// TestFloodTable checks the targets and rows of a gateway result built by
// hand.
func TestFloodTable(t *testing.T) {
	o, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	r := floodResult{
		gateway: true, items: 64, valueBytes: 16 << 10, bodyBytes: 1_053_000, dials: 310,
		elapsed: 20 * time.Second,
		calls:   map[string]int{"HTTP 200": 100, "HTTP 429": 900},
		probes: []probeResult{
			{name: "prober (JSON gateway)", latencies: latencies(5, 20), codes: map[string]int{"HTTP 200": 200}, ok: 200},
			{name: "prober (gRPC)", latencies: latencies(5, 150), codes: map[string]int{"OK": 200}, ok: 200},
		},
		rss: rssSeries{samples: []int64{100e6, 310e6}, hwm: 310_500_000},
	}
	tab := r.table(o).markdown()
	tableHas(t, tab,
		"### gateway: 300 concurrent JSON batchPut requests of 64 values of 16384 bytes, for 20s",
		"a JSON body of 1053000 bytes", "Grpc-Timeout: 2S",
		"| target: peak RSS < 300 MB | **no** |",
		"| target: prober (JSON gateway) p99 < 100 ms, every probe OK | yes |",
		"| target: prober (gRPC) p99 < 100 ms, every probe OK | **no** |",
		"| broker peak RSS (VmHWM) | 310.5 MB |",
		"| flood requests | 1000 (50/s) |",
		"| flood requests by HTTP status | HTTP 429 900, HTTP 200 100 |",
		"| TCP connections the flood opened | 310 |",
		"| prober (JSON gateway) latency p50 | 5.0 ms |",
		"| prober (JSON gateway) latency p99 | 20.0 ms |",
		"| prober (gRPC) latency max | 150.0 ms |",
		"| prober (gRPC): probes by answer | OK 200 |",
	)
	// A probe that failed misses the target whatever its latency.
	r.probes[0].ok--
	if tab := r.table(o).markdown(); !strings.Contains(tab, "| target: prober (JSON gateway) p99 < 100 ms, every probe OK | **no** |") {
		t.Errorf("a failed probe met the target:\n%s", tab)
	}
}

// TestFloodSmoke runs a tiny flood, over gRPC and over the gateway,
// against a real broker child process and checks the structure of what
// was measured, not its timing.
func TestFloodSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the broker")
	}
	tests := []struct {
		scenario string
		run      func(context.Context, options, *runEnv) (floodResult, error)
		ok       string   // the answer of a call the broker served
		known    []string // the answers a flood call may get
		probers  []string
		rows     []string
	}{
		{
			scenario: "flood", run: runFlood, ok: "OK",
			known:   []string{"OK", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED"},
			probers: []string{"prober"},
			rows:    []string{"| prober latency p99 |", "| flood calls by code |", "| target: prober p99 < 100 ms, every probe OK |"},
		},
		{
			scenario: "gateway", run: runGateway, ok: "HTTP 200",
			known:   []string{"HTTP 200", "HTTP 429", "HTTP 504", "transport: timeout"},
			probers: []string{"prober (JSON gateway)", "prober (gRPC)"},
			rows: []string{"| prober (JSON gateway) latency p99 |", "| prober (gRPC) latency p99 |",
				"| flood requests by HTTP status |", "| TCP connections the flood opened |"},
		},
	}
	// Built once for both.
	o, env, progress := smokeEnv(t, "--duration=1s", "--flood-concurrency=4", "--flood-conns=2", "--flood-bytes=8192")
	for _, tt := range tests {
		t.Run(tt.scenario, func(t *testing.T) {
			r, err := tt.run(t.Context(), o, env)
			if err != nil {
				t.Fatal(err)
			}
			if total(r.calls) == 0 {
				t.Fatal("no flood call was answered")
			}
			for c := range r.calls {
				if !slices.Contains(tt.known, c) {
					t.Errorf("flood call answered with %s; want one of %v (all: %v)", c, tt.known, r.calls)
				}
			}
			if r.calls[tt.ok] > 0 && total(r.itemCodes) == 0 {
				t.Errorf("answered calls without item results: %v", r.calls)
			}
			if r.itemCodes["undecodable answer"] > 0 {
				t.Errorf("items: %v", r.itemCodes)
			}
			wantProbes := int(o.duration / probeInterval)
			if len(r.probes) != len(tt.probers) {
				t.Fatalf("%d probers; want %v", len(r.probes), tt.probers)
			}
			for i, p := range r.probes {
				if p.name != tt.probers[i] || len(p.latencies) != wantProbes || total(p.codes) != wantProbes {
					t.Errorf("prober %d: %s: %d latencies, %d answers; want %s with %d of each", i, p.name, len(p.latencies), total(p.codes), tt.probers[i], wantProbes)
				}
			}
			if r.gateway != (tt.scenario == "gateway") || (r.gateway && (r.dials < 1 || r.bodyBytes < 8192)) {
				t.Errorf("gateway %v, %d dials, bodies of %d bytes", r.gateway, r.dials, r.bodyBytes)
			}
			if len(r.rss.samples) == 0 || r.rss.hwm <= 0 || r.rss.cpu <= 0 {
				t.Errorf("RSS not sampled: %d samples, peak %d, CPU %s", len(r.rss.samples), r.rss.hwm, r.rss.cpu)
			}
			if r.exitErr != nil {
				t.Errorf("broker exit: %v", r.exitErr)
			}
			if r.log.lines == 0 || total(r.log.callCodes) == 0 {
				t.Errorf("broker log: %d lines, calls %v", r.log.lines, r.log.callCodes)
			}

			tab := r.table(o).markdown()
			tableHas(t, tab, append([]string{"| broker peak RSS (VmHWM) |"}, tt.rows...)...)
			noTokens(t, tab, progress.String())
		})
	}
}

// smokeEnv parses args, plants the tokens and prepares a run environment
// (building the broker), removed when t ends; progress is what it writes.
func smokeEnv(t *testing.T, args ...string) (options, *runEnv, *bytes.Buffer) {
	t.Helper()
	o, err := parseFlags(args, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	o.flooderToken, o.proberToken, o.grpcProberToken, o.githubToken = plantedFlooder, plantedProber, plantedGRPC, plantedGitHub
	var progress bytes.Buffer
	env, cleanup, err := newRunEnv(t.Context(), o, &progress)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup)
	return o, env, &progress
}

// noTokens fails t if any output holds a planted token.
func noTokens(t *testing.T, outputs ...string) {
	t.Helper()
	for _, out := range outputs {
		for _, tok := range []string{plantedFlooder, plantedProber, plantedGRPC, plantedGitHub} {
			if strings.Contains(out, tok) {
				t.Fatalf("output holds a token:\n%s", out)
			}
		}
	}
}

// TestBatchesSmoke runs a few small batches against a real broker child
// process and the emulator in this process, and checks the structure of
// what was measured, not its timing. The emulator accepts only the
// planted GitHub token, so that every write succeeding shows the broker
// got it from its environment.
func TestBatchesSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the broker")
	}
	const batches, items = 3, 40
	o, env, progress := smokeEnv(t, "--scenario=batches", "--batches=3", "--batch-items=40")
	r, err := runBatches(t.Context(), o, env)
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(r.calls, map[string]int{"OK": batches}) || !maps.Equal(r.itemCodes, map[string]int{"OK": batches * items}) {
		t.Errorf("batches %v, items %v; want every one OK", r.calls, r.itemCodes)
	}
	probes := len(r.probe.latencies)
	if r.probe.name != "prober" || total(r.probe.codes) != probes || r.probe.codes["OK"] != probes || r.probe.ok != probes {
		t.Errorf("probes: %d latencies, answers %v, %d OK", probes, r.probe.codes, r.probe.ok)
	}
	// One PUT an item; a GET for every probe but those the broker
	// coalesced with an identical read in flight; the keys of the scopes
	// it had not cached (at most the three); one list of each scope a
	// batch wrote, after its writes, to record GitHub's updated_at (the
	// record that lets an unchanged re-push skip its PUT); nothing else.
	puts, gets, keys := r.routes[emulator.RoutePutRepoSecret], r.routes[emulator.RouteGetRepoSecret], r.routes[emulator.RouteGetRepoPublicKey]
	lists := r.routes[emulator.RouteListRepoSecrets]
	if puts != batches*items || gets < min(probes, 1) || gets > probes || keys > len(batchScopes()) ||
		lists < 1 || lists > batches*len(batchScopes()) || puts+gets+keys+lists != r.requests {
		t.Errorf("the emulator received %d requests while the batches ran, %v; want %d PUTs, 1 to %d GETs of the secret, at most 3 of keys, 1 to %d lists, nothing else",
			r.requests, r.routes, batches*items, probes, batches*len(batchScopes()))
	}
	if r.upstream.PeakInFlight < 1 || r.upstream.Requests < r.requests {
		t.Errorf("emulator stats %+v", r.upstream)
	}
	if len(r.rss.samples) == 0 || r.rss.hwm <= 0 || r.elapsed <= 0 {
		t.Errorf("not measured: %d RSS samples, peak %d, wall time %s", len(r.rss.samples), r.rss.hwm, r.elapsed)
	}
	if r.exitErr != nil {
		t.Errorf("broker exit: %v", r.exitErr)
	}
	// The writes of PROBE and of the batches, the probes and the warm-up's.
	// The one WARN expected: the broker's state is in memory (no
	// --state-dir), which it says at start.
	unexpected := r.log.warnPlus
	for msg, n := range r.log.warnMsgs {
		if strings.HasPrefix(msg, `WARN "state store in memory:`) {
			unexpected -= n
		}
	}
	if r.log.callCodes["OK"] < 1+batches+probes+1 || unexpected != 0 {
		t.Errorf("broker log (JSON): calls %v, %d unexpected lines at WARN or above: %v", r.log.callCodes, unexpected, r.log.warnMsgs)
	}
	tab := r.table(o, env).markdown()
	tableHas(t, tab, "| target: prober p99 < 50 ms, every probe OK |", "| items by code | OK 120 |", "| prober latency p99 |")
	noTokens(t, tab, progress.String())
}

func TestBatchesFlags(t *testing.T) {
	env := &runEnv{callersFile: "/tmp/c/callers.yaml", policyFile: "/tmp/c/policy.yaml", extra: []string{"--log-level=warn"},
		githubToken: plantedGitHub, secret: []string{plantedFlooder, plantedProber, plantedGRPC, plantedGitHub}}
	got := env.batchesFlags("http://127.0.0.1:4321", "127.0.0.1:1", "127.0.0.1:2")
	want := []string{
		"--upstream-url=http://127.0.0.1:4321", "--grpc-addr=127.0.0.1:1", "--http-addr=127.0.0.1:2",
		"--callers-file=/tmp/c/callers.yaml", "--policy-file=/tmp/c/policy.yaml", "--shutdown-timeout=15s",
		"--upstream-write-interval=0", "--upstream-points-per-minute=0", "--upstream-cpu-time-per-minute=0", "--upstream-writes-per-minute=0", "--upstream-writes-per-hour=0",
		"--upstream-max-in-flight=100",
		"--caller-max-concurrent=0", "--caller-rps=0", "--max-working-calls=0",
		"--log-level=warn", // the pass-through flags last, so that they override
	}
	if !slices.Equal(got, want) {
		t.Errorf("batchesFlags =\n%q\nwant\n%q", got, want)
	}
	// The compare scenario keeps the bound on calls at work as it is by
	// default: its overload phase measures it.
	cmp := env.compareFlags("http://127.0.0.1:4321", "127.0.0.1:1", "127.0.0.1:2")
	if wantCmp := slices.DeleteFunc(slices.Clone(want), func(f string) bool { return f == "--max-working-calls=0" }); !slices.Equal(cmp, wantCmp) {
		t.Errorf("compareFlags =\n%q\nwant\n%q", cmp, wantCmp)
	}
	// The --dev scenarios' flags differ only in the mode and the limits.
	dev := env.brokerFlags("127.0.0.1:1", "127.0.0.1:2")
	if dev[0] != "--dev" || !slices.Equal(dev[1:6], got[1:6]) || dev[len(dev)-1] != "--log-level=warn" || slices.Contains(dev, "--caller-rps=0") {
		t.Errorf("brokerFlags = %q", dev)
	}
}

// TestBatchesTable checks the target and rows of a batches result built by
// hand.
func TestBatchesTable(t *testing.T) {
	o, err := parseFlags([]string{"--scenario=batches"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	env := &runEnv{callersFile: "/tmp/c/callers.yaml", policyFile: "/tmp/c/policy.yaml",
		githubToken: plantedGitHub, secret: []string{plantedFlooder, plantedProber, plantedGRPC, plantedGitHub}}
	base := batchesResult{
		calls:     map[string]int{"OK": 50},
		itemCodes: map[string]int{"OK": 49000, "DEADLINE_EXCEEDED": 1000},
		elapsed:   12500 * time.Millisecond,
		brokerCPU: 12 * time.Second, selfCPU: 7 * time.Second,
		upstream: emulator.Stats{PeakInFlight: 100},
		requests: 50003,
		routes:   map[string]int{emulator.RoutePutRepoSecret: 50000, emulator.RouteGetRepoSecret: 1, emulator.RouteGetRepoPublicKey: 2},
		probe:    probeResult{name: "prober", latencies: latencies(5, 20), codes: map[string]int{"OK": 200}, ok: 200},
		rss:      rssSeries{samples: []int64{150e6, 155e6}, hwm: 155_600_000, cpu: 12 * time.Second},
		log:      logSnapshot{callCodes: map[string]int{"OK": 1251}},
	}
	tab := base.table(o, env).markdown()
	tableHas(t, tab,
		"### batches: 50 concurrent batches of 1000 values of 64 bytes, pacing limits off",
		"Not part of --scenario all",
		"--upstream-url=http://127.0.0.1:PORT --grpc-addr=127.0.0.1:PORT",
		"--upstream-write-interval=0 --upstream-points-per-minute=0 --upstream-cpu-time-per-minute=0 --upstream-writes-per-minute=0 --upstream-writes-per-hour=0 --upstream-max-in-flight=100 --caller-max-concurrent=0 --caller-rps=0",
		"front door refuses none of the flooder's calls",
		"GetSecret of repos/octo-org/hello-world/actions/secrets/PROBE",
		"| target: prober p99 < 50 ms, every probe OK | yes |",
		"| batches | 50 (50 goroutines × 1) |",
		"| batches by code | OK 50 |",
		"| items by code | OK 49000, DEADLINE_EXCEEDED 1000 |",
		"| batches' wall time (first start to last return) | 12.500 s |",
		"| items written (OK) per second | 3920 |",
		"| emulator requests while the batches ran | 50003 (4000/s) |",
		"| … by route | PUT /repos/{owner}/{repo}/{app}/secrets/{secret_name} 50000, GET /repos/{owner}/{repo}/{app}/secrets/public-key 2, GET /repos/{owner}/{repo}/{app}/secrets/{secret_name} 1 |",
		"| emulator requests in flight at most | 100 |",
		"| broker CPU time during the batches | 12.000 s |",
		"| load command CPU time during the batches (emulator and clients, same machine) | 7.000 s |",
		"| broker peak RSS (VmHWM) | 155.6 MB |",
		"| SecretService calls the broker logged, by code | OK 1251 |",
		"| prober: probes | 200 |",
		"| prober latency p50 | 5.0 ms |",
		"| prober latency p99 | 20.0 ms |",
	)
	if strings.Contains(tab, plantedGitHub) {
		t.Errorf("table holds the GitHub token:\n%s", tab)
	}

	tests := []struct {
		name   string
		change func(r *batchesResult)
		want   string
	}{
		{"p99 just under", func(r *batchesResult) { r.probe.latencies = latencies(5, 49) }, "yes"},
		{"p99 at the target", func(r *batchesResult) { r.probe.latencies = latencies(5, 50) }, "**no**"},
		{"p99 over", func(r *batchesResult) { r.probe.latencies = latencies(30, 108) }, "**no**"},
		{"a probe failed", func(r *batchesResult) { r.probe.ok--; r.probe.codes = map[string]int{"OK": 199, "UNAVAILABLE": 1} }, "**no**"},
		{"no probes", func(r *batchesResult) { r.probe = probeResult{name: "prober", codes: map[string]int{}} }, "**no**"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := base
			r.probe.codes = maps.Clone(base.probe.codes)
			tt.change(&r)
			row := "| target: prober p99 < 50 ms, every probe OK | " + tt.want + " |"
			if tab := r.table(o, env).markdown(); !strings.Contains(tab, row) {
				t.Errorf("table lacks %q:\n%s", row, tab)
			}
		})
	}
}

func TestChildEnv(t *testing.T) {
	tests := []struct {
		name    string
		environ []string
		want    []string
	}{
		{"nothing", nil, nil},
		{"kept", []string{"PATH=/bin", "HOME=/root"}, []string{"PATH=/bin", "HOME=/root"}},
		{"broker settings dropped", []string{"SECRETBROKER_CALLER_RPS=1", "PATH=/bin"}, []string{"PATH=/bin"}},
		{"the parent's GitHub token dropped", []string{"GITHUB_TOKEN=" + plantedGitHub, "GITHUB_TOKEN_X=1"}, []string{"GITHUB_TOKEN_X=1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := childEnv(tt.environ); !slices.Equal(got, tt.want) {
				t.Errorf("childEnv(%q) = %q; want %q", tt.environ, got, tt.want)
			}
		})
	}
}

// The RSS rows' median sample is a true median: the mean of the middle two
// for an even count of samples.
func TestRSSRowsMedian(t *testing.T) {
	const row = "broker RSS, highest / median sample"
	for _, tt := range []struct {
		name    string
		samples []int64
		want    string // "" when there is no row
	}{
		{"none", nil, ""},
		{"one", []int64{5e6}, "5.0 MB / 5.0 MB"},
		{"three: the middle", []int64{1e6, 3e6, 2e6}, "3.0 MB / 2.0 MB"},
		{"two: the mean of both", []int64{2e6, 1e6}, "2.0 MB / 1.5 MB"},
		{"four: the mean of the middle two", []int64{1e6, 4e6, 2e6, 3e6}, "4.0 MB / 2.5 MB"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var tab table
			rssRows(&tab, rssSeries{samples: tt.samples})
			got := ""
			for _, r := range tab.rows {
				if r[0] == row {
					got = r[1]
				}
			}
			if got != tt.want {
				t.Errorf("%q = %q, want %q", row, got, tt.want)
			}
		})
	}
}
