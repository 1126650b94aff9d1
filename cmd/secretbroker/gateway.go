package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/secretbroker/secretbroker/gen/openapi"
	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
)

// newGateway returns the JSON gateway's HTTP handler: the grpc-gateway mux
// for SecretService, calling the gRPC server over conn, with
// GET /openapi.json and GET /healthz.
func newGateway(ctx context.Context, conn *grpc.ClientConn, callers callerKeys) (http.Handler, error) {
	mux := runtime.NewServeMux(
		// snake_case JSON, as GitHub's own, with every field present
		// (total_count 0, created false) so scripts see a fixed shape;
		// unknown fields are an error.
		runtime.WithMarshalerOption(runtime.MIMEWildcard, &runtime.JSONPb{
			MarshalOptions:   protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true},
			UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
		}),
		// "prod%2Feu" stays one path segment when routes are matched.
		runtime.WithUnescapingMode(runtime.UnescapingModeAllExceptReserved),
		// ... and reaches the service still escaped.
		runtime.WithMiddlewares(keepEscapedSlashes),
		runtime.WithHealthzEndpoint(healthpb.NewHealthClient(conn)),
		runtime.WithForwardResponseOption(createdStatus),
		// The HTTP client is the caller the pacer queues for.
		runtime.WithMetadata(callers.gatewayMetadata),
	)
	if err := secretbrokerv1.RegisterSecretServiceHandler(ctx, mux, conn); err != nil {
		return nil, fmt.Errorf("registering the gateway: %w", err)
	}
	if err := mux.HandlePath(http.MethodGet, "/openapi.json", serveOpenAPI); err != nil {
		return nil, fmt.Errorf("registering /openapi.json: %w", err)
	}
	return mux, nil
}

// createdStatus answers a PutSecret that created the secret with 201
// Created, as GitHub does; an update stays 200 OK.
func createdStatus(_ context.Context, w http.ResponseWriter, m proto.Message) error {
	if r, ok := m.(*secretbrokerv1.PutSecretResponse); ok && r.GetCreated() {
		w.WriteHeader(http.StatusCreated)
	}
	return nil
}

// serveOpenAPI serves the gateway's OpenAPI document.
func serveOpenAPI(w http.ResponseWriter, _ *http.Request, _ map[string]string) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, openapi.JSON)
}

// keepEscapedSlashes hands the service a multi-segment path variable
// exactly as the caller escaped it.
//
// google.api.http says that a variable spanning several segments
// ({name=repos/*/*/environments/*/secrets/*}) keeps "%2F" escaped, and
// resource names depend on it: environment "prod/eu" is "prod%2Feu". With
// UnescapingModeAllExceptReserved, grpc-gateway (v2.32) matches routes on
// the escaped path, so "prod%2Feu" is one segment, but then unescapes each
// single "*" segment completely, so the service would get
// ".../environments/prod/eu/secrets/X" and could not tell the slash from a
// separator. When the request path holds an escaped slash, this middleware
// matches the route's pattern once more against the raw path segments and
// passes every multi-segment variable on as the caller sent it; the
// service unescapes the environment segment once.
func keepEscapedSlashes(next runtime.HandlerFunc) runtime.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request, params map[string]string) {
		esc := r.URL.EscapedPath()
		if strings.Contains(esc, "%2F") || strings.Contains(esc, "%2f") {
			params = rawPathParams(r, esc, params)
		}
		next(w, r, params)
	}
}

// rawPathParams returns params with each multi-segment variable replaced
// by its raw, still-escaped value in the escaped path esc.
func rawPathParams(r *http.Request, esc string, params map[string]string) map[string]string {
	pat, ok := runtime.HTTPPattern(r.Context())
	if !ok || !strings.HasPrefix(esc, "/") {
		return params
	}
	components := strings.Split(esc[1:], "/")
	var verb string
	if v := pat.Verb(); v != "" {
		last := components[len(components)-1]
		if strings.HasSuffix(last, ":"+v) {
			components[len(components)-1] = strings.TrimSuffix(last, ":"+v)
			verb = v
		}
	}
	// UnescapingModeLegacy captures segments without unescaping them.
	raw, err := pat.MatchAndEscape(components, verb, runtime.UnescapingModeLegacy)
	if err != nil {
		return params
	}
	out := maps.Clone(params)
	for k, v := range raw {
		if strings.Contains(v, "/") {
			out[k] = v
		}
	}
	return out
}
