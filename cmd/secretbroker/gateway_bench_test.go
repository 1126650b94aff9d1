package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/secretbroker/secretbroker/cmd/secretbroker/internal/tracelog"
	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
)

// The gateway's cost per call beside gRPC's, through the whole server
// over loopback: a --dev --dev-limits=off broker with bearer-token callers
// and a policy, logging at info level (one line per call, as in
// production), called for a cached GetPublicKey over gRPC and over the
// JSON gateway. Compare the two benchmarks' ns/op and allocs/op:
//
//	go test ./cmd/secretbroker -run '^$' -bench 'GetPublicKey' -benchmem -cpu 2
//
// TestGatewayAllocations guards the gateway's allocations per call.

// benchToken is the bench caller's bearer token.
const benchToken = "bench-token-PLANTED-0b7e"

// benchScope is the scope whose public key the benchmarks fetch.
const benchScope = "repos/octo-org/hello-world/actions"

// benchPublicKeyPath is the gateway's path of benchScope's public key.
const benchPublicKeyPath = "/v1/" + benchScope + "/secrets/public-key"

// benchBroker is a broker for benchmarks and allocation tests: run in
// this process, with a client of each kind.
type benchBroker struct {
	grpcAddr, httpAddr string
	grpc               secretbrokerv1.SecretServiceClient
	http               *http.Client
}

// startBenchBroker runs a --dev --dev-limits=off broker whose one caller,
// "bench", may read everything, logging JSON lines at info level to logs
// (io.Discard when nil). It stops when tb ends.
func startBenchBroker(tb testing.TB, logs io.Writer) *benchBroker {
	tb.Helper()
	dir := tb.TempDir()
	callers := writeFileIn(tb, dir, "callers.yaml", "callers:\n  - name: bench\n    token_sha256: "+sha256Hex(benchToken)+"\n")
	policy := writeFileIn(tb, dir, "policy.yaml", "rules:\n  - callers: [\"token:bench\"]\n    verbs: [read, write]\n    resources: [\"**\"]\n")
	cfg, err := loadConfig([]string{"--dev", "--dev-limits=off", "--grpc-addr=127.0.0.1:0", "--http-addr=127.0.0.1:0",
		"--admin-addr=127.0.0.1:0", "--shutdown-timeout=5s", "--callers-file=" + callers, "--policy-file=" + policy,
		"--caller-max-concurrent=0", "--caller-rps=0"}, envMap(nil), io.Discard)
	if err != nil {
		tb.Fatal(err)
	}
	if logs == nil {
		logs = io.Discard
	}
	logger := slog.New(tracelog.NewHandler(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	ready := make(chan [2]string, 1)
	go func() {
		done <- run(ctx, cfg, logger, nil, func(g, h, _ string) { ready <- [2]string{g, h} })
	}()
	b := &benchBroker{}
	select {
	case addrs := <-ready:
		b.grpcAddr, b.httpAddr = addrs[0], addrs[1]
	case err := <-done:
		cancel()
		tb.Fatalf("run returned before it was ready: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		tb.Fatal("run not ready after 30s")
	}
	conn, err := grpc.NewClient(b.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		cancel()
		tb.Fatal(err)
	}
	b.grpc = secretbrokerv1.NewSecretServiceClient(conn)
	b.http = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}}
	tb.Cleanup(func() {
		b.http.CloseIdleConnections()
		conn.Close()
		cancel()
		select {
		case err := <-done:
			if err != nil {
				tb.Errorf("run: %v", err)
			}
		case <-time.After(30 * time.Second):
			tb.Error("run did not return within 30s of cancellation")
		}
	})
	return b
}

// writeFileIn writes content to dir/name and returns its path.
func writeFileIn(tb testing.TB, dir, name, content string) string {
	tb.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		tb.Fatal(err)
	}
	return p
}

// grpcPublicKey fetches benchScope's public key over gRPC.
func (b *benchBroker) grpcPublicKey(ctx context.Context) error {
	_, err := b.grpc.GetPublicKey(withBearer(ctx, benchToken), &secretbrokerv1.GetPublicKeyRequest{Parent: benchScope})
	return err
}

// gatewayPublicKey fetches benchScope's public key through the gateway and
// returns the answer's body; an answer other than 200 is an error.
func (b *benchBroker) gatewayPublicKey(ctx context.Context, buf *bytes.Buffer) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+b.httpAddr+benchPublicKeyPath, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+benchToken)
	resp, err := b.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	buf.Reset()
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return &gatewayStatusError{code: resp.StatusCode, body: buf.String()}
	}
	return nil
}

type gatewayStatusError struct {
	code int
	body string
}

func (e *gatewayStatusError) Error() string {
	return "HTTP " + http.StatusText(e.code) + ": " + e.body
}

// BenchmarkGRPCGetPublicKey is a cached GetPublicKey over gRPC.
func BenchmarkGRPCGetPublicKey(b *testing.B) {
	bb := startBenchBroker(b, nil)
	ctx := b.Context()
	if err := bb.grpcPublicKey(ctx); err != nil { // fills the key cache
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := bb.grpcPublicKey(ctx); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkGatewayGetPublicKey is the same call through the JSON gateway.
func BenchmarkGatewayGetPublicKey(b *testing.B) {
	bb := startBenchBroker(b, nil)
	ctx := b.Context()
	var buf bytes.Buffer
	if err := bb.gatewayPublicKey(ctx, &buf); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var buf bytes.Buffer
		for pb.Next() {
			if err := bb.gatewayPublicKey(ctx, &buf); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
