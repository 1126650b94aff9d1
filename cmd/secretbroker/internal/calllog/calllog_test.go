package calllog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"unicode/utf8"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/secretbroker/secretbroker/cmd/secretbroker/internal/tracelog"
	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/service/identity"
)

const interceptorSecret = "plaintext-in-a-panic-9f8e7d"

func TestRecoverUnary(t *testing.T) {
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	req := &secretbrokerv1.PutSecretRequest{
		Name:    "orgs/acme/actions/secrets/X",
		Payload: &secretbrokerv1.PutSecretRequest_Value{Value: interceptorSecret},
	}
	info := &grpc.UnaryServerInfo{FullMethod: "/secretbroker.v1.SecretService/PutSecret"}

	tests := []struct {
		name      string
		panicWith func(req any)
		wantLog   string
	}{
		{"string built from the request", func(req any) {
			panic("bad value " + req.(*secretbrokerv1.PutSecretRequest).GetValue())
		}, `"panic":"string"`},
		{"error built from the request", func(req any) {
			panic(errors.New(req.(*secretbrokerv1.PutSecretRequest).GetValue()))
		}, `"panic":"*errors.errorString"`},
		{"runtime error", func(req any) {
			v := req.(*secretbrokerv1.PutSecretRequest).GetValue()
			_ = v[len(v)] // index out of range
		}, "index out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs.Reset()
			resp, err := RecoverUnary(logger)(context.Background(), req, info, func(_ context.Context, req any) (any, error) {
				tt.panicWith(req)
				return "unreachable", nil
			})
			if resp != nil {
				t.Errorf("resp = %v, want nil", resp)
			}
			if st, _ := status.FromError(err); st.Code() != codes.Internal || st.Message() != "internal error" {
				t.Errorf("err = %v, want Internal \"internal error\"", err)
			}
			out := logs.String()
			if strings.Contains(out, interceptorSecret) || strings.Contains(err.Error(), interceptorSecret) {
				t.Errorf("the request's value leaked: log %s err %v", out, err)
			}
			for _, w := range []string{"panic in gRPC handler", "PutSecret", tt.wantLog, `"stack"`} {
				if !strings.Contains(out, w) {
					t.Errorf("log lacks %q: %s", w, out)
				}
			}
		})
	}
}

type fakeStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s fakeStream) Context() context.Context { return s.ctx }

func TestRecoverStream(t *testing.T) {
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	err := RecoverStream(logger)(nil, fakeStream{ctx: context.Background()}, &grpc.StreamServerInfo{FullMethod: "/x.Y/Z"},
		func(any, grpc.ServerStream) error { panic(interceptorSecret) })
	out := logs.String()
	if status.Code(err) != codes.Internal || strings.Contains(out, interceptorSecret) || strings.Contains(err.Error(), interceptorSecret) {
		t.Errorf("err %v, log %s", err, out)
	}
	for _, w := range []string{`"method":"/x.Y/Z"`, `"panic":"string"`, `"stack"`} {
		if !strings.Contains(out, w) {
			t.Errorf("log lacks %s: %s", w, out)
		}
	}
}

