package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
)

// sendShort writes head (a request line and headers, without the blank
// line that ends them) and body to a new connection to addr, then closes
// the connection's sending side, so that the body ends there whatever its
// Content-Length claims, and returns the answer. (net/http cancels the
// context of a request whose body it has read whole once it sees the
// connection's end: use sendShort only where the body is cut short or
// never read.)
func sendShort(t *testing.T, addr, head, body string) gwAnswer {
	t.Helper()
	conn := dialGateway(t, addr)
	defer conn.Close()
	if _, err := io.WriteString(conn, head+"\r\n\r\n"+body); err != nil {
		t.Fatal(err)
	}
	if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	return readAnswer(t, conn, head)
}

// totalAlloc is the bytes the process has allocated so far.
func totalAlloc() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.TotalAlloc
}

// TestGatewayBodyNotReserved sends a dev broker requests that declare the
// largest body allowed and send one byte of it: to paths outside /v1/, to
// /v1 routes that take no body, to no route at all, and to a route that
// takes one. None may cost the broker memory for the bytes that were only
// announced. A route without a body answers as it does without one.
func TestGatewayBodyNotReserved(t *testing.T) {
	b := startBroker(t, devConfig(t))
	jsonCT := map[string]string{"Content-Type": "application/json"}
	orgPut := `{"value":"` + hardeningSecret + `","visibility":"selected","selected_repository_ids":[1296269]}`
	if a := send(t, b.http, b.httpAddr, gwRequest{method: http.MethodPut, path: "/v1/orgs/octo-org/actions/secrets/BODY_ORG", header: jsonCT, body: orgPut}); a.code != http.StatusCreated {
		t.Fatalf("PUT BODY_ORG = %d %s", a.code, a.raw)
	}
	const declared = maxRequestBytes
	const rounds = 3
	// Reserving the declared size even once would cost 16 MiB; the
	// requests themselves, and what the broker does meanwhile, cost far
	// less than this.
	const margin = 8 << 20

	for _, tt := range []struct {
		method, path string
		// bodiless: the route takes no body; the answer is the one without.
		bodiless bool
		code     int
	}{
		{http.MethodPost, "/healthz", true, http.StatusMethodNotAllowed},
		{http.MethodGet, "/healthz", true, http.StatusOK},
		{http.MethodPut, "/openapi.json", true, http.StatusMethodNotAllowed},
		{http.MethodPost, "/nowhere", true, http.StatusNotFound},
		{http.MethodGet, "/v1/orgs/octo-org/actions/secrets/public-key", true, http.StatusOK},
		{http.MethodPost, "/v1/orgs/octo-org/actions/secrets/public-key", true, http.StatusMethodNotAllowed},
		{http.MethodPut, "/v1/orgs/octo-org/actions/secrets/BODY_ORG/repositories/1296270", true, http.StatusNoContent},
		{http.MethodDelete, "/v1/orgs/octo-org/actions/secrets/BODY_NONE", true, 0},
		{http.MethodPost, "/v1/nowhere", true, http.StatusNotFound},
		// A route that takes a body reads the one byte sent, and finds
		// the body cut short.
		{http.MethodPut, "/v1/repos/octo-org/hello-world/actions/secrets/BODY_SHORT", false, http.StatusBadRequest},
		{http.MethodPost, "/v1/secrets:batchPut", false, http.StatusBadRequest},
	} {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			head := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d", tt.method, tt.path, b.httpAddr, declared)
			want := tt.code
			if tt.bodiless {
				// The same request without a body.
				a := send(t, b.http, b.httpAddr, gwRequest{method: tt.method, path: tt.path, header: jsonCT})
				if want != 0 && a.code != want {
					t.Fatalf("without a body: %d %s, want %d", a.code, a.raw, want)
				}
				want = a.code
			}
			runtime.GC()
			before := totalAlloc()
			var a gwAnswer
			for range rounds {
				a = sendShort(t, b.httpAddr, head, "{")
				if a.code != want {
					t.Errorf("status %d %s, want %d", a.code, a.raw, want)
				}
			}
			if grew := totalAlloc() - before; grew > margin {
				t.Errorf("%d requests declaring %d bytes and sending 1 allocated %d bytes, want at most %d", rounds, declared, grew, margin)
			}
			if !tt.bodiless {
				checkErrorShape(t, a, http.StatusBadRequest, codes.InvalidArgument, "reading the request body")
			}
		})
	}
	if strings.Contains(b.logs.String(), hardeningSecret) {
		t.Error("the broker's logs hold the planted secret value")
	}
}

