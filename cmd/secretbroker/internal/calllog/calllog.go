// Package calllog owns the gRPC server's interceptors around each call:
// one log line per call (method, resource, caller, status code, duration;
// health checks and reflection at DEBUG, the broker's or GitHub's faults at
// WARN), and a handler's panic logged with its stack and answered
// INTERNAL. They never log a message's content.
package calllog

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/secretbroker/secretbroker/service/identity"
)

// The interceptors never see a message's content: they log the method, the
// status code and the duration, and nothing a caller sent or received,
// since requests carry secret values.

// errInternal is what a caller gets when a handler panics.
func errInternal() error { return status.Error(codes.Internal, "internal error") }

// RecoverUnary turns a handler's panic into codes.Internal "internal
// error" and logs it without the request.
func RecoverUnary(logger *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		defer func() {
			if r := recover(); r != nil {
				logPanic(ctx, logger, info.FullMethod, r)
				resp, err = nil, errInternal()
			}
		}()
		return handler(ctx, req)
	}
}

// RecoverStream is RecoverUnary for streaming handlers.
func RecoverStream(logger *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
		defer func() {
			if r := recover(); r != nil {
				logPanic(ss.Context(), logger, info.FullMethod, r)
				err = errInternal()
			}
		}()
		return handler(srv, ss)
	}
}

// logPanic logs a recovered panic with its stack. A panic's value may have
// been built from a request, so only a runtime error's message (a nil
// dereference, an index out of range) is logged; of any other value, only
// its type.
func logPanic(ctx context.Context, logger *slog.Logger, method string, r any) {
	what := fmt.Sprintf("%T", r)
	if re, ok := r.(runtime.Error); ok {
		what = re.Error()
	}
	logger.ErrorContext(ctx, "panic in gRPC handler",
		slog.String("method", method),
		slog.String("panic", what),
		slog.String("stack", string(debug.Stack())),
	)
}

// LogUnary logs one line per call: method, resource (the request's name
// or parent, when it has one), caller, status code and duration; the
// logger's handler (tracelog.NewHandler) adds the trace and span ids. Health
// checks, which probes make every few seconds, are logged at debug level.
func LogUnary(logger *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := handler(ctx, req)
		logCall(ctx, logger, info.FullMethod, resourceOf(req), err, time.Since(start))
		return resp, err
	}
}

// maxLoggedResource bounds the resource name a call's line carries: the
// name is the caller's, and a request with a longer one is refused anyway.
const maxLoggedResource = 512

// resourceOf returns the resource a request names (a secret's name, or a
// scope's parent for lists and public keys), or "" for none. Resource
// names are identifiers, never values.
func resourceOf(req any) string {
	var res string
	switch r := req.(type) {
	case interface{ GetName() string }:
		res = r.GetName()
	case interface{ GetParent() string }:
		res = r.GetParent()
	}
	if len(res) > maxLoggedResource {
		// Cut on a character's boundary: a name's last character may
		// take several bytes.
		res = strings.ToValidUTF8(res[:maxLoggedResource], "")
	}
	return res
}

// LogStream is LogUnary for streaming calls, logged when the stream ends.
func LogStream(logger *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		start := time.Now()
		err := handler(srv, ss)
		logCall(ss.Context(), logger, info.FullMethod, "", err, time.Since(start))
		return err
	}
}

func logCall(ctx context.Context, logger *slog.Logger, method, resource string, err error, d time.Duration) {
	code := status.Code(err)
	level := slog.LevelInfo
	switch {
	case strings.HasPrefix(method, "/grpc.health.v1.Health/"),
		strings.HasPrefix(method, "/grpc.reflection."):
		level = slog.LevelDebug
	case serverFault(code):
		level = slog.LevelWarn
	}
	if !logger.Enabled(ctx, level) {
		return
	}
	attrs := []slog.Attr{slog.String("method", method)}
	if resource != "" {
		attrs = append(attrs, slog.String("resource", resource))
	}
	attrs = append(attrs,
		slog.String("code", code.String()),
		slog.Float64("duration_ms", float64(d.Microseconds())/1000),
	)
	if c, ok := identity.CallerFrom(ctx); ok {
		attrs = append(attrs, slog.String("caller", c))
	}
	// trace_id and span_id: tracelog.NewHandler's handler adds them from ctx.
	logger.LogAttrs(ctx, level, "gRPC call", attrs...)
}

// serverFault reports whether a code means the broker or GitHub failed,
// rather than the caller.
func serverFault(c codes.Code) bool {
	switch c {
	case codes.Unknown, codes.Internal, codes.Unavailable, codes.DataLoss, codes.DeadlineExceeded, codes.Unimplemented:
		return true
	}
	return false
}
