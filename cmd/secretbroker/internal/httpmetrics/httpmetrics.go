// Package httpmetrics owns the gateway's HTTP server metrics without a
// span: otelhttp's three http.server.* histograms, under the same names,
// scope, buckets and attributes, each series' attribute set built once,
// and the caller's trace context extracted from the request's headers
// into its context as otelhttp's propagation does.
package httpmetrics

import (
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/semconv/v1.43.0/httpconv"
)

// httpSeriesCap bounds the attribute sets httpServerMetrics keeps built.
// The attributes a request can vary are its method (nine, or _OTHER), the
// answer's status code, TLS and its protocol version, which net/http
// bounds; past the cap a set is built for each request, as otelhttp does.
const httpSeriesCap = 1024

// httpServerMetrics records otelhttp's server histograms for each request
// and carries the request's propagated trace context into its context,
// without a span.
type httpServerMetrics struct {
	next       http.Handler
	propagator propagation.TextMapPropagator
	duration   httpconv.ServerRequestDuration
	reqBody    httpconv.ServerRequestBodySize
	respBody   httpconv.ServerResponseBodySize
	// host and port are server.address and server.port (port -1: none).
	host string
	port int

	// series holds the record options of each httpSeries seen, at most
	// httpSeriesCap of them (count).
	series sync.Map // httpSeries -> []metric.RecordOption
	count  atomic.Int64
}

// httpSeries is what the attributes of one request's measurements depend on.
type httpSeries struct {
	method string // standardized: GET, ..., or _OTHER
	status int
	tls    bool
	proto  string // as the request has it: HTTP/1.1
}

// New returns next with otelhttp's server histograms recorded on
// meterProvider for each request, and the request's trace context
// extracted with propagator into its context, without a span.
// serverName is the listener's address: server.address and server.port of
// every series.
func New(next http.Handler, meterProvider metric.MeterProvider, propagator propagation.TextMapPropagator, serverName string) http.Handler {
	return newHTTPServerMetrics(next, meterProvider, propagator, serverName)
}

func newHTTPServerMetrics(next http.Handler, meterProvider metric.MeterProvider, propagator propagation.TextMapPropagator, serverName string) *httpServerMetrics {
	// The instruments otelhttp creates, on a meter of its scope, so that
	// the exported series are the same whichever of the two records them.
	meter := meterProvider.Meter(otelhttp.ScopeName, metric.WithInstrumentationVersion(otelhttp.Version))
	m := &httpServerMetrics{next: next, propagator: propagator}
	var err error
	if m.reqBody, err = httpconv.NewServerRequestBodySize(meter); err != nil {
		otel.Handle(err)
	}
	if m.respBody, err = httpconv.NewServerResponseBodySize(meter); err != nil {
		otel.Handle(err)
	}
	// Its buckets are semconv's, as otelhttp's are: httpconv's own
	// options come after any given.
	if m.duration, err = httpconv.NewServerRequestDuration(meter); err != nil {
		otel.Handle(err)
	}
	m.host, m.port = splitServerName(serverName)
	return m
}

func (m *httpServerMetrics) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	ctx := m.propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	var body *countingBody
	if ctx != r.Context() || (r.Body != nil && r.Body != http.NoBody) {
		r = r.WithContext(ctx) // a copy: the caller's request keeps its own body
		if r.Body != nil && r.Body != http.NoBody {
			body = &countingBody{ReadCloser: r.Body}
			r.Body = body
		}
	}
	sw := &answerWriter{ResponseWriter: w, status: http.StatusOK}
	m.next.ServeHTTP(sw, r)

	var read int64
	if body != nil {
		read = body.n
	}
	opts := m.recordOptions(httpSeries{method: standardMethod(r.Method), status: sw.status, tls: r.TLS != nil, proto: r.Proto})
	m.reqBody.Inst().Record(ctx, read, opts...)
	m.respBody.Inst().Record(ctx, sw.written, opts...)
	m.duration.Inst().Record(ctx, time.Since(start).Seconds(), opts...)
}

// recordOptions returns the record options of s's attribute set, built
// once per series.
func (m *httpServerMetrics) recordOptions(s httpSeries) []metric.RecordOption {
	if v, ok := m.series.Load(s); ok {
		return v.([]metric.RecordOption)
	}
	opts := []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(m.attributes(s)...))}
	if m.count.Add(1) <= httpSeriesCap {
		if v, loaded := m.series.LoadOrStore(s, opts); loaded {
			m.count.Add(-1)
			return v.([]metric.RecordOption)
		}
	}
	return opts
}

// attributes are the attributes otelhttp gives a request's measurements
// (its semconv HTTPServer.MetricAttributes for a request without a route
// pattern, labels or extra attributes, with a server name). One
// difference: for a server name without a port, otelhttp takes
// server.port from the request's Host header, which the caller chooses;
// here there is none. (The gateway's server name is its listener's
// address, which has one.)
func (m *httpServerMetrics) attributes(s httpSeries) []attribute.KeyValue {
	scheme := "http"
	if s.tls {
		scheme = "https"
	}
	attrs := []attribute.KeyValue{
		semconv.HTTPRequestMethodKey.String(s.method),
		semconv.URLScheme(scheme),
		semconv.ServerAddress(m.host),
	}
	if p := m.port; p > 0 && ((s.tls && p != 443) || (!s.tls && p != 80)) {
		attrs = append(attrs, semconv.ServerPort(p))
	}
	name, version, _ := strings.Cut(s.proto, "/")
	if name = strings.ToLower(name); name != "" {
		attrs = append(attrs, semconv.NetworkProtocolName(name))
	}
	if version != "" {
		attrs = append(attrs, semconv.NetworkProtocolVersion(version))
	}
	if s.status > 0 {
		attrs = append(attrs, semconv.HTTPResponseStatusCode(s.status))
	}
	return attrs
}

// standardMethod is a request method as otelhttp records it: one of
// HTTP's nine in upper case, or _OTHER.
func standardMethod(method string) string {
	switch m := strings.ToUpper(method); m {
	case http.MethodConnect, http.MethodDelete, http.MethodGet, http.MethodHead, http.MethodOptions,
		http.MethodPatch, http.MethodPost, http.MethodPut, http.MethodTrace:
		return m
	}
	return "_OTHER"
}

// splitServerName returns the host and port of a listener's address
// (port -1 when it has none).
func splitServerName(addr string) (string, int) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return strings.Trim(addr, "[]"), -1
	}
	port, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return host, -1
	}
	return host, int(port)
}

// answerWriter is a ResponseWriter that keeps the status code of the
// answer and counts its body's bytes, as otelhttp's wrapper does.
type answerWriter struct {
	http.ResponseWriter
	status      int
	written     int64
	wroteHeader bool
}

func (w *answerWriter) WriteHeader(code int) {
	// An informational status (but 101) is not the answer's.
	if !w.wroteHeader && (code < 100 || code > 199 || code == http.StatusSwitchingProtocols) {
		w.wroteHeader = true
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *answerWriter) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	n, err := w.ResponseWriter.Write(p)
	w.written += int64(n)
	return n, err
}

// Flush flushes the answer, as the wrapped writer's Flush would.
func (w *answerWriter) Flush() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap is for http.ResponseController.
func (w *answerWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// countingBody counts the bytes the handler reads of a request's body.
type countingBody struct {
	io.ReadCloser
	n int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	return n, err
}