// TestGatewayBodyWrites: routes that take a body still read it, across
// the first bodyReserve bytes and with or without a Content-Length, and
// still refuse one over the limit with 413.
func TestGatewayBodyWrites(t *testing.T) {
	b := startBroker(t, devConfig(t))
	c := secretbrokerv1.NewSecretServiceClient(b.conn)
	jsonCT := map[string]string{"Content-Type": "application/json"}
	// Valid JSON larger than bodyReserve: the buffer grows past it.
	padded := `{"value":"` + hardeningSecret + `"` + strings.Repeat(" ", 3*bodyReserve) + `}`
	for _, tt := range []struct {
		name, body string
		chunked    bool
	}{
		{"BODY_SMALL", `{"value":"` + hardeningSecret + `"}`, false},
		{"BODY_PADDED", padded, false},
		{"BODY_CHUNKED", padded, true},
	} {
		a := send(t, b.http, b.httpAddr, gwRequest{method: http.MethodPut, path: "/v1/repos/octo-org/hello-world/actions/secrets/" + tt.name,
			header: jsonCT, body: tt.body, chunked: tt.chunked})
		if a.code != http.StatusCreated {
			t.Errorf("PUT %s (%d bytes, chunked %v) = %d %s, want 201", tt.name, len(tt.body), tt.chunked, a.code, a.raw)
		}
		if _, err := c.GetSecret(t.Context(), &secretbrokerv1.GetSecretRequest{Name: "repos/octo-org/hello-world/actions/secrets/" + tt.name}); err != nil {
			t.Errorf("GetSecret(%s) after the gateway's PUT: %v", tt.name, err)
		}
	}
	batch := `{"requests":[{"name":"repos/octo-org/hello-world/actions/secrets/BODY_BATCH","value":"` + hardeningSecret + `"}]}`
	if a := send(t, b.http, b.httpAddr, gwRequest{method: http.MethodPost, path: "/v1/secrets:batchPut", header: jsonCT, body: batch}); a.code != http.StatusOK {
		t.Errorf("POST batchPut = %d %s", a.code, a.raw)
	}

	// Over the limit by its Content-Length: 413 before a byte is read.
	a := sendRaw(t, b.httpAddr, fmt.Sprintf("PUT /v1/repos/octo-org/hello-world/actions/secrets/BODY_BIG HTTP/1.1\r\n"+
		"Host: %s\r\nContent-Type: application/json\r\nContent-Length: %d", b.httpAddr, maxRequestBytes+1), nil)
	checkErrorShape(t, a, http.StatusRequestEntityTooLarge, codes.InvalidArgument, "request body is larger than the 16 MiB limit")
	// Over the limit as it arrives, without a Content-Length.
	a = sendRaw(t, b.httpAddr, fmt.Sprintf("POST /v1/secrets:batchPut HTTP/1.1\r\n"+
		"Host: %s\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked", b.httpAddr), chunkedBody(maxRequestBytes+1))
	checkErrorShape(t, a, http.StatusRequestEntityTooLarge, codes.InvalidArgument, "request body is larger than")
	if _, err := c.GetSecret(t.Context(), &secretbrokerv1.GetSecretRequest{Name: "repos/octo-org/hello-world/actions/secrets/BODY_BIG"}); status.Code(err) != codes.NotFound {
		t.Errorf("GetSecret(BODY_BIG) = %v, want NotFound", err)
	}
	b.stop(t, 10*time.Second)
	if strings.Contains(b.logs.String(), hardeningSecret) {
		t.Error("the broker's logs hold the planted secret value")
	}
}

