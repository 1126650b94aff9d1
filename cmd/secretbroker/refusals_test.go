package main

import (
	"context"
	"log/slog"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"golang.org/x/sync/semaphore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/upstream/metricstest"
)

// TestGatewayCallRefusedInProcessCountsAsHTTP: README says "a JSON call refused by the
// in-process gRPC side counts as http"; a gateway call refused by the
// gRPC side's bound on request bytes in progress counts as http.
func TestGatewayCallRefusedInProcessCountsAsHTTP(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	rc, err := newRefusalCounter(mp)
	if err != nil {
		t.Fatal(err)
	}
	door := &frontDoor{
		keys:     callerKeys{gatewaySecret: "gw-secret"},
		limits:   newCallLimits(0, 0, 0, 0),
		inflight: semaphore.NewWeighted(1), // full: every request is refused
		refusals: rc,
		log:      slog.New(slog.DiscardHandler),
	}
	if !door.inflight.TryAcquire(1) {
		t.Fatal("acquire")
	}
	desc := door.wrap(&secretbrokerv1.SecretService_ServiceDesc)
	var h grpc.MethodDesc
	for _, m := range desc.Methods {
		if m.MethodName == "GetSecret" {
			h = m
		}
	}
	// A call as the in-process gateway makes it (localConn): the gateway's
	// metadata.
	ctx := metadata.NewIncomingContext(context.Background(), metadata.MD{
		mdGateway: {"gw-secret"}, mdCaller: {"127.0.0.1"}, mdX509: {""},
	})
	_, err = h.Handler(nil, ctx, func(v any) error { return nil }, nil)
	if err == nil {
		t.Fatal("not refused")
	}
	got := metricstest.Read(t, reader)
	if got["secretbroker_calls_refused_total{listener=http,reason=bytes}"] != 1 {
		t.Errorf("a JSON call refused by the gRPC side for bytes is not counted as listener=http (README): %v", got)
	}
}
