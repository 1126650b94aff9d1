package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
)

// The gateway scenario's paths.
const (
	batchPutPath  = "/v1/secrets:batchPut"
	publicKeyPath = "/v1/" + repoScope + "/secrets/public-key"

	// maxAnswerBytes bounds how much of an answer's body is read.
	maxAnswerBytes = 4 << 20
	// probeConns is how many idle connections the gateway prober keeps.
	probeConns = 16
)

// runGateway runs the gateway scenario against a fresh broker: the flood
// of the flood scenario, as JSON batchPut requests through the gateway,
// probed through the gateway and over gRPC.
func runGateway(ctx context.Context, o options, env *runEnv) (floodResult, error) {
	r := floodResult{gateway: true}
	r.items, r.valueBytes = floodShape(o.floodBytes)
	quoted, err := jsonStrings(randomValues(r.items, r.valueBytes))
	if err != nil {
		return r, err
	}
	bodies := make([]jsonBody, o.floodConcurrency)
	for w := range bodies {
		bodies[w] = jsonBatchBody("GATEWAY", w*r.items, quoted)
		r.bodyBytes = max(r.bodyBytes, bodies[w].size)
	}

	b, grpcProbe, closeAll, err := startFlood(ctx, env, "gateway", "prober (gRPC)", env.secret[2])
	if err != nil {
		return r, err
	}
	defer closeAll()
	base := "http://" + b.httpAddr
	probeClient, _ := newHTTPClient(probeConns)
	defer probeClient.CloseIdleConnections()
	gwProbe := gatewayProber("prober (JSON gateway)", probeClient, base+publicKeyPath, env.secret[1])
	if err := warm(ctx, gwProbe); err != nil {
		return r, err
	}
	flood, dials := newHTTPClient(o.floodConcurrency)
	defer flood.CloseIdleConnections()

	fmt.Fprintf(env.stderr, "gateway: %d goroutines, each over its own HTTP/1.1 connection, JSON bodies of %d bytes (%d values of %d bytes), for %s ...\n",
		o.floodConcurrency, r.bodyBytes, r.items, r.valueBytes, o.duration)
	var calls, items tally
	err = floodLoad(ctx, o, b, func(ctx context.Context, w int) {
		calls.add(postBatch(ctx, flood, base+batchPutPath, env.secret[0], bodies[w], &items), 1)
	}, []prober{gwProbe, grpcProbe}, &r)
	r.calls, r.itemCodes = calls.counts(), items.counts()
	r.dials = dials.Load()
	return r, err
}

// newHTTPClient is a client that keeps up to conns idle connections to
// the broker (HTTP/1.1: one request at a time on each) and counts the TCP
// connections it opens. It keeps them for as long as the server does, with
// no idle timeout of its own: a compare run with all paths leaves more than
// a minute between a path's phases, and a new connection must count the
// server's churn (or the direct client's), not this client's timeout.
func newHTTPClient(conns int) (*http.Client, *atomic.Int64) {
	var dials atomic.Int64
	var d net.Dialer
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials.Add(1)
			return d.DialContext(ctx, network, addr)
		},
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     0, // none
		DisableCompression:  true,
	}}, &dials
}

// jsonStrings is each value as a JSON string, quotes included.
func jsonStrings(values []string) ([][]byte, error) {
	out := make([][]byte, len(values))
	for i, v := range values {
		q, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("encoding a value: %w", err)
		}
		out[i] = q
	}
	return out, nil
}

// jsonBody is a JSON request body in pieces, so that the values, which
// are most of it, are shared by every body rather than copied into each.
type jsonBody struct {
	pieces [][]byte
	size   int64
}

// reader reads the body from its start.
func (b jsonBody) reader() io.ReadCloser {
	bufs := net.Buffers(slices.Clone(b.pieces)) // reading consumes the slice
	return io.NopCloser(&bufs)
}

// jsonBatchBody is the JSON body of batchRequest(prefix, first, values),
// where quoted holds the values as JSON strings: a piece of its own before
// each value and one at the end, between the shared values.
func jsonBatchBody(prefix string, first int, quoted [][]byte) jsonBody {
	var b jsonBody
	add := func(p []byte) {
		b.pieces = append(b.pieces, p)
		b.size += int64(len(p))
	}
	sep := `{"requests":[`
	for i, v := range quoted {
		name, _ := json.Marshal(floodSecretName(prefix, first+i)) // a string: never fails
		add([]byte(sep + `{"name":` + string(name) + `,"value":`))
		add(v)
		sep = "},"
	}
	if len(quoted) == 0 {
		add([]byte(sep + "]}"))
	} else {
		add([]byte("}]}"))
	}
	return b
}

// timeoutHeader is d as a Grpc-Timeout header value ("2S"): whole seconds
// when it is some, else whole milliseconds, rounded up.
func timeoutHeader(d time.Duration) string {
	if d%time.Second == 0 {
		return strconv.FormatInt(int64(d/time.Second), 10) + "S"
	}
	return strconv.FormatInt(int64((d+time.Millisecond-1)/time.Millisecond), 10) + "m"
}

// postBatch POSTs body to url as the caller with token, with a
// Grpc-Timeout of floodCallTimeout, and names the answer: "HTTP 200" and
// the like, or "transport: ..." when there was none. The items of a 200
// answer are counted into items by result code.
func postBatch(ctx context.Context, c *http.Client, url, token string, body jsonBody, items *tally) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, body.reader())
	if err != nil {
		return "request: " + errorKind(err)
	}
	req.ContentLength = body.size
	req.GetBody = func() (io.ReadCloser, error) { return body.reader(), nil }
	req.Header.Set("Content-Type", jsonMediaType)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Grpc-Timeout", timeoutHeader(floodCallTimeout)) // floodLoad's deadline, for the broker
	answer, data := doHTTP(c, req)
	if answer == "HTTP 200" {
		countItems(data, items)
	}
	return answer
}

// countItems counts the items of a BatchPutSecretsResponse in JSON by
// result code; an answer that is not one counts as one "undecodable".
func countItems(data []byte, items *tally) {
	var resp secretbrokerv1.BatchPutSecretsResponse
	if err := protojson.Unmarshal(data, &resp); err != nil {
		items.add("undecodable answer", 1)
		return
	}
	for _, res := range resp.GetResults() {
		items.add(res.GetCode().String(), 1)
	}
}

// gatewayProber GETs url (the demo repository's public key) as the
// caller with token.
func gatewayProber(name string, c *http.Client, url, token string) prober {
	return prober{name: name, probe: func(ctx context.Context) (string, bool) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return "request: " + errorKind(err), false
		}
		req.Header.Set("Authorization", "Bearer "+token)
		answer, _ := doHTTP(c, req)
		return answer, answer == "HTTP 200"
	}}
}

const jsonMediaType = "application/json"

// doHTTP sends req and reads the answer's body (at most maxAnswerBytes),
// so that the connection can carry the next request. It names the answer
// by its status ("HTTP 429"), or "transport: ..." when there was none or
// its body broke off; never with an error's message, which holds the URL.
func doHTTP(c *http.Client, req *http.Request) (answer string, body []byte) {
	resp, err := c.Do(req)
	if err != nil {
		return "transport: " + transportKind(err), nil
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
	if err != nil {
		return "transport: " + transportKind(err) + " reading the answer", nil
	}
	return "HTTP " + strconv.Itoa(resp.StatusCode), body
}

// transportKind names an HTTP client's error without its message.
func transportKind(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "cancelled"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed (EOF)"
	}
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return errorKind(err)
		}
		err = next
	}
}