// samplePath is a path that template matches: each variable's segments
// filled in with "x" (a bare variable with "7").
func samplePath(template string) string {
	p := regexp.MustCompile(`\{[^{}=]+\}`).ReplaceAllString(template, "7")
	p = regexp.MustCompile(`\{[^{}=]+=([^{}]*)\}`).ReplaceAllString(p, "$1")
	return strings.ReplaceAll(strings.ReplaceAll(p, "**", "x/y"), "*", "x")
}

// TestGatewayBodyRoutes checks, through the gateway's own mux, that each
// route the proto gives a body reads it and each other route does not: a
// body with an unknown field is refused, by name, exactly on the routes
// that take one.
func TestGatewayBodyRoutes(t *testing.T) {
	body := map[route]bool{}
	for _, rt := range serviceBodyRoutes() {
		body[rt] = true
	}
	for _, want := range []route{
		{http.MethodPut, "/v1/{name=orgs/*/actions/secrets/*}"},
		{http.MethodPut, "/v1/{name=repos/*/*/environments/*/secrets/*}"},
		{http.MethodPut, "/v1/{name=orgs/*/agents/secrets/*}/repositories"},
		{http.MethodPost, "/v1/secrets:batchPut"},
		{http.MethodPost, "/v1/secrets:batchDelete"},
		{http.MethodPost, "/v1/{parent=repos/*/*/actions}/secrets:sync"},
		{http.MethodPost, "/v1/{name=operations/*}:cancel"},
		{http.MethodPost, "/v1/{name=operations/*}:wait"},
	} {
		if !body[want] {
			t.Errorf("serviceBodyRoutes lacks %v", want)
		}
	}
	for _, notWant := range []route{
		{http.MethodPut, "/v1/{name=orgs/*/actions/secrets/*}/repositories/{repository}"},
		{http.MethodGet, "/v1/{name=orgs/*/actions/secrets/*}"},
		{http.MethodDelete, "/v1/{name=orgs/*/actions/secrets/*}"},
	} {
		if body[notWant] {
			t.Errorf("serviceBodyRoutes holds %v, which takes no body", notWant)
		}
	}

	f := startFakeBackend(t)
	client := &http.Client{Timeout: 30 * time.Second}
	jsonCT := map[string]string{"Content-Type": "application/json"}
	for _, rt := range append(serviceRoutes(), route{http.MethodGet, "/healthz"}, route{http.MethodGet, "/openapi.json"}) {
		path := samplePath(rt.path)
		a := send(t, client, f.addr, gwRequest{method: rt.method, path: path, header: jsonCT, body: `{"not_a_field":1}`})
		f.take()
		refused := a.code == http.StatusBadRequest && strings.Contains(a.raw, `unknown field \"not_a_field\"`)
		if refused != body[rt] {
			t.Errorf("%s %s (route %s): %d %s; body read: %v, want %v", rt.method, path, rt.path, a.code, a.raw, refused, body[rt])
		}
	}
}