func TestLogUnary(t *testing.T) {
	var logs bytes.Buffer
	logger := slog.New(tracelog.NewHandler(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo})))
	const resource = "repos/octo-org/hello-world/actions/secrets/DB_PASSWORD"
	req := &secretbrokerv1.PutSecretRequest{Name: resource, Payload: &secretbrokerv1.PutSecretRequest_Value{Value: interceptorSecret}}
	resp := &secretbrokerv1.PutSecretResponse{Name: interceptorSecret}
	traceID := trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36}
	ctx := trace.ContextWithSpanContext(identity.WithCaller(context.Background(), "token:deployer"),
		trace.NewSpanContext(trace.SpanContextConfig{TraceID: traceID, SpanID: trace.SpanID{1}}))

	tests := []struct {
		method string
		resp   any
		err    error
	}{
		{"/secretbroker.v1.SecretService/PutSecret", resp, nil},
		// The status message may carry what the caller sent: it is not logged.
		{"/secretbroker.v1.SecretService/GetSecret", nil, status.Error(codes.Unavailable, "GitHub is unavailable "+interceptorSecret)},
		{"/secretbroker.v1.SecretService/DeleteSecret", nil, status.Error(codes.NotFound, "no secret "+interceptorSecret)},
		{"/grpc.health.v1.Health/Check", nil, nil},
	}
	for _, tt := range tests {
		_, _ = LogUnary(logger)(ctx, req, &grpc.UnaryServerInfo{FullMethod: tt.method},
			func(context.Context, any) (any, error) { return tt.resp, tt.err })
	}

	out := logs.String()
	if strings.Contains(out, interceptorSecret) {
		t.Errorf("log holds a message's content: %s", out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 {
		t.Fatalf("want 3 lines (health checks at debug level), got %d: %s", len(lines), out)
	}
	for i, w := range [][]string{
		{`"level":"INFO"`, `"method":"/secretbroker.v1.SecretService/PutSecret"`, `"code":"OK"`},
		{`"level":"WARN"`, `"method":"/secretbroker.v1.SecretService/GetSecret"`, `"code":"Unavailable"`},
		{`"level":"INFO"`, `"method":"/secretbroker.v1.SecretService/DeleteSecret"`, `"code":"NotFound"`},
	} {
		w = append(w, `"msg":"gRPC call"`, `"duration_ms"`, `"caller":"token:deployer"`, `"resource":"`+resource+`"`,
			`"trace_id":"`+traceID.String()+`"`, `"span_id":"0100000000000000"`)
		for _, s := range w {
			if !strings.Contains(lines[i], s) {
				t.Errorf("line %d lacks %s: %s", i, s, lines[i])
			}
		}
		// Only the fields above: none of what the middleware would add.
		var fields map[string]any
		if err := json.Unmarshal([]byte(lines[i]), &fields); err != nil {
			t.Fatal(err)
		}
		if len(fields) != 10 {
			t.Errorf("line %d has %d fields, want 10 (time, level, msg, method, resource, code, duration_ms, caller, trace_id, span_id): %s", i, len(fields), lines[i])
		}
	}
}

// recvStream hands the planted value to every RecvMsg and accepts every
// SendMsg.
type recvStream struct{ fakeStream }

func (recvStream) RecvMsg(m any) error {
	m.(*secretbrokerv1.PutSecretRequest).Payload = &secretbrokerv1.PutSecretRequest_Value{Value: interceptorSecret}
	return nil
}
func (recvStream) SendMsg(any) error { return nil }

func TestLogStream(t *testing.T) {
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	tests := []struct {
		method string
		err    error
		want   []string
	}{
		{"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", nil, []string{`"level":"DEBUG"`, `"code":"OK"`}},
		{"/x.Y/Z", status.Error(codes.Internal, interceptorSecret), []string{`"level":"WARN"`, `"code":"Internal"`}},
	}
	for _, tt := range tests {
		logs.Reset()
		err := LogStream(logger)(nil, recvStream{fakeStream{ctx: context.Background()}}, &grpc.StreamServerInfo{FullMethod: tt.method},
			func(_ any, ss grpc.ServerStream) error {
				var req secretbrokerv1.PutSecretRequest
				_ = ss.RecvMsg(&req)
				_ = ss.SendMsg(&secretbrokerv1.PutSecretResponse{Name: req.GetValue()})
				return tt.err
			})
		out := logs.String()
		if err != tt.err || strings.Count(out, "\n") != 1 || strings.Contains(out, interceptorSecret) {
			t.Errorf("%s: err %v, want one line without the planted value: %s", tt.method, err, out)
		}
		for _, w := range append(tt.want, `"method":"`+tt.method+`"`, `"msg":"gRPC call"`) {
			if !strings.Contains(out, w) {
				t.Errorf("%s: log lacks %s: %s", tt.method, w, out)
			}
		}
	}
}

// TestResourceOfCutsOnACharacter: a resource name longer than the log's
// limit is cut to at most maxLoggedResource bytes of valid UTF-8.
func TestResourceOfCutsOnACharacter(t *testing.T) {
	env := strings.Repeat("é", 300) // 2 bytes each
	tests := []struct {
		name, in string
		want     int // bytes kept
	}{
		{"short", "repos/o/r/actions/secrets/X", len("repos/o/r/actions/secrets/X")},
		{"ASCII, cut", "repos/o/r/environments/" + strings.Repeat("e", 600), maxLoggedResource},
		{"a character across the limit", "repos/o/r/environments/" + env + "/secrets/X", maxLoggedResource - 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := resourceOf(&secretbrokerv1.GetSecretRequest{Name: tt.in})
			if !utf8.ValidString(got) || len(got) != tt.want || !strings.HasPrefix(tt.in, got) {
				t.Errorf("resourceOf = %d bytes (valid %t), want the first %d bytes of the name", len(got), utf8.ValidString(got), tt.want)
			}
		})
	}
}
