package upstream

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptrace"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/secretbroker/secretbroker/upstream/pace"
)

// The default HTTP client's connection pool (newTransport).
const (
	// maxIdleConnsPerHost is how many idle connections to GitHub the
	// pool keeps: as many as one credential's pacer ever lets run at once
	// (pace.MaxConcurrent, GitHub's limit of 100 concurrent requests, and
	// the upper bound of Pacing.MaxInFlight). Sizing it to the configured
	// MaxInFlight instead would undercount a client with several
	// credentials (a GitHub App's installations each have a pacer of their
	// own, all to one host); idle connections cost a few kilobytes each
	// and are closed after idleConnTimeout. Over HTTP/2, which GitHub
	// offers, the requests share one connection anyway.
	maxIdleConnsPerHost = pace.MaxConcurrent
	dialTimeout         = 10 * time.Second
	dialKeepAlive       = 30 * time.Second
	tlsHandshakeTimeout = 10 * time.Second
	idleConnTimeout     = 90 * time.Second
	// responseHeaderTimeout bounds the wait for an answer's headers once
	// the request is written: GitHub ends a REST request that takes more
	// than 10 s itself, so 15 s means the connection is stuck, and the
	// attempt fails (and is retried as a transport error) well before the
	// client's 30 s overall timeout.
	responseHeaderTimeout = 15 * time.Second
	expectContinueTimeout = time.Second
)

// NewTransport returns the default client's transport: keep-alive connections,
// pooled per host up to maxIdleConnsPerHost idle ones, no cap on
// connections per host (the pacers bound the requests in flight; a cap
// here would only add a queue nobody measures), HTTP/2 where the server
// offers it in the TLS handshake (ALPN), and the timeouts above. Proxies
// come from the environment, as with http.DefaultTransport. A credential
// source's own requests (a GitHub App's installation lookups and token
// mints) use one too.
func NewTransport() *http.Transport {
	d := &net.Dialer{Timeout: dialTimeout, KeepAlive: dialKeepAlive}
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           d.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          0, // no total cap: one host
		MaxIdleConnsPerHost:   maxIdleConnsPerHost,
		MaxConnsPerHost:       0,
		IdleConnTimeout:       idleConnTimeout,
		TLSHandshakeTimeout:   tlsHandshakeTimeout,
		ResponseHeaderTimeout: responseHeaderTimeout,
		ExpectContinueTimeout: expectContinueTimeout,
	}
}

// connReuse counts, in secretbroker_upstream_connections_total, every
// connection a request got from next: reused="true" when it came from
// the pool (or is a further stream on an HTTP/2 connection),
// reused="false" when it was opened for the request.
type connReuse struct {
	next   http.RoundTripper
	count  metric.Int64Counter
	reused metric.AddOption
	opened metric.AddOption
}

// newConnReuse wraps next, recording on m's meter.
func newConnReuse(next http.RoundTripper, m *metrics) (connReuse, error) {
	c, err := m.meter.Int64Counter("secretbroker_upstream_connections_total",
		metric.WithDescription("Connections requests to GitHub used, by whether the connection was reused from the pool (reused=\"true\") or opened for the request (reused=\"false\")."))
	if err != nil {
		return connReuse{}, fmt.Errorf("upstream: metrics: %w", err)
	}
	return connReuse{
		next:   next,
		count:  c,
		reused: metric.WithAttributeSet(attribute.NewSet(attribute.String("reused", "true"))),
		opened: metric.WithAttributeSet(attribute.NewSet(attribute.String("reused", "false"))),
	}, nil
}

func (t connReuse) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) { t.got(ctx, info.Reused) }}
	return t.next.RoundTrip(req.WithContext(httptrace.WithClientTrace(ctx, trace)))
}

func (t connReuse) got(ctx context.Context, reused bool) {
	if reused {
		t.count.Add(ctx, 1, t.reused)
	} else {
		t.count.Add(ctx, 1, t.opened)
	}
}

// pooledClient is defaultHTTPClient with transport rt (tests give one that
// trusts their server's certificate).
func pooledClient(tp trace.TracerProvider, m *metrics, rt *http.Transport) (*http.Client, error) {
	reuse, err := newConnReuse(rt, m)
	if err != nil {
		return nil, err
	}
	// GitHub gets the W3C trace context (a GitHub Enterprise Server with
	// tracing can join the trace) and nothing else of the call's
	// context: not the caller's baggage, which the broker's global
	// propagator would otherwise forward to a third party with the
	// broker's credentials.
	opts := []otelhttp.Option{otelhttp.WithSpanNameFormatter(spanName), otelhttp.WithPropagators(propagation.TraceContext{})}
	if tp != nil {
		opts = append(opts, otelhttp.WithTracerProvider(tp))
	}
	return &http.Client{
		Timeout:   DefaultTimeout,
		Transport: otelhttp.NewTransport(attemptTracer{next: reuse}, opts...),
	}, nil
}

// noRedirects returns a shallow copy of hc (hc itself is not modified)
// that follows no redirect: the 3xx answer is the answer. GitHub
// redirects a renamed or transferred repository's routes to the
// repository it became, and the broker's policy allowed the name the
// caller gave, not that one; and Go re-sends a PUT or DELETE answered
// 301, 302 or 303 as a GET, whose 200 would pass for the write's answer.
func noRedirects(hc *http.Client) *http.Client {
	g := *hc
	g.CheckRedirect = refuseRedirect
	return &g
}

func refuseRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// redirectMessage is the Error.Message of a redirect answer ("" for any
// other status). It holds no URL: the Location may name more than the
// route template.
func redirectMessage(status int) string {
	if status < 300 || status > 399 || status == http.StatusNotModified {
		return ""
	}
	return fmt.Sprintf("GitHub redirected the request (%d); the broker follows no redirect: a renamed or transferred repository is reached by its current name only, and the upstream URL must be GitHub's API itself", status)
}
