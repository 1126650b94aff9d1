package main

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/secretbroker/secretbroker/upstream"
)

// Callers share the broker's GitHub budget fairly: the upstream pacer keeps
// one queue per caller and serves the queues in turn. Until callers
// authenticate, a caller is known by its IP address: the gRPC peer's, or,
// for a JSON call, the HTTP client's, which the gateway passes on in
// metadata that the gRPC server believes only alongside the gateway's
// per-process secret.
const (
	mdCaller  = "x-secretbroker-caller"
	mdGateway = "x-secretbroker-gateway"
)

// callerKeys tells callers apart for the pacer.
type callerKeys struct {
	gatewaySecret string
}

func newCallerKeys() (callerKeys, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return callerKeys{}, fmt.Errorf("gateway secret: %w", err)
	}
	return callerKeys{gatewaySecret: hex.EncodeToString(b[:])}, nil
}

// unary tags each call's context with its caller, for the pacer's queues.
func (k callerKeys) unary() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		return handler(upstream.WithCaller(ctx, k.of(ctx)), req)
	}
}

// of returns the caller of the call whose context is ctx.
func (k callerKeys) of(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	if g := md.Get(mdGateway); len(g) == 1 && subtle.ConstantTimeCompare([]byte(g[0]), []byte(k.gatewaySecret)) == 1 {
		if c := md.Get(mdCaller); len(c) == 1 && c[0] != "" {
			return c[0]
		}
	}
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return ""
	}
	return hostOf(p.Addr.String())
}

// gatewayMetadata is the gateway's annotator: it passes the HTTP client's
// IP address on to the gRPC server.
func (k callerKeys) gatewayMetadata(_ context.Context, r *http.Request) metadata.MD {
	return metadata.Pairs(mdGateway, k.gatewaySecret, mdCaller, hostOf(r.RemoteAddr))
}

// hostOf returns the host part of a "host:port" address, or addr itself.
func hostOf(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}