// TestReadBodyBytes reads bodies of every shape; the buffer follows the
// bytes that arrive, not the length declared.
func TestReadBodyBytes(t *testing.T) {
	big := strings.Repeat("b", 5*bodyReserve+3)
	for _, tt := range []struct {
		name     string
		body     io.Reader
		declared int64
		want     string
		err      error // errors.Is; nil: no error
	}{
		{"exact", strings.NewReader(`{"a":1}`), 7, `{"a":1}`, nil},
		{"unknown length", strings.NewReader(`{"a":1}`), -1, `{"a":1}`, nil},
		{"one byte at a time", iotest.OneByteReader(strings.NewReader(big)), int64(len(big)), big, nil},
		{"unknown length, larger than the reserve", iotest.HalfReader(strings.NewReader(big)), -1, big, nil},
		{"exactly the reserve", strings.NewReader(big[:bodyReserve]), bodyReserve, big[:bodyReserve], nil},
		{"shorter than declared", strings.NewReader("{"), maxRequestBytes, "{", nil},
		{"cut short", io.MultiReader(strings.NewReader("{"), iotest.ErrReader(io.ErrUnexpectedEOF)), maxRequestBytes, "", io.ErrUnexpectedEOF},
		{"longer than declared", strings.NewReader(`{"a":1}`), 3, "", errBodyOverrun},
		{"data with EOF", iotest.DataErrReader(strings.NewReader(big)), int64(len(big)), big, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readBodyBytes(tt.body, tt.declared)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("error %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil || string(got) != tt.want {
				t.Fatalf("got %d bytes, %v; want %d bytes", len(got), err, len(tt.want))
			}
		})
	}

	t.Run("over maxRequestBytes", func(t *testing.T) {
		for _, declared := range []int64{-1, maxRequestBytes} {
			w := httptest.NewRecorder()
			_, err := readBodyBytes(http.MaxBytesReader(w, io.NopCloser(chunkedFiller(maxRequestBytes+1)), maxRequestBytes), declared)
			if mbe, ok := errors.AsType[*http.MaxBytesError](err); !ok || mbe.Limit != maxRequestBytes {
				t.Errorf("declared %d: error %v, want a MaxBytesError of %d", declared, err, maxRequestBytes)
			}
		}
	})

	t.Run("declared size not reserved", func(t *testing.T) {
		// One byte of a body said to be 16 MiB, then the connection ends:
		// what is allocated is the reserve at most, not the 16 MiB.
		runtime.GC()
		before := totalAlloc()
		for range 4 {
			_, err := readBodyBytes(io.MultiReader(strings.NewReader("{"), iotest.ErrReader(io.ErrUnexpectedEOF)), maxRequestBytes)
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("error %v, want unexpected EOF", err)
			}
		}
		if grew := totalAlloc() - before; grew > 1<<20 {
			t.Errorf("4 bodies declaring %d bytes and holding 1 allocated %d bytes, want at most %d", maxRequestBytes, grew, 1<<20)
		}
	})
}

// chunkedFiller is n bytes of spaces, read in pieces.
func chunkedFiller(n int) io.Reader {
	return iotest.HalfReader(strings.NewReader(strings.Repeat(" ", n)))
}

// watchedBody is a request body that counts the bytes read from it; block
// makes each Read wait for a byte from the channel.
type watchedBody struct {
	read  atomic.Int64
	block chan byte // nil: the body is "{}"
	rest  io.Reader
}

func (b *watchedBody) Read(p []byte) (int, error) {
	if b.block != nil {
		c, ok := <-b.block
		if !ok {
			return 0, io.ErrUnexpectedEOF
		}
		p[0] = c
		b.read.Add(1)
		return 1, nil
	}
	if b.rest == nil {
		b.rest = strings.NewReader("{}")
	}
	n, err := b.rest.Read(p)
	b.read.Add(int64(n))
	return n, err
}

func (b *watchedBody) Close() error { return nil }

