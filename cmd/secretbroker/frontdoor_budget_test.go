package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/upstream/metricstest"
)

// TestOneJSONBatchLeavesRoomForOtherWrites: a JSON batch within the
// documented limits (1,000 values of 12 KB, 12 MB, under the 16 MiB
// request limit) holds, while it runs (about 17 minutes at the default
// write spacing), its request once, not three times its body: another
// small JSON write of the same caller (the same address, without
// authentication) is served, not refused for bytes in progress.
func TestOneJSONBatchLeavesRoomForOtherWrites(t *testing.T) {
	gh := newFakeGitHub(t) // holds the batch's key fetch until the broker stops
	b := startBroker(t, prodConfig(t, gh.URL, time.Second))

	value := strings.Repeat("x", 12000)
	items := make([]string, 1000)
	for i := range items {
		items[i] = fmt.Sprintf(`{"name":"orgs/acme/actions/secrets/BIG_%d","value":%q,"visibility":"all"}`, i, value)
	}
	big := `{"requests":[` + strings.Join(items, ",") + `]}`
	batch := make(chan gatewayAnswer, 1)
	go func() { batch <- b.try(http.MethodPost, "/v1/secrets:batchPut", big) }()
	select {
	case <-gh.arrived: // the batch is read, decoded and waiting on GitHub
	case a := <-batch:
		t.Fatalf("the batch ended before it reached GitHub: %d %v %v", a.code, a.body, a.err)
	case <-time.After(20 * time.Second):
		t.Fatal("the batch never reached GitHub")
	}

	// Answered by the service without GitHub: 400 once admitted.
	a := b.try(http.MethodPut, "/v1/orgs/acme/actions/secrets/SMALL", `{"value":"","visibility":"all"}`)
	if a.code != http.StatusBadRequest {
		t.Errorf("a 31-byte PUT while a 12 MB batch runs: %d %v %v; want it admitted (400 from the service)", a.code, a.body, a.err)
	}
	fams, _ := b.scrape(t)
	labels := map[string]string{"listener": "http", "reason": "bytes"}
	if v, ok := metricValue(fams, "secretbroker_calls_refused_total", labels); ok && v != 0 {
		t.Errorf("secretbroker_calls_refused_total%v = %v, want none", labels, v)
	}
}

// TestByteBudgetShares: a caller may hold at most its share of the bound
// on request bytes in progress (half, at least the largest request), so
// that the others always find room; all callers together at most the
// bound. Refusals are immediate and say which limit was hit; what is
// given back is available again.
func TestByteBudgetShares(t *testing.T) {
	for _, tt := range []struct{ budget, share int64 }{
		{32 << 20, 16 << 20},
		{100 << 20, 50 << 20},
		{24 << 20, maxRequestBytes},        // half is less than the largest request
		{maxRequestBytes, maxRequestBytes}, // room for one request only
	} {
		if got := newByteBudget(tt.budget).share; got != tt.share {
			t.Errorf("newByteBudget(%d).share = %d, want %d", tt.budget, got, tt.share)
		}
	}

	const mib = 1 << 20
	b := newByteBudget(32 * mib)
	held := map[string][]*bodyReservation{}
	for i, step := range []struct {
		caller string
		n      int64
		// refused: "" admitted, else a word of the refusal's message.
		refused string
	}{
		{"a", 10 * mib, ""},
		{"a", 7 * mib, "share"}, // 17 MiB: over a's share
		{"a", 6 * mib, ""},      // 16 MiB: a's whole share
		{"a", 1, "share"},
		{"b", 2 * mib, ""}, // b finds the room a cannot take
		{"b", 14 * mib, ""},
		{"c", 1, "broker"}, // the bound is spent
	} {
		res, err := b.reserve(step.caller, step.n)
		switch {
		case step.refused == "" && err != nil:
			t.Fatalf("step %d: %s takes %d: %v", i, step.caller, step.n, err)
		case step.refused != "" && (status.Code(err) != codes.ResourceExhausted || !strings.Contains(status.Convert(err).Message(), step.refused)):
			t.Fatalf("step %d: %s takes %d: %v, want RESOURCE_EXHAUSTED naming the %s", i, step.caller, step.n, err, step.refused)
		case err == nil:
			held[step.caller] = append(held[step.caller], res)
		}
	}
	held["a"][0].shrink(mib) // a keeps 1 MiB of its first 10
	if total, a := b.inUse("a"); total != 23*mib || a != 7*mib {
		t.Errorf("after a's shrink: %d held, %d by a; want 23 MiB, 7 MiB", total, a)
	}
	if _, err := b.reserve("c", 9*mib); err != nil {
		t.Errorf("c once a gave some back: %v", err)
	}
	for _, rs := range held {
		for _, r := range rs {
			r.release()
			r.release() // more calls do nothing
		}
	}
	if total, a := b.inUse("a"); total != 9*mib || a != 0 || len(b.held) != 1 {
		t.Errorf("after releases: %d held, %d by a, %d callers; want c's 9 MiB only", total, a, len(b.held))
	}
}

