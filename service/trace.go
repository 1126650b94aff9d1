package service

import (
	"context"
	"sync"
	"unicode/utf8"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc/codes"

	"github.com/secretbroker/secretbroker/upstream"
)

// The service's own spans, where a call's time goes besides GitHub: the
// key cache lookup and the sealing of a value; and a batch's items as
// events on the call's span. A batch's trace is bounded: its first
// maxItemEvents items are events and have child spans (seal, pacer wait,
// request attempts), the others are counted in one summary event.
// Attributes hold resource names (a scope's path, a secret's resource
// name), key ids, results and counts: never a value, sealed or not, nor a
// token.

// tracerName is the instrumentation scope of the service's spans.
const tracerName = "github.com/secretbroker/secretbroker/service"

// Span attributes.
const (
	attrKeyResult = "secretbroker.key_cache.result"
	attrKeyOp     = "secretbroker.key_cache.op"
	attrScope     = "secretbroker.scope"
	attrKeyID     = "secretbroker.key_id"
	attrItemIndex = "secretbroker.batch.index"
	attrItemName  = "secretbroker.batch.name"
	attrItemCode  = "rpc.grpc.status_code"
)

// maxItemEvents is how many of a batch's items are recorded as events on
// its span, and how many of the items that do work upstream have spans of
// their own (itemContext); the others are counted in one summary event,
// so that a batch of a thousand items does not make an unbounded trace.
const maxItemEvents = 100

// maxEventName bounds the resource name an item event carries.
const maxEventName = 256

// tracerOf returns the service's tracer on tp, OpenTelemetry's global
// provider when tp is nil.
func tracerOf(tp trace.TracerProvider) trace.Tracer {
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	return tp.Tracer(tracerName)
}

// lookupKey carries a key cache lookup's result to its span.
type lookupKey struct{}

// keySpanResult is the span attribute of a key cache result: the metric's
// results, with revalidated_304 as revalidated.
func keySpanResult(result string) string {
	if result == keyRevalidated {
		return "revalidated"
	}
	return result
}

// lookedUp records a key cache result: the metric, and the attribute of
// the lookup span of the call that found it (a call that joined another's
// lookup finds none: "shared").
func (c *keyCache) lookedUp(ctx context.Context, result string) {
	c.metrics.keyLookup(ctx, result)
	if r, ok := ctx.Value(lookupKey{}).(*string); ok && *r == "" {
		*r = keySpanResult(result)
	}
}

// traced runs fn, a key cache lookup, in a "key cache lookup" span with
// the result (hit, miss, revalidated, refreshed, rotation, or shared when
// the call waited for another's lookup), the scope and the key id.
func (c *keyCache) traced(ctx context.Context, s upstream.Scope, op string,
	fn func(context.Context, upstream.Scope) (sealingKey, error),
) (sealingKey, error) {
	if c.tracer == nil {
		return fn(ctx, s)
	}
	ctx, span := c.tracer.Start(ctx, "key cache lookup")
	defer span.End()
	recording := span.IsRecording()
	if recording {
		// Built only for a span that keeps them: without an exporter no
		// span is recorded, and the scope's path is a string per call.
		span.SetAttributes(attribute.String(attrKeyOp, op), attribute.String(attrScope, s.Path()))
	}
	var result string
	k, err := fn(context.WithValue(ctx, lookupKey{}, &result), s)
	if err != nil {
		span.SetStatus(otelcodes.Error, "lookup failed")
		return k, err
	}
	if result == "" {
		result = "shared"
	}
	if recording {
		span.SetAttributes(attribute.String(attrKeyResult, result), attribute.String(attrKeyID, string(k.id)))
	}
	return k, nil
}

// sealSpan starts the span of sealing one value with key k. It holds the
// key id and the size of the value only.
func (s *Server) sealSpan(ctx context.Context, k sealingKey, size int) trace.Span {
	_, span := s.tracer.Start(ctx, "seal", trace.WithAttributes(
		attribute.String(attrKeyID, string(k.id)),
		attribute.Int("secretbroker.value_bytes", size),
	))
	return span
}

// itemEvents records a batch's items as events on the call's span: the
// first maxItemEvents items to finish, each with its index, resource name
// and code; summary adds one event with the counts of all of them. It
// also decides which items' work is traced (itemContext).
type itemEvents struct {
	span trace.Span

	mu       sync.Mutex
	recorded int
	dropped  int
	untraced int // items run without spans of their own
}

func newItemEvents(ctx context.Context) *itemEvents {
	return &itemEvents{span: trace.SpanFromContext(ctx)}
}

// item records item i's outcome. The name of an item refused as invalid
// is left out: it may be anything a caller sent.
func (e *itemEvents) item(i int, name string, c code.Code) {
	if !e.span.IsRecording() {
		return
	}
	if codes.Code(c) == codes.InvalidArgument {
		name = ""
	}
	e.mu.Lock()
	if e.recorded >= maxItemEvents {
		e.dropped++
		e.mu.Unlock()
		return
	}
	e.recorded++
	e.mu.Unlock()
	if len(name) > maxEventName {
		// Cut on a character's boundary: an environment name may hold
		// characters of several bytes, and a string that is not UTF-8
		// fails the OTLP export of every span in its batch.
		n := maxEventName
		for n > 0 && !utf8.RuneStart(name[n]) {
			n--
		}
		name = name[:n]
	}
	e.span.AddEvent("batch item", trace.WithAttributes(
		attribute.Int(attrItemIndex, i),
		attribute.String(attrItemName, name),
		attribute.Int(attrItemCode, int(c)),
	))
}

// itemContext returns the context the work of a batch item runs under,
// k being the item's place among the batch's items that do work upstream
// (from 0, in the order they are started). The first maxItemEvents run
// under ctx as it is: their seal, pacer wait and request attempt spans
// are children of the call's span. The others run under ctx with the
// call's span context marked not sampled, so that the broker's
// ParentBased sampler records none of their spans; the context still
// holds the trace id, so their log lines and audit records carry it and
// their requests to GitHub still send a traceparent (not sampled). They
// are counted in the summary (secretbroker.batch.items_not_traced). A
// call whose span is not sampled already is left as it is.
func (e *itemEvents) itemContext(ctx context.Context, k int) context.Context {
	sc := trace.SpanContextFromContext(ctx)
	if k < maxItemEvents || !sc.IsValid() || !sc.IsSampled() {
		return ctx
	}
	e.mu.Lock()
	e.untraced++
	e.mu.Unlock()
	return trace.ContextWithSpanContext(ctx, sc.WithTraceFlags(sc.TraceFlags().WithSampled(false)))
}

// summary adds the event that counts the batch's n items by code (from
// t), with how many were not recorded as events of their own and how many
// ran without spans of their own.
func (e *itemEvents) summary(n int, t *batchTally) {
	if !e.span.IsRecording() {
		return
	}
	e.mu.Lock()
	attrs := []attribute.KeyValue{
		attribute.Int("secretbroker.batch.items", n),
		attribute.Int("secretbroker.batch.item_events", e.recorded),
		attribute.Int("secretbroker.batch.items_not_recorded", e.dropped),
		attribute.Int("secretbroker.batch.items_not_traced", e.untraced),
	}
	e.mu.Unlock()
	t.mu.Lock()
	for c, k := range t.counts {
		attrs = append(attrs, attribute.Int("secretbroker.batch.code."+c.String(), k))
	}
	t.mu.Unlock()
	e.span.AddEvent("batch summary", trace.WithAttributes(attrs...))
}
