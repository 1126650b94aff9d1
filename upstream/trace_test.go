package upstream

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/secretbroker/secretbroker/upstream/pace"
)

func spanAttrs(s sdktrace.ReadOnlySpan) map[attribute.Key]string {
	m := map[attribute.Key]string{}
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value.String()
	}
	return m
}

func TestWaitReason(t *testing.T) {
	for r, want := range map[pace.Reason]string{
		pace.ReasonSpacing: "spacing", pace.ReasonBudget: "points", pace.ReasonPrimary: "primary",
		pace.ReasonPause: "secondary_pause", pace.ReasonQueue: "in_flight", pace.ReasonBackoff: "backoff", pace.ReasonContent: "content", pace.ReasonCPU: "cpu_time", 0: "none",
	} {
		if got := WaitReason(r); got != want {
			t.Errorf("WaitReason(%v) = %q, want %q", r, got, want)
		}
	}
}

// Each attempt's client span (otelhttp's, with the client's transport
// inside it) carries http.request.resend_count, GitHub's request id and
// the rate limit it reported; the pacer's wait is a span with its reason
// and duration; the request carries the W3C traceparent of the attempt.
func TestAttemptAndPacerSpans(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reset := time.Now().Add(time.Hour).Unix()
		var traceparents []string
		s := newMemServer(func(n int, _ arrival, w *memWriter, r *http.Request) {
			traceparents = append(traceparents, r.Header.Get("Traceparent"))
			w.Header().Set("X-GitHub-Request-Id", "REQ-"+string(rune('A'+n)))
			w.Header().Set("X-Ratelimit-Remaining", "4990")
			w.Header().Set("X-Ratelimit-Reset", itoa(reset))
			w.Header().Set("X-Ratelimit-Resource", "core")
			if n == 0 {
				w.WriteHeader(http.StatusBadGateway)
				return
			}
			defaultAnswer(w, r)
		})
		rec := tracetest.NewSpanRecorder()
		tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
		p := retryPacing()
		c, err := New(Config{
			BaseURL: "https://github.example",
			Token:   testToken,
			HTTPClient: &http.Client{Transport: otelhttp.NewTransport(attemptTracer{next: s},
				otelhttp.WithTracerProvider(tp), otelhttp.WithSpanNameFormatter(spanName),
				otelhttp.WithPropagators(propagation.TraceContext{}))},
			Pacing:         &p,
			TracerProvider: tp,
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, call := tp.Tracer("test").Start(t.Context(), "call")
		// A 502 then a success; then a second write, which waits for the
		// write slot (writes 1 s apart).
		if _, err := c.PutSecret(ctx, repActions, "A", testPut); err != nil {
			t.Fatal(err)
		}
		if _, err := c.PutSecret(ctx, repActions, "B", testPut); err != nil {
			t.Fatal(err)
		}
		call.End()

		var attempts, waits []sdktrace.ReadOnlySpan
		for _, sp := range rec.Ended() {
			switch {
			case sp.Name() == "github pacer wait":
				waits = append(waits, sp)
			case strings.HasPrefix(sp.Name(), "github PUT "):
				attempts = append(attempts, sp)
			}
			if sp.SpanContext().TraceID() != call.SpanContext().TraceID() {
				t.Errorf("span %q is not in the caller's trace", sp.Name())
			}
		}
		if len(attempts) != 3 || len(waits) != 3 {
			t.Fatalf("%d attempt spans and %d pacer wait spans, want 3 and 3", len(attempts), len(waits))
		}
		for i, want := range []map[attribute.Key]string{
			{attrResendCount: "0", attrGitHubRequestID: "REQ-A", "http.response.status_code": "502"},
			{attrResendCount: "1", attrGitHubRequestID: "REQ-B", "http.response.status_code": "204"},
			{attrResendCount: "0", attrGitHubRequestID: "REQ-C", "http.response.status_code": "204"},
		} {
			a := spanAttrs(attempts[i])
			want[attrRateLimitRemaining] = "4990"
			want[attrRateLimitReset] = itoa(reset)
			want[attrRateLimitResource] = "core"
			for k, v := range want {
				if a[k] != v {
					t.Errorf("attempt %d: %s = %q, want %q (%v)", i, k, a[k], v, a)
				}
			}
			if attempts[i].SpanKind() != trace.SpanKindClient {
				t.Errorf("attempt %d: kind %v, want client", i, attempts[i].SpanKind())
			}
			// GitHub received this attempt's span as the parent.
			if want := attempts[i].SpanContext().SpanID().String(); !strings.Contains(traceparents[i], want) {
				t.Errorf("attempt %d sent traceparent %q, want its span %s", i, traceparents[i], want)
			}
		}
		// The first try went at once; the third request waited for the
		// write spacing.
		if a := spanAttrs(waits[0]); a[attrPacerReason] != "none" || a[attrPacerWait] != "0" {
			t.Errorf("first wait: %v, want none and 0", a)
		}
		if a := spanAttrs(waits[2]); a[attrPacerReason] != "spacing" || a[attrPacerWait] == "0" || a[attrRoute] == "" {
			t.Errorf("third wait: %v, want spacing and a positive wait", a)
		}
		for _, sp := range append(attempts, waits...) {
			for _, kv := range sp.Attributes() {
				if v := kv.Value.String(); strings.Contains(v, testToken) || strings.Contains(v, testPut.EncryptedValue) {
					t.Errorf("span %q holds a planted value in %s", sp.Name(), kv.Key)
				}
			}
		}
	})
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