// TestJSONBodyShareLeavesOthersRoom: through the front door's HTTP side,
// one caller's body being read (chunked: it costs the most a body may)
// holds that caller's share of the budget, not all of it: the caller's
// next body is refused at once (429, Retry-After 1, counted as bytes),
// another caller's bodies are served.
func TestJSONBodyShareLeavesOthersRoom(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	rc, err := newRefusalCounter(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
	if err != nil {
		t.Fatal(err)
	}
	door := &frontDoor{keys: callerKeys{gatewaySecret: "share-gateway-secret"}, refusals: rc, log: slog.New(slog.DiscardHandler)}
	gw, err := newGateway(t.Context(), serveUnimplemented(t), door.keys)
	if err != nil {
		t.Fatal(err)
	}
	h := door.admitHTTP(gw, newCallLimits(0, 0, 0, 0), 32<<20)
	serve := func(from string, length int64, body *watchedBody) *httptest.ResponseRecorder {
		r := httptest.NewRequestWithContext(context.Background(), http.MethodPut, "/v1/repos/octo-org/hello-world/actions/secrets/X", nil)
		r.RemoteAddr = from + ":1234" // without authentication, the caller is its address
		r.Header.Set("Content-Type", "application/json")
		r.Body, r.ContentLength = body, length
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}

	holder := &watchedBody{block: make(chan byte)}
	held := make(chan *httptest.ResponseRecorder)
	go func() { held <- serve("192.0.2.1", -1, holder) }()
	holder.block <- '{' // read: the budget was taken before
	for _, tt := range []struct {
		from   string
		length int64
		code   int // 501: the backend's, once the body was read
	}{
		{"192.0.2.1", 2, http.StatusTooManyRequests},
		{"192.0.2.2", 2, http.StatusNotImplemented},
		{"192.0.2.2", -1, http.StatusNotImplemented}, // the other half
	} {
		body := &watchedBody{}
		w := serve(tt.from, tt.length, body)
		if w.Code != tt.code {
			t.Errorf("%s, a body of %d, while 192.0.2.1's body is read: %d %s, want %d", tt.from, tt.length, w.Code, w.Body, tt.code)
		}
		if w.Code == http.StatusTooManyRequests {
			if w.Header().Get("Retry-After") != "1" || !strings.Contains(w.Body.String(), "share") {
				t.Errorf("%s refused: Retry-After %q %s, want 1 and the caller's share named", tt.from, w.Header().Get("Retry-After"), w.Body)
			}
			if n := body.read.Load(); n != 0 {
				t.Errorf("%s refused after %d bytes of its body read, want none", tt.from, n)
			}
		}
	}
	close(holder.block) // the body ends short: 400, and the budget is back
	if w := <-held; w.Code != http.StatusBadRequest {
		t.Errorf("the holding request = %d %s, want 400", w.Code, w.Body)
	}
	if w := serve("192.0.2.1", 2, &watchedBody{}); w.Code != http.StatusNotImplemented {
		t.Errorf("192.0.2.1 once its body is done: %d %s, want 501", w.Code, w.Body)
	}
	got := metricstest.Read(t, reader)
	if n := got["secretbroker_calls_refused_total{listener=http,reason=bytes}"]; n != 1 {
		t.Errorf("refusals for bytes = %v, want 1: %v", n, got)
	}
}

// TestByteBudgetPerListener: README says --max-inflight-bytes bounds each
// listener's requests. The gRPC listener's budget bounds the gRPC calls
// only: a JSON call (the gateway's, in process) is paid on the HTTP
// listener's and is admitted with the gRPC one spent, while a gRPC call
// is then refused.
func TestByteBudgetPerListener(t *testing.T) {
	door := &frontDoor{
		keys:      callerKeys{gatewaySecret: "gw-secret"},
		limits:    newCallLimits(0, 0, 0, 0),
		grpcBytes: newByteBudget(maxRequestBytes),
		log:       slog.New(slog.DiscardHandler),
	}
	if _, err := door.grpcBytes.reserve("another", maxRequestBytes); err != nil {
		t.Fatal(err)
	}
	desc := door.wrap(&secretbrokerv1.SecretService_ServiceDesc)
	var h grpc.MethodDesc
	for _, m := range desc.Methods {
		if m.MethodName == "GetSecret" {
			h = m
		}
	}
	reached := func(context.Context, any, *grpc.UnaryServerInfo, grpc.UnaryHandler) (any, error) {
		return &secretbrokerv1.Secret{}, nil
	}
	for _, tt := range []struct {
		name string
		md   metadata.MD
		want codes.Code
	}{
		{"gateway", metadata.MD{mdGateway: {"gw-secret"}, mdCaller: {"127.0.0.1"}, mdX509: {""}}, codes.OK},
		{"grpc", metadata.MD{}, codes.ResourceExhausted},
	} {
		ctx := metadata.NewIncomingContext(context.Background(), tt.md)
		dec := func(v any) error {
			v.(*secretbrokerv1.GetSecretRequest).Name = "repos/o/r/actions/secrets/X"
			return nil
		}
		if _, err := h.Handler(nil, ctx, dec, reached); status.Code(err) != tt.want {
			t.Errorf("%s call with the gRPC listener's bytes spent: %v, want %v", tt.name, err, tt.want)
		}
	}
}

// TestReadBodyLetsGoOnceDrained: a body the gateway read whole is parsed
// in place while unread, and lets go of its bytes once read to its end
// (the gateway drains it after decoding), so that a long call does not
// keep it.
func TestReadBodyLetsGoOnceDrained(t *testing.T) {
	b := newReadBody([]byte(`{"value":"v"}`))
	if data, whole := b.unread(); !whole || string(data) != `{"value":"v"}` {
		t.Fatalf("unread = %q %v, want the body whole", data, whole)
	}
	got, err := io.ReadAll(b)
	if err != nil || string(got) != `{"value":"v"}` {
		t.Fatalf("read %q %v", got, err)
	}
	if b.data != nil || b.r.Size() != 0 {
		t.Errorf("drained: %d bytes kept, the reader over %d; want none", len(b.data), b.r.Size())
	}
	if n, err := b.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("read after the end: %d %v, want io.EOF", n, err)
	}
}
