package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
)

// Tests of defects a review of the JSON gateway found (2026-11-28); each
// failed before its fix.

type blockingWait struct {
	secretbrokerv1.UnimplementedSecretServiceServer
	entered chan struct{}
	release chan struct{}
}

func (b *blockingWait) WaitOperation(ctx context.Context, _ *secretbrokerv1.WaitOperationRequest) (*secretbrokerv1.Operation, error) {
	b.entered <- struct{}{}
	select {
	case <-b.release:
	case <-ctx.Done():
	}
	return &secretbrokerv1.Operation{Name: "operations/x"}, nil
}

// TestGatewayChunkedBodyCostsWhatItIs: a body of unknown length (chunked)
// is paid for as the largest until it has been read, then as what it is:
// a 2-byte chunked body whose call waits must not hold the whole budget,
// refusing every other caller's body meanwhile.
func TestGatewayChunkedBodyCostsWhatItIs(t *testing.T) {
	svc := &blockingWait{entered: make(chan struct{}, 1), release: make(chan struct{})}
	conn := newLocalConn(nil, localServer{desc: &secretbrokerv1.SecretService_ServiceDesc, impl: svc,
		maxSendBytes: gatewayMaxSendBytes, maxStreams: 8, authority: gatewayAuthority})
	h := gatewayBehindDoor(t, conn, "s")
	serve := func(path string, length int64, body string) *httptest.ResponseRecorder {
		r := httptest.NewRequestWithContext(context.Background(), http.MethodPost, path, strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		r.ContentLength = length
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	done := make(chan *httptest.ResponseRecorder)
	go func() { done <- serve("/v1/operations/x:wait", -1, "{}") }() // chunked, 2 bytes
	<-svc.entered                                                    // body read whole, call in the service
	w := serve("/v1/secrets:batchDelete", 2, "{}")                   // another caller's 2-byte body
	close(svc.release)
	<-done
	if w.Code == http.StatusTooManyRequests {
		t.Errorf("a 2-byte body refused while a 2-byte chunked call waits: %d %s", w.Code, w.Body)
	}
}

type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// TestGatewayRateBeforeBody: a JSON call over the caller's rate is
// refused before a byte of its body is read, as a gRPC call is before its
// request is, with Retry-After and the RetryInfo in its details; the
// gRPC side takes no second token for the gateway's call.
func TestGatewayRateBeforeBody(t *testing.T) {
	callers := writeFile(t, "callers.yaml", "callers:\n  - name: pair\n    token_sha256: "+sha256Hex(pairToken)+"\n")
	cfg, err := loadConfig([]string{"--dev", "--grpc-addr=127.0.0.1:0", "--http-addr=127.0.0.1:0", "--admin-addr=127.0.0.1:0",
		"--callers-file=" + callers, "--caller-rps=0.001", "--caller-burst=1"}, envMap(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	door, _, err := newFrontDoor(t.Context(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	svc := &scriptedService{}
	conn := newLocalConn(nil, localServer{desc: door.wrap(&secretbrokerv1.SecretService_ServiceDesc), impl: svc,
		maxSendBytes: gatewayMaxSendBytes, maxStreams: 8, authority: gatewayAuthority})
	gw, err := newGateway(t.Context(), conn, door.keys)
	if err != nil {
		t.Fatal(err)
	}
	h := door.admitHTTP(gw, newCallLimits(0, 0, cfg.CallerMaxConcurrent, cfg.MaxConcurrentCalls), cfg.MaxInflightBytes)
	body := `{"value":"` + strings.Repeat("v", 4<<20) + `"}`
	for i := range 2 {
		cr := &countingReader{r: strings.NewReader(body)}
		r := httptest.NewRequestWithContext(context.Background(), http.MethodPut, "/v1/repos/octo-org/ok/actions/secrets/X", cr)
		r.ContentLength = int64(len(body))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Authorization", "Bearer "+pairToken)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		switch i {
		case 0: // the burst's one token: served (the scripted service answers)
			if w.Code == http.StatusTooManyRequests {
				t.Fatalf("the first call, within the burst, = %d %.200s: the gateway's call was charged twice", w.Code, w.Body)
			}
		case 1:
			if w.Code != http.StatusTooManyRequests {
				t.Fatalf("the second call, over the rate, = %d %.200s, want 429", w.Code, w.Body)
			}
			if n := cr.n.Load(); n > 0 {
				t.Errorf("refused over the rate after reading %d bytes of the body, want none", n)
			}
			if w.Header().Get("Retry-After") == "" {
				t.Error("429 over the rate without Retry-After")
			}
			var ans struct {
				Message string `json:"message"`
				Details []struct {
					Type string `json:"@type"`
				} `json:"details"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &ans); err != nil {
				t.Fatalf("429 body %q: %v", w.Body, err)
			}
			if strings.Count(ans.Message, "try again later") != 1 {
				t.Errorf("429 message %q: want \"try again later\" once", ans.Message)
			}
			if len(ans.Details) != 1 || !strings.HasSuffix(ans.Details[0].Type, "google.rpc.RetryInfo") {
				t.Errorf("429 details %+v, want one RetryInfo", ans.Details)
			}
		}
	}
}

// TestGatewayTrailersHoldNoBinary: a caller that asks for trailers (TE:
// trailers) gets an answer it can read when the call fails with details:
// no binary (-bin) metadata and no gRPC content-type in the trailers.
func TestGatewayTrailersHoldNoBinary(t *testing.T) {
	p := startGatewayPair(t)
	addr := strings.TrimPrefix(p.localURL, "http://")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /v1/repos/octo-org/retry/actions/secrets/public-key HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nTE: trailers\r\nConnection: close\r\n\r\n", pairToken)
	raw, _ := io.ReadAll(bufio.NewReader(c))
	if !strings.HasPrefix(string(raw), "HTTP/1.1 429") {
		t.Fatalf("answer %.200q, want a 429 (the scripted RESOURCE_EXHAUSTED)", raw)
	}
	for _, bad := range []string{"Grpc-Trailer-Grpc-Status-Details-Bin", "Grpc-Trailer-Content-Type"} {
		if strings.Contains(string(raw), bad) {
			t.Errorf("the answer's trailers hold %s: %q", bad, raw)
		}
	}
}

// TestGatewayDropsTraceMetadata: a caller's Grpc-Metadata-Traceparent
// must not become the gRPC server span's parent (over a connection the
// gateway's client stats handler would overwrite it with the HTTP span's
// context); the server span is the HTTP span's child.
func TestGatewayDropsTraceMetadata(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	prop := propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	sh := otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(tp), otelgrpc.WithPropagators(prop))
	svc := &scriptedService{}
	conn := newLocalConn(nil, localServer{desc: &secretbrokerv1.SecretService_ServiceDesc, impl: svc, stats: sh,
		maxSendBytes: gatewayMaxSendBytes, maxStreams: 8, authority: gatewayAuthority})
	gw, err := newGateway(t.Context(), conn, callerKeys{gatewaySecret: "s"})
	if err != nil {
		t.Fatal(err)
	}
	h := otelhttp.NewHandler(gw, "gateway", otelhttp.WithTracerProvider(tp), otelhttp.WithPropagators(prop))
	r := httptest.NewRequest(http.MethodGet, "/v1/repos/octo-org/ok/actions/secrets/public-key", nil)
	r.Header.Set("Traceparent", "00-11111111111111111111111111111111-1111111111111111-01")
	r.Header.Set("Grpc-Metadata-Traceparent", "00-22222222222222222222222222222222-2222222222222222-01")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	spans := exp.GetSpans()
	if len(spans) < 2 {
		t.Fatalf("%d spans, want the HTTP span and the gRPC server span", len(spans))
	}
	for _, s := range spans {
		if got := s.SpanContext.TraceID().String(); got != "11111111111111111111111111111111" {
			t.Errorf("span %q is in trace %s, want the caller's Traceparent's", s.Name, got)
		}
	}
}
