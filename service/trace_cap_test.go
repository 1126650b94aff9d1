package service

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/service/audit"
	"github.com/secretbroker/secretbroker/upstream"
	"github.com/secretbroker/secretbroker/upstream/emulator"
)

// sentRequest is one request as it left the broker's HTTP client.
type sentRequest struct {
	method, name, traceparent string
}

// headerTap records the method, the last path segment and the traceparent
// of each request before passing it on.
type headerTap struct {
	next http.RoundTripper
	mu   sync.Mutex
	sent []sentRequest
}

func (h *headerTap) RoundTrip(r *http.Request) (*http.Response, error) {
	h.mu.Lock()
	h.sent = append(h.sent, sentRequest{r.Method, path.Base(r.URL.Path), r.Header.Get("traceparent")})
	h.mu.Unlock()
	return h.next.RoundTrip(r)
}

// itemNumber returns k of a name ITEMk, or -1.
func itemNumber(name string) int {
	k, err := strconv.Atoi(strings.TrimPrefix(name, "ITEM"))
	if !strings.HasPrefix(name, "ITEM") || err != nil {
		return -1
	}
	return k
}

// A batch of 250 writes, then one of 250 deletes, each make a bounded
// trace under the broker's sampler (ParentBased(AlwaysSample)): only the
// first maxItemEvents items have seal, pacer wait and request attempt
// spans, the summary event counts the 150 others, and those still carry
// the call's trace id to GitHub (traceparent, not sampled) and to the
// audit trail.
func TestBatchItemSpansAreCapped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		emu := emulator.New(emulator.Options{Token: testToken})
		emu.SeedDemo()
		rec := tracetest.NewSpanRecorder()
		tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())),
			sdktrace.WithSpanProcessor(rec))
		tap := &headerTap{next: newEmulatorTransport(emu)}
		pacing := upstream.DefaultPacing()
		pacing.WriteInterval, pacing.PointsPerMinute = 0, 0
		client, err := upstream.New(upstream.Config{
			BaseURL: emulatorURL,
			Token:   upstream.Token(testToken),
			HTTPClient: &http.Client{Transport: otelhttp.NewTransport(tap,
				otelhttp.WithTracerProvider(tp), otelhttp.WithPropagators(propagation.TraceContext{}))},
			Pacing:         &pacing,
			TracerProvider: tp,
		})
		if err != nil {
			t.Fatal(err)
		}
		var trail syncBuffer
		srv := New(client, Options{TracerProvider: tp, Audit: audit.NewWriter(&trail, nil)})

		const n = 250
		const scope = "repos/octo-org/hello-world/actions"
		put := batchOf(scope, "ITEM", n)
		del := &secretbrokerv1.BatchDeleteSecretsRequest{}
		for _, r := range put.GetRequests() {
			del.Names = append(del.Names, r.GetName())
		}
		// A batch starts its items in the order sent; a sync in the order
		// of the names, sorted (ITEM0, ITEM1, ITEM10, ITEM100, ...).
		inOrder := func(k int) bool { return k < maxItemEvents }
		sorted := make([]string, n)
		for k := range n {
			sorted[k] = fmt.Sprintf("ITEM%d", k)
		}
		slices.Sort(sorted)
		inNameOrder := func(k int) bool { return slices.Index(sorted, fmt.Sprintf("ITEM%d", k)) < maxItemEvents }
		desired := map[string]string{}
		for k := range n {
			desired[fmt.Sprintf("ITEM%d", k)] = fmt.Sprintf("synced-%d", k)
		}
		phases := []struct {
			rpc, method string
			seals       int              // seal spans of the traced items
			lookups     int              // key cache lookup spans of the traced items
			traced      func(k int) bool // whether item ITEMk has spans of its own
			records     int              // audit records of the call
			call        func(context.Context) ([]int32, error)
		}{
			{"BatchPutSecrets", http.MethodPut, maxItemEvents, 0, inOrder, 2 * n, func(ctx context.Context) ([]int32, error) {
				resp, err := srv.BatchPutSecrets(ctx, put)
				var codes []int32
				for _, r := range resp.GetResults() {
					codes = append(codes, int32(r.GetCode()))
				}
				return codes, err
			}},
			{"BatchDeleteSecrets", http.MethodDelete, 0, 0, inOrder, 2 * n, func(ctx context.Context) ([]int32, error) {
				resp, err := srv.BatchDeleteSecrets(ctx, del)
				var codes []int32
				for _, r := range resp.GetResults() {
					codes = append(codes, int32(r.GetCode()))
				}
				return codes, err
			}},
			// The names deleted above, written again by a sync: each item
			// looks its scope's key up (a batch looks it up once), and the
			// call has its own intent and outcome records besides the
			// items'.
			{"SyncSecrets", http.MethodPut, maxItemEvents, maxItemEvents, inNameOrder, 2*n + 2, func(ctx context.Context) ([]int32, error) {
				resp, err := srv.SyncSecrets(ctx, &secretbrokerv1.SyncSecretsRequest{Parent: scope, Secrets: desired})
				var codes []int32
				for _, r := range resp.GetResults() {
					codes = append(codes, int32(r.GetCode()))
				}
				return codes, err
			}},
		}
		for _, ph := range phases {
			tap.mu.Lock()
			tap.sent = nil
			tap.mu.Unlock()
			trail.mu.Lock()
			trail.buf.Reset()
			trail.mu.Unlock()
			ctx, call := tp.Tracer("test").Start(t.Context(), ph.rpc)
			codes, err := ph.call(ctx)
			call.End()
			if err != nil {
				t.Fatalf("%s: %v", ph.rpc, err)
			}
			if len(codes) != n {
				t.Fatalf("%s: %d results, want %d", ph.rpc, len(codes), n)
			}
			for i, c := range codes {
				if c != 0 {
					t.Fatalf("%s: item %d has code %d", ph.rpc, i, c)
				}
			}
			traceID := call.SpanContext().TraceID()

			// The call's trace: bounded, with each kind of item span for
			// the first maxItemEvents items only.
			var spans, seals, waits, attempts int
			var batch sdktrace.ReadOnlySpan
			for _, s := range rec.Ended() {
				if s.SpanContext().TraceID() != traceID {
					continue
				}
				spans++
				a := attrMap(s.Attributes())
				switch {
				case s.Name() == ph.rpc:
					batch = s
				case s.Name() == "seal":
					seals++
				case s.Name() == "github pacer wait" && a["http.request.method"] == ph.method:
					waits++
				case s.SpanKind() == trace.SpanKindClient && a["http.request.method"] == ph.method:
					attempts++
				}
			}
			if seals != ph.seals || waits != maxItemEvents || attempts != maxItemEvents {
				t.Errorf("%s: %d seal, %d pacer wait and %d %s attempt spans, want %d, %d and %d",
					ph.rpc, seals, waits, attempts, ph.method, ph.seals, maxItemEvents, maxItemEvents)
			}
			// Besides the items' spans: the call's, and a few per scope
			// (key lookup, listing, read-back).
			if bound := 1 + ph.seals + ph.lookups + 2*maxItemEvents + 20; spans > bound {
				t.Errorf("%s: a trace of %d spans, want at most %d", ph.rpc, spans, bound)
			}
			if batch == nil {
				t.Fatalf("%s: no span of the call", ph.rpc)
			}
			summaries := 0
			for _, e := range batch.Events() {
				if e.Name != "batch summary" {
					continue
				}
				summaries++
				a := attrMap(e.Attributes)
				if a["secretbroker.batch.items"] != fmt.Sprint(n) ||
					a["secretbroker.batch.items_not_traced"] != fmt.Sprint(n-maxItemEvents) {
					t.Errorf("%s: summary %v, want %d items and %d not traced", ph.rpc, a, n, n-maxItemEvents)
				}
			}
			if summaries != 1 {
				t.Errorf("%s: %d summary events, want 1", ph.rpc, summaries)
			}

			// Every item's request carries the call's trace, sampled for
			// the first maxItemEvents items only.
			tap.mu.Lock()
			sent := tap.sent
			tap.mu.Unlock()
			items := 0
			for _, r := range sent {
				k := itemNumber(r.name)
				if r.method != ph.method || k < 0 {
					continue
				}
				items++
				flags := "01"
				if !ph.traced(k) {
					flags = "00"
				}
				parts := strings.Split(r.traceparent, "-")
				if len(parts) != 4 || parts[1] != traceID.String() || parts[3] != flags {
					t.Errorf("%s: item %d sent traceparent %q, want trace %s with flags %s",
						ph.rpc, k, r.traceparent, traceID, flags)
				}
			}
			if items != n {
				t.Errorf("%s: %d item requests, want %d", ph.rpc, items, n)
			}

			// Every audit record of the call names its trace.
			records := 0
			for _, line := range strings.Split(strings.TrimSpace(trail.String()), "\n") {
				var r audit.Record
				if err := json.Unmarshal([]byte(line), &r); err != nil {
					t.Fatalf("not a JSON line: %q", line)
				}
				records++
				if r.TraceID != traceID.String() {
					t.Errorf("%s: audit record of %s (item %v) has trace id %q, want %s",
						ph.rpc, r.Resource, r.Item, r.TraceID, traceID)
				}
			}
			if records != ph.records {
				t.Errorf("%s: %d audit records, want %d", ph.rpc, records, ph.records)
			}
		}
	})
}