// TestGatewayBodyBudget checks the bound on bodies in progress through
// the front door's HTTP side: a body's cost is taken before it is read, on
// every path that reads one, and a body that is never read costs nothing.
func TestGatewayBodyBudget(t *testing.T) {
	t.Run("cost", func(t *testing.T) {
		for _, tt := range []struct{ budget, declared, want int64 }{
			{32 << 20, 2, 2 * bodyCostFactor},
			{32 << 20, 1 << 20, bodyCostFactor << 20},
			// Never more than a caller's share: half the budget, at
			// least the largest request.
			{32 << 20, -1, 16 << 20},                  // unknown: the largest allowed
			{32 << 20, maxRequestBytes + 1, 16 << 20}, // refused by its length before
			{32 << 20, 10 << 20, 16 << 20},
			{64 << 20, 10 << 20, 30 << 20},
			{100 << 20, -1, bodyCostFactor * maxRequestBytes},
			{maxRequestBytes, -1, maxRequestBytes}, // the whole budget
		} {
			if got := newByteBudget(tt.budget).cost(tt.declared); got != tt.want {
				t.Errorf("budget %d: cost(%d) = %d, want %d", tt.budget, tt.declared, got, tt.want)
			}
		}
	})

	t.Run("handed on every path", func(t *testing.T) {
		door := &frontDoor{keys: callerKeys{gatewaySecret: "budget-gateway-secret"}, log: slog.New(slog.DiscardHandler)}
		var got *byteBudget
		h := door.admitHTTP(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
			got = bodyBudgetFrom(r.Context(), nil)
		}), newCallLimits(0, 0, 0, 0), 20<<20)
		var first *byteBudget
		for _, tt := range []struct {
			path   string
			length int64
			handed bool
		}{
			{"/healthz", maxRequestBytes, true},
			{"/openapi.json", -1, true},
			{"/v1/secrets:batchPut", 2, true},
			{"/v1/secrets:batchPut", -1, true},
			{"/healthz", 0, false}, // nothing to read: no copy of the request
			{"/v1/operations", 0, false},
		} {
			got = nil
			r := httptest.NewRequest(http.MethodPost, tt.path, nil)
			if tt.length != 0 {
				r.Body, r.ContentLength = &watchedBody{}, tt.length
			}
			h.ServeHTTP(httptest.NewRecorder(), r)
			if (got != nil) != tt.handed {
				t.Errorf("%s with a body of %d: budget handed on %v, want %v", tt.path, tt.length, got != nil, tt.handed)
			}
			if got == nil {
				continue
			}
			if got.max != 20<<20 {
				t.Errorf("%s: the budget bounds %d bytes, want --max-inflight-bytes, %d", tt.path, got.max, 20<<20)
			}
			if first == nil {
				first = got
			} else if got != first {
				t.Errorf("%s: a budget of its own, want the one all requests share", tt.path)
			}
		}
	})

	// The gateway over a gRPC server that answers every call
	// Unimplemented, behind admitHTTP, as run puts them.
	h := gatewayBehindDoor(t, serveUnimplemented(t), "budget-gateway-secret")

	serve := func(method, path string, length int64, body *watchedBody) *httptest.ResponseRecorder {
		r := httptest.NewRequestWithContext(context.Background(), method, path, nil)
		r.Header.Set("Content-Type", "application/json")
		r.Body, r.ContentLength = body, length
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}

	// A chunked body (-1) costs the whole budget; its request reads one
	// byte and then waits for the rest.
	holder := &watchedBody{block: make(chan byte)}
	held := make(chan *httptest.ResponseRecorder)
	go func() { held <- serve(http.MethodPost, "/v1/secrets:batchPut", -1, holder) }()
	holder.block <- '{' // read: the budget was taken before
	for _, tt := range []struct {
		method, path string
		length       int64
		// taken: the request needs the budget and is refused: a /v1
		// POST, PUT or PATCH with a body, whose cost admitHTTP takes
		// before tracing and routing (also for a route that takes no
		// body, or none at all), so that a flood of bodies is refused at
		// its cheapest.
		taken bool
	}{
		{http.MethodPut, "/v1/repos/octo-org/hello-world/actions/secrets/X", 2, true},
		{http.MethodPost, "/v1/secrets:batchDelete", -1, true},
		{http.MethodPut, "/v1/orgs/o/actions/secrets/X/repositories/7", maxRequestBytes, true},
		{http.MethodPost, "/v1/nowhere", 2, true},
		{http.MethodPost, "/healthz", maxRequestBytes, false},
		{http.MethodPost, "/openapi.json", -1, false},
		{http.MethodGet, "/v1/orgs/o/actions/secrets/public-key", 2, false},
	} {
		body := &watchedBody{}
		w := serve(tt.method, tt.path, tt.length, body)
		if tt.taken {
			if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "1" || !strings.Contains(w.Body.String(), "request bytes in progress") {
				t.Errorf("%s %s with the budget spent = %d Retry-After %q %s, want 429 Retry-After 1", tt.method, tt.path, w.Code, w.Header().Get("Retry-After"), w.Body)
			}
		} else if w.Code == http.StatusTooManyRequests {
			t.Errorf("%s %s = 429 %s: a body it never reads needs none of the budget", tt.method, tt.path, w.Body)
		}
		if n := body.read.Load(); n != 0 {
			t.Errorf("%s %s (%d): %d bytes of its body read, want none", tt.method, tt.path, w.Code, n)
		}
	}
	close(holder.block) // the body ends short: 400, and the budget is back
	if w := <-held; w.Code != http.StatusBadRequest {
		t.Errorf("the holding request = %d %s, want 400", w.Code, w.Body)
	}
	body := &watchedBody{}
	if w := serve(http.MethodPut, "/v1/repos/octo-org/hello-world/actions/secrets/X", 2, body); w.Code != http.StatusNotImplemented || body.read.Load() != 2 {
		t.Errorf("PUT once the budget is back = %d %s, %d bytes read; want the backend's 501 after reading the body", w.Code, w.Body, body.read.Load())
	}
}

