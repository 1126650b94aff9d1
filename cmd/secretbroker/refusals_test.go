package main

import (
	"context"
	"log/slog"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/upstream/metricstest"
)

// TestGatewayCallRefusedInProcessCountsAsHTTP: README says "a JSON call refused by the
// in-process gRPC side counts as http"; a gateway call refused by the
// gRPC side's limits counts as http, a gRPC call refused by the gRPC
// listener's bound on request bytes as grpc. (A gateway call's bytes are
// paid on the HTTP listener's budget only, never on the gRPC side's.)
func TestGatewayCallRefusedInProcessCountsAsHTTP(t *testing.T) {
	for _, tt := range []struct {
		name string
		md   metadata.MD
		want string
	}{
		// A call as the in-process gateway makes it (localConn): the
		// gateway's metadata. The bound on calls in progress is full.
		{"gateway", metadata.MD{mdGateway: {"gw-secret"}, mdCaller: {"127.0.0.1"}, mdX509: {""}},
			"secretbroker_calls_refused_total{listener=http,reason=calls}"},
		// A gRPC call: the gRPC listener's byte budget is full.
		{"grpc", metadata.MD{}, "secretbroker_calls_refused_total{listener=grpc,reason=bytes}"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			reader := sdkmetric.NewManualReader()
			mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
			rc, err := newRefusalCounter(mp)
			if err != nil {
				t.Fatal(err)
			}
			door := &frontDoor{
				keys:      callerKeys{gatewaySecret: "gw-secret"},
				limits:    newCallLimits(0, 0, 0, 1),
				grpcBytes: newByteBudget(maxRequestBytes),
				refusals:  rc,
				log:       slog.New(slog.DiscardHandler),
			}
			if tt.md[mdGateway] != nil {
				if _, refused := door.limits.admitUnrated("another"); refused != nil {
					t.Fatal(refused.reason)
				}
			} else if _, err := door.grpcBytes.reserve("another", maxRequestBytes); err != nil {
				t.Fatal(err)
			}
			desc := door.wrap(&secretbrokerv1.SecretService_ServiceDesc)
			var h grpc.MethodDesc
			for _, m := range desc.Methods {
				if m.MethodName == "GetSecret" {
					h = m
				}
			}
			ctx := metadata.NewIncomingContext(context.Background(), tt.md)
			_, err = h.Handler(nil, ctx, func(v any) error { return nil }, nil)
			if status.Code(err) != codes.ResourceExhausted {
				t.Fatalf("%v, want RESOURCE_EXHAUSTED", err)
			}
			if got := metricstest.Read(t, reader); got[tt.want] != 1 {
				t.Errorf("want %s 1 (README): %v", tt.want, got)
			}
		})
	}
}
