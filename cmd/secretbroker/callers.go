package main

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"

	"google.golang.org/grpc/metadata"

	"github.com/secretbroker/secretbroker/service/identity"
)

// The JSON gateway is a client of the gRPC server over an in-process
// connection. It forwards the HTTP caller's credentials: the Authorization
// header as "authorization" metadata (grpc-gateway's default), and what
// only the gateway can see, the HTTP client's address and its verified
// client certificate's identity, in metadata that the gRPC server believes
// only alongside the gateway's per-process secret. The gateway drops any
// x-secretbroker-* metadata an HTTP caller sends, so none of it can be
// forged from outside.
const (
	mdCaller  = "x-secretbroker-caller" // the HTTP client's IP address
	mdX509    = "x-secretbroker-x509"   // the HTTP client certificate's caller
	mdGateway = "x-secretbroker-gateway"
)

// callerKeys holds the gateway's per-process secret.
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

// fromGateway reports whether a call's values of mdGateway are the
// gateway's secret, so that the gateway's other metadata can be believed.
func (k callerKeys) fromGateway(g []string) bool {
	return len(g) == 1 && subtle.ConstantTimeCompare([]byte(g[0]), []byte(k.gatewaySecret)) == 1
}

// gatewayMetadata is the gateway's annotator: it passes the HTTP client's
// IP address, and the caller its verified client certificate names, on to
// the gRPC server.
func (k callerKeys) gatewayMetadata(_ context.Context, r *http.Request) metadata.MD {
	// Built directly: the keys are lower case already (metadata.Pairs
	// would lower them again, a copy each).
	md := metadata.MD{mdGateway: {k.gatewaySecret}, mdCaller: {hostOf(r.RemoteAddr)}}
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
		if c, ok := identity.CertificateCaller(r.TLS.VerifiedChains[0][0]); ok {
			md.Set(mdX509, c)
		}
	}
	return md
}

// hostOf returns the host part of a "host:port" address, or addr itself.
func hostOf(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}