// TestGatewaySelectionRequired: a JSON SetSelectedRepositories must name
// the selection, as GitHub's PUT must: a body without it, or no body, is
// 400 and leaves the repositories as they were; an empty list clears them
// on purpose.
func TestGatewaySelectionRequired(t *testing.T) {
	b := startBroker(t, devConfig(t))
	const secret = "/v1/orgs/octo-org/actions/secrets/SELECTION_KEPT"
	base := "http://" + b.httpAddr
	if code, body := httpDo(t, b.http, http.MethodPut, base+secret, "",
		`{"value":"v","visibility":"selected","selected_repository_ids":[1296269]}`); code != http.StatusCreated {
		t.Fatalf("create: %d %s", code, body)
	}
	selected := func() string {
		t.Helper()
		code, body := httpDo(t, b.http, http.MethodGet, base+secret+"/repositories", "", "")
		if code != http.StatusOK {
			t.Fatalf("list: %d %s", code, body)
		}
		var got struct {
			TotalCount int `json:"total_count"`
		}
		if err := json.Unmarshal([]byte(body), &got); err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(got.TotalCount)
	}
	for _, tt := range []struct {
		name, body string
		code       int
		selected   string // repositories selected afterwards
	}{
		{"no body", "", http.StatusBadRequest, "1"},
		{"an empty object", "{}", http.StatusBadRequest, "1"},
		{"another field only", `{"name":"x"}`, http.StatusBadRequest, "1"},
		// null names no selection: not taken as [], which clears.
		{"ids null", `{"selected_repository_ids":null}`, http.StatusBadRequest, "1"},
		{"names null", `{"selected_repositories":null}`, http.StatusBadRequest, "1"},
		{"ids, lowerCamelCase", `{"selectedRepositoryIds":[1296269,1296270]}`, http.StatusNoContent, "2"},
		{"an empty list clears", `{"selected_repository_ids":[]}`, http.StatusNoContent, "0"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, body := httpDo(t, b.http, http.MethodPut, base+secret+"/repositories", "", tt.body)
			if code != tt.code {
				t.Errorf("PUT %q: %d %s, want %d", tt.body, code, body, tt.code)
			}
			if tt.code == http.StatusBadRequest && !strings.Contains(body, "selected_repository_ids: is required") {
				t.Errorf("PUT %q: %s, want the missing field named", tt.body, body)
			}
			if got := selected(); got != tt.selected {
				t.Errorf("after PUT %q: %s repositories selected, want %s", tt.body, got, tt.selected)
			}
		})
	}
}

// gatewayBehindDoor is the gateway over conn behind admitHTTP, as run puts
// them, with no limits but a 32 MiB body budget and no authentication.
func gatewayBehindDoor(t *testing.T, conn grpc.ClientConnInterface, secret string) http.Handler {
	t.Helper()
	callers := callerKeys{gatewaySecret: secret}
	gw, err := newGateway(t.Context(), conn, callers)
	if err != nil {
		t.Fatal(err)
	}
	door := &frontDoor{keys: callers, log: slog.New(slog.DiscardHandler)}
	return door.admitHTTP(gw, newCallLimits(0, 0, 0, 0), 32<<20)
}
