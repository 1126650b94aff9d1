package main

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/test/bufconn"
)

// countingListener counts the connections it accepts.
type countingListener struct {
	net.Listener
	accepted *atomic.Int32
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
	}
	return c, err
}

// TestGRPCConnectionRenewedAfterMaxAge: with --grpc-max-connection-age, a
// client's connection is renewed once it is that old (the server's
// GOAWAY), so that long-lived clients spread over replicas added since;
// the client's calls go on over a new connection. Without it, the one
// connection lives on.
func TestGRPCConnectionRenewedAfterMaxAge(t *testing.T) {
	for _, tc := range []struct {
		name   string
		maxAge time.Duration
		want   int32 // connections after two calls three minutes apart
	}{
		{"a minute", time.Minute, 2},
		{"for ever", 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ln := bufconn.Listen(64 << 10)
				var accepted atomic.Int32
				srv := grpc.NewServer(grpc.KeepaliveParams(grpcKeepalive(tc.maxAge)))
				healthpb.RegisterHealthServer(srv, health.NewServer())
				go func() { _ = srv.Serve(countingListener{ln, &accepted}) }()
				defer srv.Stop()
				conn, err := grpc.NewClient("passthrough:///broker",
					grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return ln.DialContext(ctx) }),
					grpc.WithTransportCredentials(insecure.NewCredentials()))
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				client := healthpb.NewHealthClient(conn)
				for i := range 2 {
					if i > 0 {
						time.Sleep(3 * time.Minute)
					}
					if _, err := client.Check(t.Context(), &healthpb.HealthCheckRequest{}); err != nil {
						t.Fatalf("call %d: %v", i+1, err)
					}
				}
				if got := accepted.Load(); got != tc.want {
					t.Errorf("%d connections, want %d", got, tc.want)
				}
			})
		})
	}
}
