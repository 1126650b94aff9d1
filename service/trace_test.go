package service

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/genproto/googleapis/rpc/code"

	"github.com/secretbroker/secretbroker/upstream"
	"github.com/secretbroker/secretbroker/upstream/emulator"
)

func attrMap(kvs []attribute.KeyValue) map[attribute.Key]string {
	m := map[attribute.Key]string{}
	for _, kv := range kvs {
		m[kv.Key] = kv.Value.String()
	}
	return m
}

// Each key cache lookup is a span whose result says what the cache did:
// hit, miss, revalidated (304), rotation, refreshed, or shared when the
// call joined another's fetch.
func TestKeyCacheSpans(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeKeys(t)
		rec := tracetest.NewSpanRecorder()
		tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
		c := newKeyCache(f, time.Hour)
		c.tracer = tracerOf(tp)
		ctx := t.Context()
		get := func() {
			t.Helper()
			if _, err := c.get(ctx, testScope); err != nil {
				t.Fatal(err)
			}
		}
		get() // miss
		get() // hit
		time.Sleep(time.Hour)
		get() // revalidated: GitHub answers 304
		f.id.Store(2)
		time.Sleep(time.Hour)
		get()                                                        // rotation
		if _, err := c.revalidate(ctx, testScope, "1"); err != nil { // the cache has another key already
			t.Fatal(err)
		}

		// Two callers of a new scope at once: one fetches, the other joins.
		other := upstream.Scope{App: upstream.Actions, Org: "other"}
		f.gate = make(chan struct{})
		var wg sync.WaitGroup
		for range 2 {
			wg.Go(func() {
				if _, err := c.get(ctx, other); err != nil {
					t.Error(err)
				}
			})
		}
		synctest.Wait()
		f.gate <- struct{}{}
		wg.Wait()

		var got []string
		for _, s := range rec.Ended() {
			if s.Name() != "key cache lookup" {
				t.Errorf("unexpected span %q", s.Name())
				continue
			}
			a := attrMap(s.Attributes())
			got = append(got, a[attrKeyOp]+":"+a[attrKeyResult])
			if a[attrScope] == "" || a[attrKeyID] == "" {
				t.Errorf("span lacks the scope or the key id: %v", a)
			}
		}
		want := "get:miss get:hit get:revalidated get:rotation revalidate:hit"
		if g := strings.Join(got[:5], " "); g != want {
			t.Errorf("results %q, want %q", g, want)
		}
		if g := strings.Join(got[5:], " "); g != "get:miss get:shared" && g != "get:shared get:miss" {
			t.Errorf("concurrent lookups: %q, want one miss and one shared", g)
		}
	})
}

// A batch records its first maxItemEvents items as events on the call's
// span, then one summary with the counts; the sealing of each of the first
// maxItemEvents values written is a span of its own, the others' are left
// out and counted, and no event or span holds a value.
func TestBatchItemEventsAreCapped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		emu := emulator.New(emulator.Options{Token: testToken})
		emu.SeedDemo()
		pacing := upstream.DefaultPacing()
		pacing.WriteInterval, pacing.PointsPerMinute = 0, 0
		client, err := upstream.New(upstream.Config{
			BaseURL:    emulatorURL,
			Token:      upstream.Token(testToken),
			HTTPClient: &http.Client{Transport: newEmulatorTransport(emu)},
			Pacing:     &pacing,
		})
		if err != nil {
			t.Fatal(err)
		}
		rec := tracetest.NewSpanRecorder()
		tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
		srv := New(client, Options{TracerProvider: tp})

		const n = maxItemEvents + 50
		const scope = "repos/octo-org/hello-world/actions"
		req := batchOf(scope, "ITEM", n)
		req.Requests = append(req.Requests, plain("not a name "+plantedSecret, plantedSecret))
		ctx, call := tp.Tracer("test").Start(t.Context(), "BatchPutSecrets")
		resp, err := srv.BatchPutSecrets(ctx, req)
		call.End()
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetResults()) != n+1 {
			t.Fatalf("%d results, want %d", len(resp.GetResults()), n+1)
		}

		var batch sdktrace.ReadOnlySpan
		seals := 0
		var text strings.Builder
		for _, s := range rec.Ended() {
			fmt.Fprintf(&text, "%s %v\n", s.Name(), s.Attributes())
			for _, e := range s.Events() {
				fmt.Fprintf(&text, "%s %v\n", e.Name, e.Attributes)
			}
			switch s.Name() {
			case "BatchPutSecrets":
				batch = s
			case "seal":
				seals++
			}
		}
		if seals != maxItemEvents {
			t.Errorf("%d seal spans, want %d", seals, maxItemEvents)
		}
		items, summaries := 0, 0
		for _, e := range batch.Events() {
			a := attrMap(e.Attributes)
			switch e.Name {
			case "batch item":
				items++
				if a[attrItemCode] == "0" && !strings.HasPrefix(a[attrItemName], scope+"/secrets/ITEM") {
					t.Errorf("item event without its name: %v", a)
				}
			case "batch summary":
				summaries++
				if a["secretbroker.batch.items"] != fmt.Sprint(n+1) || a["secretbroker.batch.item_events"] != fmt.Sprint(maxItemEvents) ||
					a["secretbroker.batch.items_not_recorded"] != fmt.Sprint(n+1-maxItemEvents) ||
					a["secretbroker.batch.items_not_traced"] != fmt.Sprint(n-maxItemEvents) ||
					a["secretbroker.batch.code.OK"] != fmt.Sprint(n) || a["secretbroker.batch.code.InvalidArgument"] != "1" {
					t.Errorf("summary %v", a)
				}
			}
		}
		if items != maxItemEvents || summaries != 1 {
			t.Errorf("%d item events and %d summaries, want %d and 1", items, summaries, maxItemEvents)
		}
		if strings.Contains(text.String(), plantedSecret) || strings.Contains(text.String(), testToken) {
			t.Errorf("a span or event holds a planted value:\n%s", text.String())
		}
	})
}

// A batch item's event carries its name cut to maxEventName bytes on a
// character's boundary: an environment name may hold characters of several
// bytes, and a string that is not UTF-8 fails the OTLP export of the whole
// batch of spans it is in.
func TestBatchItemEventNameCutIsUTF8(t *testing.T) {
	for _, prefix := range []string{"repos/o/r/environments/", "repos/o/r/environments/x"} {
		name := prefix + strings.Repeat("é", maxEventName) + "/secrets/A"
		rec := tracetest.NewSpanRecorder()
		tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
		ctx, span := tp.Tracer("test").Start(t.Context(), "BatchPutSecrets")
		newItemEvents(ctx).item(0, name, code.Code_NOT_FOUND)
		span.End()
		got := attrMap(rec.Ended()[0].Events()[0].Attributes)[attrItemName]
		if !utf8.ValidString(got) || len(got) > maxEventName || len(got) < maxEventName-3 || !strings.HasPrefix(name, got) {
			t.Errorf("prefix %q: event name %q (%d bytes), want a valid cut of at most %d bytes", prefix, got, len(got), maxEventName)
		}
	}
}
