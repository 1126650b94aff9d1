package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/service"
)

// Once a shutdown begins, the gRPC server takes no new call, even while
// the gateway still drains a request: a client gets UNAVAILABLE at once
// (and tries another replica), not a call held until the timeout cuts it.
func TestShutdownTakesNoNewGRPCCall(t *testing.T) {
	gh := newFakeGitHub(t)
	b := startBroker(t, prodConfig(t, gh.URL, 10*time.Second))
	held := make(chan gatewayAnswer, 1)
	go func() { held <- b.try(http.MethodGet, "/v1/orgs/acme/actions/secrets/public-key", "") }()
	select {
	case <-gh.arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("the gateway request never reached GitHub")
	}
	b.cancelUntilNotServing(t)

	conn, err := grpc.NewClient(b.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	_, err = secretbrokerv1.NewSecretServiceClient(conn).GetPublicKey(ctx, &secretbrokerv1.GetPublicKeyRequest{Parent: "orgs/acme/actions"})
	if status.Code(err) != codes.Unavailable {
		t.Errorf("a new gRPC call during the shutdown: %v, want UNAVAILABLE (not taken)", err)
	}
	gh.unblock()
	if a := <-held; a.err != nil || a.code != http.StatusOK {
		t.Errorf("the gateway request in flight at the shutdown: %d %v, want 200", a.code, a.err)
	}
	b.stop(t, 10*time.Second)
}

// A batch still running a little before the shutdown's timeout is told to
// stop: the caller gets its answer, item by item (the items written OK,
// the one whose PUT GitHub had when the drain came, if any, ABORTED, the
// others UNAVAILABLE with a retry delay), before the connection is
// closed, and every item's intent in the audit trail has its outcome.
func TestShutdownAnswersBatchWithWhatItDid(t *testing.T) {
	// 20 items 400 ms apart take about 8 s; the drain starts 1 s before
	// the 5 s timeout ends.
	const items, timeout = 20, 5 * time.Second
	auditPath := filepath.Join(t.TempDir(), "audit.log")
	cfg, err := loadConfig([]string{"--dev", "--grpc-addr=127.0.0.1:0", "--http-addr=127.0.0.1:0", "--admin-addr=127.0.0.1:0",
		"--shutdown-timeout=" + timeout.String(), "--upstream-write-interval=400ms", "--audit-log=" + auditPath},
		envMap(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	b := startBroker(t, cfg)
	var reqs []string
	for i := range items {
		reqs = append(reqs, fmt.Sprintf(`{"name":"repos/octo-org/hello-world/actions/secrets/DRAIN_%d","value":"v"}`, i))
	}
	answered := make(chan gatewayAnswer, 1)
	go func() {
		answered <- b.try(http.MethodPost, "/v1/secrets:batchPut", `{"requests":[`+strings.Join(reqs, ",")+`]}`)
	}()
	// The shutdown begins once the batch's first item is written (any of
	// them: a batch does not write its items in the order sent, and the
	// one sent first may be written last).
	for !strings.Contains(b.logs.String(), "DRAIN_") {
		select {
		case a := <-answered:
			t.Fatalf("the batch answered before the shutdown: %d %v", a.code, a.body)
		case <-time.After(10 * time.Millisecond):
		}
	}
	b.stop(t, timeout+5*time.Second)

	a := <-answered // the client's timeout bounds the wait
	results, _ := a.body["results"].([]any)
	if a.err != nil || a.code != http.StatusOK || len(results) != items {
		t.Fatalf("the batch at the shutdown answered %d with %d results (%v), want 200 with %d: %v", a.code, len(results), a.err, items, a.body)
	}
	var ok, stopped, aborted int
	for _, r := range results {
		switch code, _ := r.(map[string]any)["code"].(string); code {
		case "OK":
			ok++
		case "ABORTED":
			// Its PUT was on its way (the write slot lets one go at a
			// time): GitHub may have applied it (service's
			// TestDrainedWriteSentIsAborted).
			if msg, _ := r.(map[string]any)["message"].(string); !strings.Contains(msg, "may have applied") {
				t.Errorf("aborted item %v does not say GitHub may have applied it", r)
			}
			aborted++
		case "UNAVAILABLE":
			// As a single call the drain stops: call again, with a delay
			// (they said CANCELLED, as if the caller had cancelled).
			if r.(map[string]any)["retry_after"] == nil {
				t.Errorf("stopped item %v without retry_after", r)
			}
			stopped++
		default:
			t.Errorf("item result %v, want OK, aborted or stopped", r)
		}
	}
	if ok == 0 || stopped == 0 || aborted > 1 {
		t.Errorf("%d items OK, %d stopped and %d aborted, want some OK, some stopped and at most one aborted", ok, stopped, aborted)
	}

	f, err := os.Open(auditPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	phases := map[string]map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var rec struct{ Phase, Resource string }
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		if strings.Contains(rec.Resource, "DRAIN_") {
			if phases[rec.Resource] == nil {
				phases[rec.Resource] = map[string]bool{}
			}
			phases[rec.Resource][rec.Phase] = true
		}
	}
	for res, p := range phases {
		if p["intent"] && !p["outcome"] {
			t.Errorf("%s has an intent and no outcome in the audit trail", res)
		}
	}
}

// gatewayAnswer is an answer of the gateway, or the error that took its
// place.
type gatewayAnswer struct {
	code int
	body map[string]any
	err  error
}

// try is b.do for another goroutine than the test's: it reports what
// went wrong rather than end the test.
func (b *broker) try(method, path, body string) gatewayAnswer {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://"+b.httpAddr+path, rd)
	if err != nil {
		return gatewayAnswer{err: err}
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := b.http.Do(req)
	if err != nil {
		return gatewayAnswer{err: err}
	}
	defer resp.Body.Close()
	a := gatewayAnswer{code: resp.StatusCode}
	raw, err := io.ReadAll(resp.Body)
	if err == nil {
		err = json.Unmarshal(raw, &a.body)
	}
	a.err = err
	return a
}

// TestDrainedCallHasRetryAfter: the README says the gateway's 503 answers
// carry their delay in a Retry-After header; the drain's had none.
func TestDrainedCallHasRetryAfter(t *testing.T) {
	mux := runtime.NewServeMux(runtime.WithErrorHandler(errorWithRetryAfter))
	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodPut, "/v1/repos/o/r/actions/secrets/X", nil)
	errorWithRetryAfter(r.Context(), mux, newJSONMarshaler(), w, r, errDrained())
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") != "1" {
		t.Errorf("drained call: %d, Retry-After %q; want 503, 1", w.Code, w.Header().Get("Retry-After"))
	}
}

// TestDrainEndsCallsWithErrDrained: the drain ends a call's context (a
// unary call's and a stream's) with service.ErrDrained as its cause,
// which the service's outcome records read to say UNAVAILABLE, the
// drain's answer to a call that returns CANCELLED (service's
// TestDrainedCallOutcomeIsItsAnswer); they said CANCELLED.
func TestDrainEndsCallsWithErrDrained(t *testing.T) {
	for _, kind := range []string{"unary", "stream"} {
		t.Run(kind, func(t *testing.T) {
			d := newCallDrain()
			var cause error
			handle := func(ctx context.Context) error {
				d.stop()
				<-ctx.Done()
				cause = context.Cause(ctx)
				return status.Error(codes.Canceled, "request canceled")
			}
			var err error
			if kind == "unary" {
				_, err = d.unary()(t.Context(), nil, &grpc.UnaryServerInfo{}, func(ctx context.Context, _ any) (any, error) {
					return nil, handle(ctx)
				})
			} else {
				err = d.stream()(nil, fakeServerStream{ctx: t.Context()}, &grpc.StreamServerInfo{}, func(_ any, ss grpc.ServerStream) error {
					return handle(ss.Context())
				})
			}
			if !errors.Is(cause, service.ErrDrained) {
				t.Errorf("the call's context ended with cause %v, want service.ErrDrained", cause)
			}
			if status.Code(err) != codes.Unavailable {
				t.Errorf("answered %v, want UNAVAILABLE", err)
			}
		})
	}
}

// fakeServerStream is a ServerStream that has only a context.
type fakeServerStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s fakeServerStream) Context() context.Context { return s.ctx }
