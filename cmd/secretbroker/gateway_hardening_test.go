package main

import (
	"bufio"
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
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
)

// hardeningSecret is a secret value planted in refused requests; it must
// never come back in an answer or show up in the broker's logs.
const hardeningSecret = "hardening-plaintext-4242"

// gwRequest is one HTTP request to the gateway.
type gwRequest struct {
	method, path string
	header       map[string]string
	body         string
	chunked      bool // send the body without a Content-Length
}

// gwAnswer is the gateway's answer to a gwRequest.
type gwAnswer struct {
	code   int
	header http.Header
	raw    string
	body   map[string]any // the JSON object, when the answer is one
}

// send sends req to the gateway at addr.
func send(t *testing.T, client *http.Client, addr string, req gwRequest) gwAnswer {
	t.Helper()
	var body io.Reader
	if req.body != "" {
		body = strings.NewReader(req.body)
		if req.chunked {
			body = io.MultiReader(body) // unknown length: chunked
		}
	}
	hr, err := http.NewRequest(req.method, "http://"+addr+req.path, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range req.header {
		hr.Header.Set(k, v)
	}
	resp, err := client.Do(hr)
	if err != nil {
		t.Fatalf("%s %s: %v", req.method, req.path, err)
	}
	return answerOf(t, resp)
}

// answerOf reads resp whole and closes its body.
func answerOf(t *testing.T, resp *http.Response) gwAnswer {
	t.Helper()
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	a := gwAnswer{code: resp.StatusCode, header: resp.Header, raw: string(raw)}
	_ = json.Unmarshal(raw, &a.body)
	return a
}

// readAnswer reads from conn the answer to the request whose head was
// sent on it.
func readAnswer(t *testing.T, conn net.Conn, head string) gwAnswer {
	t.Helper()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading the answer to %q: %v", strings.SplitN(head, "\r\n", 2)[0], err)
	}
	return answerOf(t, resp)
}

// dialGateway opens a connection to addr (the caller closes it) whose
// deadline fails the test after 30 s (a gateway that waits for a body it
// should have refused) instead of hanging it.
func dialGateway(t *testing.T, addr string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	return conn
}

// sendRaw writes head (a request line and headers, without the blank line
// that ends them) and then body to a new connection to addr, and reads the
// answer while the body is still being written: a gateway that refuses a
// request by its headers answers without reading the body.
func sendRaw(t *testing.T, addr, head string, body io.Reader) gwAnswer {
	t.Helper()
	conn := dialGateway(t, addr)
	defer conn.Close()
	go func() {
		// Write errors are expected once the gateway has answered and
		// closed the connection.
		if _, err := io.WriteString(conn, head+"\r\n\r\n"); err != nil {
			return
		}
		if body != nil {
			_, _ = io.Copy(conn, body)
		}
	}()
	return readAnswer(t, conn, head)
}

// chunkedBody is n bytes of JSON-ish filler in HTTP/1.1 chunked encoding,
// with the final chunk.
func chunkedBody(n int) io.Reader {
	const chunk = 64 << 10
	var parts []io.Reader
	for n > 0 {
		size := min(n, chunk)
		parts = append(parts, strings.NewReader(fmt.Sprintf("%x\r\n%s\r\n", size, strings.Repeat(" ", size))))
		n -= size
	}
	parts = append(parts, strings.NewReader("0\r\n\r\n"))
	return io.MultiReader(parts...)
}

// checkErrorShape checks that a is the gateway's usual error answer:
// HTTP status code, a JSON body {"code": grpcCode, "message": ..., "details":
// [...]} whose message holds every one of msg.
func checkErrorShape(t *testing.T, a gwAnswer, code int, grpcCode codes.Code, msg ...string) {
	t.Helper()
	if a.code != code {
		t.Errorf("status %d, want %d; body %s", a.code, code, a.raw)
	}
	if ct := a.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	if a.body == nil {
		t.Fatalf("body is not a JSON object: %q", a.raw)
	}
	if a.body["code"] != float64(grpcCode) {
		t.Errorf("code %v, want %d (%s); body %s", a.body["code"], grpcCode, grpcCode, a.raw)
	}
	if _, ok := a.body["details"].([]any); !ok {
		t.Errorf("no details array: %s", a.raw)
	}
	m, _ := a.body["message"].(string)
	for _, want := range msg {
		if !strings.Contains(m, want) {
			t.Errorf("message %q lacks %q", m, want)
		}
	}
	if strings.Contains(a.raw, hardeningSecret) {
		t.Errorf("answer holds the planted secret value: %s", a.raw)
	}
}

// secretServiceCalls counts the broker's access log lines for
// SecretService calls: a refused request must not add one.
func secretServiceCalls(b *broker) int {
	n := 0
	for line := range strings.Lines(b.logs.String()) {
		if strings.Contains(line, `"msg":"gRPC call"`) && strings.Contains(line, "/secretbroker.v1.SecretService/") {
			n++
		}
	}
	return n
}

// TestGatewayHardening drives a dev broker's JSON gateway with requests
// that it must refuse before the gRPC server sees them, and with requests
// just inside what it accepts.
func TestGatewayHardening(t *testing.T) {
	b := startBroker(t, devConfig(t))
	c := secretbrokerv1.NewSecretServiceClient(b.conn)
	jsonCT := map[string]string{"Content-Type": "application/json"}
	putBody := `{"value":"` + hardeningSecret + `"}`
	orgPut := `{"value":"` + hardeningSecret + `","visibility":"selected","selected_repository_ids":[1296269]}`
	// Created for the bodiless PUT and DELETE of a selected repository.
	if a := send(t, b.http, b.httpAddr, gwRequest{method: http.MethodPut, path: "/v1/orgs/octo-org/actions/secrets/HARDEN_ORG", header: jsonCT, body: orgPut}); a.code != http.StatusCreated {
		t.Fatalf("PUT HARDEN_ORG = %d %s", a.code, a.raw)
	}

	tests := []struct {
		name string
		req  gwRequest
		code int
		// For an error: its gRPC code and words of its message.
		grpcCode codes.Code
		msg      []string
		// refused: the request must not reach the gRPC server.
		refused bool
		// notWritten: a secret the request must not have written.
		notWritten string
		// notInAnswer: a value from the body the answer must not quote.
		notInAnswer string
	}{
		{
			name: "text/plain batchPut (CORS simple request)",
			req: gwRequest{method: http.MethodPost, path: "/v1/secrets:batchPut", header: map[string]string{"Content-Type": "text/plain"},
				body: `{"requests":[{"name":"repos/octo-org/hello-world/actions/secrets/HARDEN_PLAIN","value":"` + hardeningSecret + `"}]}`},
			code: http.StatusUnsupportedMediaType, grpcCode: codes.InvalidArgument, msg: []string{"application/json"},
			refused: true, notWritten: "repos/octo-org/hello-world/actions/secrets/HARDEN_PLAIN",
		},
		{
			name: "form PUT (curl -d)",
			req: gwRequest{method: http.MethodPut, path: "/v1/repos/octo-org/hello-world/actions/secrets/HARDEN_FORM",
				header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, body: putBody},
			code: http.StatusUnsupportedMediaType, grpcCode: codes.InvalidArgument, msg: []string{"application/json"},
			refused: true, notWritten: "repos/octo-org/hello-world/actions/secrets/HARDEN_FORM",
		},
		{
			name: "body without Content-Type",
			req:  gwRequest{method: http.MethodPut, path: "/v1/repos/octo-org/hello-world/actions/secrets/HARDEN_NONE", body: putBody},
			code: http.StatusUnsupportedMediaType, grpcCode: codes.InvalidArgument, msg: []string{"application/json"},
			refused: true, notWritten: "repos/octo-org/hello-world/actions/secrets/HARDEN_NONE",
		},
		{
			name: "chunked body without Content-Type",
			req:  gwRequest{method: http.MethodPost, path: "/v1/secrets:batchDelete", body: `{"names":["orgs/octo-org/actions/secrets/HARDEN_ORG"]}`, chunked: true},
			code: http.StatusUnsupportedMediaType, grpcCode: codes.InvalidArgument, msg: []string{"application/json"},
			refused: true,
		},
		{
			name: "PATCH with a text body",
			req: gwRequest{method: http.MethodPatch, path: "/v1/orgs/octo-org/actions/secrets/HARDEN_ORG",
				header: map[string]string{"Content-Type": "text/plain"}, body: putBody},
			code: http.StatusUnsupportedMediaType, grpcCode: codes.InvalidArgument, msg: []string{"application/json"}, refused: true,
		},
		{
			name: "text/plain Content-Type on an empty body",
			req: gwRequest{method: http.MethodPut, path: "/v1/orgs/octo-org/actions/secrets/HARDEN_ORG/repositories/1296270",
				header: map[string]string{"Content-Type": "text/plain"}},
			code: http.StatusUnsupportedMediaType, grpcCode: codes.InvalidArgument, msg: []string{"application/json"}, refused: true,
		},
		{
			name: "JSON with any charset parameter",
			req: gwRequest{method: http.MethodPut, path: "/v1/repos/octo-org/hello-world/actions/secrets/HARDEN_LATIN1",
				header: map[string]string{"Content-Type": "application/json; charset=iso-8859-1"}, body: putBody},
			code: http.StatusCreated,
		},
		{
			name: "JSON media type in capitals with charset",
			req: gwRequest{method: http.MethodPut, path: "/v1/repos/octo-org/hello-world/actions/secrets/HARDEN_CAPS",
				header: map[string]string{"Content-Type": "Application/JSON; Charset=UTF-8"}, body: putBody},
			code: http.StatusCreated,
		},
		{
			name: "chunked JSON body",
			req: gwRequest{method: http.MethodPut, path: "/v1/repos/octo-org/hello-world/actions/secrets/HARDEN_CHUNKED",
				header: jsonCT, body: putBody, chunked: true},
			code: http.StatusCreated,
		},
		{
			name: "bodiless PUT without Content-Type",
			req:  gwRequest{method: http.MethodPut, path: "/v1/orgs/octo-org/actions/secrets/HARDEN_ORG/repositories/1296270"},
			code: http.StatusNoContent,
		},
		{
			name: "bodiless DELETE without Content-Type",
			req:  gwRequest{method: http.MethodDelete, path: "/v1/orgs/octo-org/actions/secrets/HARDEN_ORG/repositories/1296270"},
			code: http.StatusNoContent,
		},
		{
			name: "unknown JSON field",
			req: gwRequest{method: http.MethodPut, path: "/v1/repos/octo-org/hello-world/actions/secrets/HARDEN_UNKNOWN",
				header: jsonCT, body: `{"value":"` + hardeningSecret + `","bogus":1}`},
			code: http.StatusBadRequest, grpcCode: codes.InvalidArgument, msg: []string{`unknown field "bogus"`}, refused: true,
			notWritten: "repos/octo-org/hello-world/actions/secrets/HARDEN_UNKNOWN",
		},
		{
			name: "wrong JSON type, a number for the value",
			req: gwRequest{method: http.MethodPut, path: "/v1/repos/octo-org/hello-world/actions/secrets/HARDEN_TYPE",
				header: jsonCT, body: `{"value":4242}`},
			code: http.StatusBadRequest, grpcCode: codes.InvalidArgument, msg: []string{"invalid value for string field value"}, refused: true,
			notWritten: "repos/octo-org/hello-world/actions/secrets/HARDEN_TYPE", notInAnswer: "4242",
		},
		{
			name: "wrong JSON type, a list for the value",
			req: gwRequest{method: http.MethodPut, path: "/v1/repos/octo-org/hello-world/actions/secrets/HARDEN_TYPE",
				header: jsonCT, body: `{"value":["` + hardeningSecret + `"]}`},
			code: http.StatusBadRequest, grpcCode: codes.InvalidArgument, msg: []string{"invalid value for string field value"}, refused: true,
		},
		{
			name: "wrong JSON type, a number for the key_id: named as the API names it",
			req: gwRequest{method: http.MethodPut, path: "/v1/repos/octo-org/hello-world/actions/secrets/HARDEN_TYPE",
				header: jsonCT, body: `{"encrypted_value":"c2VjcmV0","key_id":529008266833321555}`},
			code: http.StatusBadRequest, grpcCode: codes.InvalidArgument, msg: []string{"invalid value for string field key_id"}, refused: true,
		},
		{
			name: "not JSON",
			req: gwRequest{method: http.MethodPut, path: "/v1/repos/octo-org/hello-world/actions/secrets/HARDEN_TYPE",
				header: jsonCT, body: `{"value":` + hardeningSecret + `}`},
			code: http.StatusBadRequest, grpcCode: codes.InvalidArgument, msg: []string{"not valid JSON"}, refused: true,
		},
		{
			name: "data after the JSON value",
			req: gwRequest{method: http.MethodPut, path: "/v1/repos/octo-org/hello-world/actions/secrets/HARDEN_TRAILING",
				header: jsonCT, body: `{"value":"` + hardeningSecret + `"}{"value":"x"}`},
			code: http.StatusBadRequest, grpcCode: codes.InvalidArgument, msg: []string{"more than one JSON value"}, refused: true,
			notWritten: "repos/octo-org/hello-world/actions/secrets/HARDEN_TRAILING",
		},
		{
			name: "garbage after the JSON value",
			req: gwRequest{method: http.MethodPut, path: "/v1/repos/octo-org/hello-world/actions/secrets/HARDEN_TRAILING",
				header: jsonCT, body: `{"value":"` + hardeningSecret + `"}xx`},
			code: http.StatusBadRequest, grpcCode: codes.InvalidArgument, msg: []string{"more than one JSON value"}, refused: true,
			notWritten: "repos/octo-org/hello-world/actions/secrets/HARDEN_TRAILING",
		},
		{
			name: "white space after the JSON value",
			req: gwRequest{method: http.MethodPut, path: "/v1/repos/octo-org/hello-world/actions/secrets/HARDEN_SPACE",
				header: jsonCT, body: `{"value":"` + hardeningSecret + `"}` + " \r\n\t "},
			code: http.StatusCreated,
		},
		{
			name: "invalid UTF-8 in the path",
			req: gwRequest{method: http.MethodPut, path: "/v1/repos/octo-org/hello-world/environments/%ff/secrets/X",
				header: jsonCT, body: putBody},
			code: http.StatusBadRequest, grpcCode: codes.InvalidArgument, msg: []string{"UTF-8"}, refused: true,
		},
		{
			name: "invalid UTF-8 in a GET path",
			req:  gwRequest{method: http.MethodGet, path: "/v1/repos/octo-org/hello-world/environments/prod%c3/secrets"},
			code: http.StatusBadRequest, grpcCode: codes.InvalidArgument, msg: []string{"UTF-8"}, refused: true,
		},
		{
			name: "invalid UTF-8 in the query",
			req:  gwRequest{method: http.MethodGet, path: "/v1/orgs/octo-org/actions/secrets?page_token=%ff"},
			code: http.StatusBadRequest, grpcCode: codes.InvalidArgument, msg: []string{"UTF-8"}, refused: true,
		},
		{
			name: "malformed query",
			req:  gwRequest{method: http.MethodGet, path: "/v1/orgs/octo-org/actions/secrets?page_token=%zz"},
			code: http.StatusBadRequest, grpcCode: codes.InvalidArgument, msg: []string{"query"}, refused: true,
		},
		{
			name: "POST to the public key",
			req:  gwRequest{method: http.MethodPost, path: "/v1/orgs/octo-org/actions/secrets/public-key", header: jsonCT, body: `{}`},
			code: http.StatusMethodNotAllowed, grpcCode: codes.Unimplemented, msg: []string{"GET"}, refused: true,
		},
		{
			name: "PATCH on a secret",
			req:  gwRequest{method: http.MethodPatch, path: "/v1/orgs/octo-org/actions/secrets/HARDEN_ORG", header: jsonCT, body: putBody},
			code: http.StatusMethodNotAllowed, grpcCode: codes.Unimplemented, msg: []string{"DELETE", "GET", "PUT"}, refused: true,
		},
		{
			name: "unknown path",
			req:  gwRequest{method: http.MethodGet, path: "/v1/nowhere"},
			code: http.StatusNotFound, grpcCode: codes.NotFound, refused: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := secretServiceCalls(b)
			a := send(t, b.http, b.httpAddr, tt.req)
			if tt.code >= 400 {
				checkErrorShape(t, a, tt.code, tt.grpcCode, tt.msg...)
			} else if a.code != tt.code {
				t.Errorf("status %d, want %d; body %s", a.code, tt.code, a.raw)
			}
			if tt.notInAnswer != "" && strings.Contains(a.raw, tt.notInAnswer) {
				t.Errorf("the answer quotes %q from the body: %s", tt.notInAnswer, a.raw)
			}
			if after := secretServiceCalls(b); tt.refused && after != before {
				t.Errorf("the request reached the gRPC server (%d SecretService calls logged)", after-before)
			} else if !tt.refused && after == before {
				t.Errorf("the request never reached the gRPC server")
			}
			if tt.notWritten != "" {
				if _, err := c.GetSecret(t.Context(), &secretbrokerv1.GetSecretRequest{Name: tt.notWritten}); status.Code(err) != codes.NotFound {
					t.Errorf("GetSecret(%s) = %v, want NotFound: the refused request wrote it", tt.notWritten, err)
				}
			}
		})
	}

	t.Run("405 Allow header", func(t *testing.T) {
		for _, tt := range []struct{ method, path, allow string }{
			// PUT and DELETE: "public-key" could be a secret's name, as
			// far as routing goes.
			{http.MethodPost, "/v1/orgs/octo-org/actions/secrets/public-key", "DELETE, GET, PUT"},
			{http.MethodPut, "/v1/orgs/octo-org/actions/secrets", "GET"},
			{http.MethodPatch, "/v1/orgs/octo-org/actions/secrets/HARDEN_ORG", "DELETE, GET, PUT"},
			{http.MethodGet, "/v1/secrets:batchPut", "POST"},
			{http.MethodDelete, "/v1/repos/octo-org/hello-world/environments/prod%2Feu/secrets", "GET"},
			{http.MethodPost, "/openapi.json", "GET"},
		} {
			a := send(t, b.http, b.httpAddr, gwRequest{method: tt.method, path: tt.path})
			if a.code != http.StatusMethodNotAllowed || a.header.Get("Allow") != tt.allow {
				t.Errorf("%s %s = %d Allow %q, want 405 Allow %q", tt.method, tt.path, a.code, a.header.Get("Allow"), tt.allow)
			}
		}
	})

	t.Run("escaped percent sign", func(t *testing.T) {
		// Over gRPC, ".../environments/prod%252Feu/..." is the environment
		// "prod%2Feu", which the demo organization does not have; it is
		// not "prod/eu". The gateway must mean the same.
		const name = "repos/octo-org/hello-world/environments/prod%252Feu/secrets/HARDEN_PCT"
		_, grpcErr := c.PutSecret(t.Context(), &secretbrokerv1.PutSecretRequest{
			Name: name, Payload: &secretbrokerv1.PutSecretRequest_Value{Value: hardeningSecret},
		})
		a := send(t, b.http, b.httpAddr, gwRequest{method: http.MethodPut, path: "/v1/" + name, header: jsonCT, body: putBody})
		if want := runtime.HTTPStatusFromCode(status.Code(grpcErr)); a.code != want && !(grpcErr == nil && a.code == http.StatusCreated) {
			t.Errorf("gateway PUT = %d %s; gRPC PutSecret = %v (HTTP %d)", a.code, a.raw, grpcErr, want)
		}
		if grpcErr != nil {
			if m, _ := a.body["message"].(string); m != status.Convert(grpcErr).Message() {
				t.Errorf("gateway message %q, gRPC message %q", m, status.Convert(grpcErr).Message())
			}
		}
		for _, env := range []string{"prod%2Feu", "staging"} {
			got, err := c.GetSecret(t.Context(), &secretbrokerv1.GetSecretRequest{
				Name: "repos/octo-org/hello-world/environments/" + env + "/secrets/HARDEN_PCT"})
			if status.Code(err) != codes.NotFound {
				t.Errorf("environment %s holds HARDEN_PCT (%v, %v): the gateway decoded %%25 twice", env, got, err)
			}
		}
		// "%2F" is still the environment "prod/eu".
		a = send(t, b.http, b.httpAddr, gwRequest{method: http.MethodPut,
			path: "/v1/repos/octo-org/hello-world/environments/prod%2Feu/secrets/HARDEN_SLASH", header: jsonCT, body: putBody})
		if a.code != http.StatusCreated {
			t.Fatalf("PUT prod%%2Feu = %d %s", a.code, a.raw)
		}
		if _, err := c.GetSecret(t.Context(), &secretbrokerv1.GetSecretRequest{
			Name: "repos/octo-org/hello-world/environments/prod%2Feu/secrets/HARDEN_SLASH"}); err != nil {
			t.Errorf("GetSecret over gRPC after a gateway PUT: %v", err)
		}
	})

	t.Run("reserved metadata headers", func(t *testing.T) {
		for _, req := range []gwRequest{
			{method: http.MethodGet, path: "/v1/orgs/octo-org/actions/secrets/public-key"},
			{method: http.MethodPut, path: "/v1/repos/octo-org/hello-world/actions/secrets/HARDEN_HEADERS", body: putBody},
		} {
			req.header = map[string]string{
				"Content-Type":                         "application/json",
				"Grpc-Metadata-X-Secretbroker-Caller":  "203.0.113.9",
				"Grpc-Metadata-X-Secretbroker-Gateway": "forged",
				"Grpc-Metadata-X-Secretbroker-Other":   "forged",
			}
			if a := send(t, b.http, b.httpAddr, req); a.code/100 != 2 {
				t.Errorf("%s %s with planted headers = %d %s", req.method, req.path, a.code, a.raw)
			}
		}
	})

	t.Run("answer headers", func(t *testing.T) {
		// The gRPC transport's content-type is not an answer's header: a
		// JSON caller gets the JSON Content-Type and nothing in its name.
		a := send(t, b.http, b.httpAddr, gwRequest{method: http.MethodGet, path: "/v1/repos/octo-org/hello-world/actions/secrets/public-key"})
		if a.code != http.StatusOK {
			t.Fatalf("GET public-key = %d %s", a.code, a.raw)
		}
		if got := a.header.Get("Content-Type"); got != "application/json" {
			t.Errorf("Content-Type = %q, want application/json", got)
		}
		for k, v := range a.header {
			if strings.HasPrefix(k, runtime.MetadataHeaderPrefix) {
				t.Errorf("answer header %s: %q, want no gRPC metadata the handler did not set", k, v)
			}
		}
	})

	t.Run("oversized body", func(t *testing.T) {
		before := secretServiceCalls(b)
		// Refused by its Content-Length, before any of it is read.
		a := sendRaw(t, b.httpAddr, fmt.Sprintf("PUT /v1/repos/octo-org/hello-world/actions/secrets/HARDEN_BIG HTTP/1.1\r\n"+
			"Host: %s\r\nContent-Type: application/json\r\nContent-Length: %d", b.httpAddr, maxRequestBytes+1), nil)
		checkErrorShape(t, a, http.StatusRequestEntityTooLarge, codes.InvalidArgument, "request body is larger than the 16 MiB limit")
		// Chunked: refused once the limit is read. (run may bound the
		// body more tightly than the gateway does.)
		a = sendRaw(t, b.httpAddr, fmt.Sprintf("PUT /v1/repos/octo-org/hello-world/actions/secrets/HARDEN_BIG HTTP/1.1\r\n"+
			"Host: %s\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked", b.httpAddr), chunkedBody(maxRequestBytes+1))
		checkErrorShape(t, a, http.StatusRequestEntityTooLarge, codes.InvalidArgument)
		if m, _ := a.body["message"].(string); !regexp.MustCompile(`^request body is larger than the \d+ MiB limit$`).MatchString(m) {
			t.Errorf("message %q does not name the limit", m)
		}
		if after := secretServiceCalls(b); after != before {
			t.Errorf("an oversized request reached the gRPC server")
		}
	})

	t.Run("openapi and healthz", func(t *testing.T) {
		for _, path := range []string{"/openapi.json", "/healthz"} {
			if a := send(t, b.http, b.httpAddr, gwRequest{method: http.MethodGet, path: path}); a.code != http.StatusOK || a.body == nil {
				t.Errorf("GET %s = %d %.200s", path, a.code, a.raw)
			}
		}
	})

	b.stop(t, 10*time.Second)
	if strings.Contains(b.logs.String(), hardeningSecret) {
		t.Error("the broker's logs hold the planted secret value")
	}
}

// backendCall is one call that reached the fake gRPC server.
type backendCall struct {
	method string
	req    proto.Message
	md     metadata.MD
	caller string // the pacer's key the front door makes of the call
}

// fakeBackend is the gateway over a loopback gRPC server whose
// SecretService records each call and answers Unimplemented.
type fakeBackend struct {
	addr    string // the gateway's
	callers callerKeys
	mu      sync.Mutex
	calls   []backendCall
}

type unimplementedSecretService struct {
	secretbrokerv1.UnimplementedSecretServiceServer
}

func startFakeBackend(t *testing.T) *fakeBackend {
	t.Helper()
	f := &fakeBackend{callers: callerKeys{gatewaySecret: "fake-gateway-secret"}}
	door := &frontDoor{keys: f.callers, log: slog.New(slog.DiscardHandler)}
	conn := serveUnimplemented(t, grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		_, fairness, _, err := door.authenticate(ctx)
		if err != nil {
			fairness = "refused: " + err.Error()
		}
		f.mu.Lock()
		f.calls = append(f.calls, backendCall{info.FullMethod, proto.Clone(req.(proto.Message)), md.Copy(), fairness})
		f.mu.Unlock()
		return handler(ctx, req)
	}))
	gw, err := newGateway(t.Context(), conn, f.callers)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(gw)
	t.Cleanup(hs.Close)
	f.addr = hs.Listener.Addr().String()
	return f
}

// take returns and forgets the calls recorded so far.
func (f *fakeBackend) take() []backendCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	calls := f.calls
	f.calls = nil
	return calls
}

// TestGatewayHardeningBackend checks, on a gRPC server that records what
// reaches it, the request each gateway request becomes, or that it
// becomes none.
func TestGatewayHardeningBackend(t *testing.T) {
	f := startFakeBackend(t)
	client := &http.Client{Timeout: 30 * time.Second}
	jsonCT := map[string]string{"Content-Type": "application/json"}

	t.Run("path variables", func(t *testing.T) {
		for _, tt := range []struct {
			method, path string
			wantRPC      string
			want         func(proto.Message) string // the field the path sets
			wantValue    string
		}{
			{http.MethodPut, "/v1/repos/octo-org/hello-world/environments/prod%252Feu/secrets/X", "PutSecret",
				func(m proto.Message) string { return m.(*secretbrokerv1.PutSecretRequest).GetName() },
				"repos/octo-org/hello-world/environments/prod%252Feu/secrets/X"},
			{http.MethodPut, "/v1/repos/octo-org/hello-world/environments/prod%2Feu/secrets/X", "PutSecret",
				func(m proto.Message) string { return m.(*secretbrokerv1.PutSecretRequest).GetName() },
				"repos/octo-org/hello-world/environments/prod%2Feu/secrets/X"},
			{http.MethodGet, "/v1/repos/octo-org/hello-world/environments/prod%2feu%25/secrets/X", "GetSecret",
				func(m proto.Message) string { return m.(*secretbrokerv1.GetSecretRequest).GetName() },
				"repos/octo-org/hello-world/environments/prod%2feu%25/secrets/X"},
			{http.MethodGet, "/v1/repos/octo-org/hello-world/environments/caf%C3%A9/secrets", "ListSecrets",
				func(m proto.Message) string { return m.(*secretbrokerv1.ListSecretsRequest).GetParent() },
				"repos/octo-org/hello-world/environments/caf%C3%A9"},
			{http.MethodGet, "/v1/repos/octo-org/hello-world/environments/a%20b/secrets/public-key", "GetPublicKey",
				func(m proto.Message) string { return m.(*secretbrokerv1.GetPublicKeyRequest).GetParent() },
				"repos/octo-org/hello-world/environments/a%20b"},
			{http.MethodDelete, "/v1/orgs/octo-org/actions/secrets/X%2525/repositories/%31%32%33", "RemoveSelectedRepository",
				func(m proto.Message) string {
					r := m.(*secretbrokerv1.RemoveSelectedRepositoryRequest)
					return fmt.Sprintf("%s %d %q", r.GetName(), r.GetRepositoryId(), r.GetRepository())
				},
				`orgs/octo-org/actions/secrets/X%2525 0 "123"`},
			{http.MethodPut, "/v1/orgs/octo-org/agents/secrets/X/repositories/hello-world", "AddSelectedRepository",
				func(m proto.Message) string {
					r := m.(*secretbrokerv1.AddSelectedRepositoryRequest)
					return fmt.Sprintf("%s %d %q", r.GetName(), r.GetRepositoryId(), r.GetRepository())
				},
				`orgs/octo-org/agents/secrets/X 0 "hello-world"`},
		} {
			a := send(t, client, f.addr, gwRequest{method: tt.method, path: tt.path, header: jsonCT})
			calls := f.take()
			if len(calls) != 1 || calls[0].method != "/secretbroker.v1.SecretService/"+tt.wantRPC {
				t.Errorf("%s %s (%d) made calls %v, want one %s", tt.method, tt.path, a.code, calls, tt.wantRPC)
				continue
			}
			if got := tt.want(calls[0].req); got != tt.wantValue {
				t.Errorf("%s %s reached gRPC as %q, want %q", tt.method, tt.path, got, tt.wantValue)
			}
		}
	})

	t.Run("metadata", func(t *testing.T) {
		send(t, client, f.addr, gwRequest{method: http.MethodGet, path: "/v1/orgs/octo-org/actions/secrets/public-key", header: map[string]string{
			"Grpc-Metadata-X-Secretbroker-Caller":     "203.0.113.9",
			"Grpc-Metadata-X-Secretbroker-Gateway":    "forged",
			"Grpc-Metadata-x-secretbroker-other":      "forged",
			"Grpc-Metadata-X-Secretbroker-Caller-Bin": "AAEC",
			"Grpc-Metadata-Request-Tag":               "kept",
			"Grpc-Metadata-Authorization":             "Bearer second-token",
			"Authorization":                           "Bearer hardening-token",
		}})
		calls := f.take()
		if len(calls) != 1 {
			t.Fatalf("%d calls, want 1", len(calls))
		}
		md := calls[0].md
		if got := md.Get(mdGateway); !slices.Equal(got, []string{f.callers.gatewaySecret}) {
			t.Errorf("%s = %q, want only the gateway's secret", mdGateway, got)
		}
		if got := md.Get(mdCaller); !slices.Equal(got, []string{"127.0.0.1"}) {
			t.Errorf("%s = %q, want only the HTTP client's address", mdCaller, got)
		}
		if calls[0].caller != "127.0.0.1" {
			t.Errorf("the pacer's caller is %q, want 127.0.0.1", calls[0].caller)
		}
		for k := range md {
			if strings.HasPrefix(k, reservedMetadataPrefix) && k != mdCaller && k != mdGateway {
				t.Errorf("planted metadata %s = %q reached the gRPC server", k, md.Get(k))
			}
		}
		if got := md.Get("authorization"); !slices.Equal(got, []string{"Bearer hardening-token"}) {
			t.Errorf("authorization = %q, want the bearer token", got)
		}
		if got := md.Get("request-tag"); !slices.Equal(got, []string{"kept"}) {
			t.Errorf("request-tag = %q, want other Grpc-Metadata- headers forwarded", got)
		}
		for k, v := range md {
			if strings.HasPrefix(k, runtime.MetadataPrefix) {
				t.Errorf("HTTP header %s = %q reached the gRPC server; no standard header is forwarded", k, v)
			}
			if k != "authorization" && slices.ContainsFunc(v, func(s string) bool { return strings.Contains(s, "hardening-token") }) {
				t.Errorf("metadata %s holds the bearer token; only authorization may", k)
			}
		}
	})

	t.Run("refused requests never reach gRPC", func(t *testing.T) {
		for _, tt := range []struct {
			name string
			req  gwRequest
			code int
		}{
			{"text/plain", gwRequest{method: http.MethodPost, path: "/v1/secrets:batchPut", header: map[string]string{"Content-Type": "text/plain"}, body: `{}`}, http.StatusUnsupportedMediaType},
			{"two Content-Types", gwRequest{method: http.MethodPost, path: "/v1/secrets:batchPut", header: map[string]string{"Content-Type": "application/json, text/plain"}, body: `{}`}, http.StatusUnsupportedMediaType},
			{"form POST to a GET route", gwRequest{method: http.MethodPost, path: "/v1/orgs/octo-org/actions/secrets", header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, body: "page_size=1"}, http.StatusUnsupportedMediaType},
			{"empty form POST to a GET route", gwRequest{method: http.MethodPost, path: "/v1/orgs/octo-org/actions/secrets", header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}}, http.StatusUnsupportedMediaType},
			{"bodiless POST to a GET route", gwRequest{method: http.MethodPost, path: "/v1/orgs/octo-org/actions/secrets"}, http.StatusMethodNotAllowed},
			{"invalid UTF-8", gwRequest{method: http.MethodGet, path: "/v1/orgs/octo-org/actions/secrets/%C0%AF"}, http.StatusBadRequest},
			{"invalid UTF-8 query key", gwRequest{method: http.MethodGet, path: "/v1/orgs/octo-org/actions/secrets?%fe=1"}, http.StatusBadRequest},
			{"unknown field", gwRequest{method: http.MethodPost, path: "/v1/secrets:batchPut", header: jsonCT, body: `{"bogus":[]}`}, http.StatusBadRequest},
		} {
			a := send(t, client, f.addr, tt.req)
			if a.code != tt.code || a.body["code"] == nil {
				t.Errorf("%s: %d %s, want %d in the error shape", tt.name, a.code, a.raw, tt.code)
			}
			if calls := f.take(); len(calls) != 0 {
				t.Errorf("%s reached the gRPC server: %v", tt.name, calls)
			}
		}
	})

	t.Run("body size limit", func(t *testing.T) {
		// Exactly the limit is read and decoded: JSON followed by blanks.
		body := `{"requests":[]}`
		body += strings.Repeat(" ", maxRequestBytes-len(body))
		send(t, client, f.addr, gwRequest{method: http.MethodPost, path: "/v1/secrets:batchPut", header: jsonCT, body: body})
		if calls := f.take(); len(calls) != 1 {
			t.Errorf("a body of exactly maxRequestBytes made %d calls, want 1", len(calls))
		}
		for _, tt := range []struct {
			name string
			head string
			body io.Reader
		}{
			{"Content-Length", fmt.Sprintf("Content-Length: %d", maxRequestBytes+1), nil},
			{"chunked", "Transfer-Encoding: chunked", chunkedBody(maxRequestBytes + 1)},
		} {
			a := sendRaw(t, f.addr, "POST /v1/secrets:batchPut HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"+tt.head, tt.body)
			checkErrorShape(t, a, http.StatusRequestEntityTooLarge, codes.InvalidArgument, "request body is larger than the 16 MiB limit")
			if calls := f.take(); len(calls) != 0 {
				t.Errorf("%s: an oversized body reached the gRPC server", tt.name)
			}
		}
	})
}

// TestGatewayHeaderMatchers checks which HTTP headers become a call's
// metadata (incomingHeader) and which header metadata becomes an answer's
// headers (outgoingHeader).
func TestGatewayHeaderMatchers(t *testing.T) {
	if !strings.HasPrefix(mdCaller, reservedMetadataPrefix) || !strings.HasPrefix(mdGateway, reservedMetadataPrefix) {
		t.Fatalf("%s and %s must start with %s for the gateway to drop callers' copies", mdCaller, mdGateway, reservedMetadataPrefix)
	}
	matchers := map[string]func(string) (string, bool){"incomingHeader": incomingHeader, "outgoingHeader": outgoingHeader}
	for _, tt := range []struct {
		matcher string
		key     string
		want    string // "" for dropped
	}{
		{"incomingHeader", "Grpc-Metadata-X-Secretbroker-Caller", ""},
		{"incomingHeader", "Grpc-Metadata-X-Secretbroker-Gateway", ""},
		{"incomingHeader", "grpc-metadata-x-secretbroker-gateway", ""},
		{"incomingHeader", "Grpc-Metadata-X-SECRETBROKER-Anything", ""},
		{"incomingHeader", "Grpc-Metadata-X-Secretbroker-Caller-Bin", ""},
		{"incomingHeader", "Grpc-Metadata-Authorization", ""},
		{"incomingHeader", "grpc-metadata-AUTHORIZATION", ""},
		{"incomingHeader", "Grpc-Metadata-Authorization-Extra", "Authorization-Extra"},
		{"incomingHeader", "X-Secretbroker-Caller", ""}, // not forwarded by the default matcher either
		{"incomingHeader", "Grpc-Metadata-X-Secretbrokerage", "X-Secretbrokerage"},
		{"incomingHeader", "Grpc-Metadata-Request-Tag", "Request-Tag"},
		{"incomingHeader", "Authorization", ""}, // reaches the server as "authorization" only
		{"incomingHeader", "Content-Type", ""},
		{"incomingHeader", "User-Agent", ""},
		{"incomingHeader", "Grpc-Metadata-Grpcgateway-Authorization", ""},
		{"incomingHeader", "X-Other", ""},
		{"outgoingHeader", "content-type", ""}, // the gRPC transport's, not the answer's
		{"outgoingHeader", "x-request-tag", "Grpc-Metadata-x-request-tag"},
		{"outgoingHeader", "content-length", "Grpc-Metadata-content-length"},
	} {
		got, ok := matchers[tt.matcher](tt.key)
		if ok != (tt.want != "") || got != tt.want {
			t.Errorf("%s(%q) = %q, %v; want %q", tt.matcher, tt.key, got, ok, tt.want)
		}
	}
}

func TestGatewayRetryAfter(t *testing.T) {
	retry := func(c codes.Code, d time.Duration) error {
		st, err := status.New(c, "slow down").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(d)})
		if err != nil {
			t.Fatal(err)
		}
		return st.Err()
	}
	for _, tt := range []struct {
		name       string
		err        error
		code       int
		retryAfter string // "" for none
	}{
		{"1.2s", retry(codes.ResourceExhausted, 1200*time.Millisecond), http.StatusTooManyRequests, "2"},
		{"exactly 3s", retry(codes.Unavailable, 3*time.Second), http.StatusServiceUnavailable, "3"},
		{"1ns", retry(codes.Unavailable, time.Nanosecond), http.StatusServiceUnavailable, "1"},
		{"zero", retry(codes.ResourceExhausted, 0), http.StatusTooManyRequests, "0"},
		{"negative", retry(codes.ResourceExhausted, -time.Second), http.StatusTooManyRequests, "0"},
		{"wrapped in an HTTP status", httpError(http.StatusTeapot, retry(codes.ResourceExhausted, 90*time.Second)), http.StatusTeapot, "90"},
		{"no RetryInfo", status.Error(codes.ResourceExhausted, "slow down"), http.StatusTooManyRequests, ""},
		{"not a status", fmt.Errorf("plain"), http.StatusInternalServerError, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			r := httptest.NewRequest(http.MethodGet, "/v1/orgs/o/actions/secrets", nil)
			errorWithRetryAfter(t.Context(), runtime.NewServeMux(), &runtime.JSONPb{}, w, r, tt.err)
			if w.Code != tt.code {
				t.Errorf("status %d, want %d", w.Code, tt.code)
			}
			got, ok := w.Header()["Retry-After"]
			if tt.retryAfter == "" && ok {
				t.Errorf("Retry-After %q, want none", got)
			}
			if tt.retryAfter != "" && !slices.Equal(got, []string{tt.retryAfter}) {
				t.Errorf("Retry-After %q, want %q", got, tt.retryAfter)
			}
			var body map[string]any
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body["code"] == nil || body["message"] == nil {
				t.Errorf("body %q is not the default error shape (%v)", w.Body, err)
			}
		})
	}
}

func TestGatewayContentType(t *testing.T) {
	for _, tt := range []struct {
		method, contentType string // "" for none
		length              int64
		ok                  bool
	}{
		{http.MethodPost, "application/json", 2, true},
		{http.MethodPut, "application/json;charset=utf-8", 2, true},
		{http.MethodPatch, "APPLICATION/JSON; CHARSET=UTF-8", 2, true},
		{http.MethodPut, "application/json", -1, true},
		{http.MethodPut, "application/json", 0, true},
		{http.MethodPut, "", 0, true},
		{http.MethodDelete, "", 0, true},
		{http.MethodDelete, "text/plain", 10, true}, // DELETE bodies are never read
		{http.MethodGet, "text/plain", 10, true},
		{http.MethodPut, "", 2, false},
		{http.MethodPut, "", -1, false},
		{http.MethodPost, "text/plain", 2, false},
		{http.MethodPost, "text/plain", 0, false},
		{http.MethodPost, "multipart/form-data; boundary=x", 2, false},
		{http.MethodPost, "application/x-www-form-urlencoded", 2, false},
		{http.MethodPost, "application/json-patch+json", 2, false},
		{http.MethodPost, "application/jsonx", 2, false},
		{http.MethodPost, "application/json; charset=utf-16", 2, true},
		{http.MethodPost, "application/json; charset", 2, false},
		{http.MethodPost, "", 2, false},
	} {
		r := httptest.NewRequest(tt.method, "/v1/secrets:batchPut", nil)
		r.ContentLength = tt.length
		if tt.contentType != "" {
			r.Header.Set("Content-Type", tt.contentType)
		}
		err := checkContentType(r)
		if (err == nil) != tt.ok {
			t.Errorf("%s Content-Type %q length %d: %v, want ok %v", tt.method, tt.contentType, tt.length, err, tt.ok)
		}
		if hse, isHSE := err.(*runtime.HTTPStatusError); err != nil && (!isHSE || hse.HTTPStatus != http.StatusUnsupportedMediaType) {
			t.Errorf("%s Content-Type %q: %v, want a 415", tt.method, tt.contentType, err)
		}
	}
}

func TestGatewayServiceRoutes(t *testing.T) {
	routes := serviceRoutes()
	for _, want := range []route{
		{http.MethodGet, "/v1/{parent=orgs/*/actions}/secrets"},
		{http.MethodPut, "/v1/{name=repos/*/*/environments/*/secrets/*}"},
		{http.MethodPost, "/v1/secrets:batchPut"},
		{http.MethodDelete, "/v1/{name=orgs/*/agents/secrets/*}/repositories/{repository}"},
	} {
		if !slices.Contains(routes, want) {
			t.Errorf("serviceRoutes lacks %v", want)
		}
	}
	p, err := newRouteProbe(routes)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"DELETE", "GET", "POST", "PUT"}; !slices.Equal(p.methods, want) {
		t.Errorf("methods %v, want %v", p.methods, want)
	}
	for _, tt := range []struct {
		path  string
		multi []string
	}{
		{"/v1/repos/o/r/environments/e/secrets/X", []string{"name"}},
		{"/v1/orgs/o/actions/secrets/X/repositories/7", []string{"name"}},
		{"/v1/repos/o/r/agents/secrets", []string{"parent"}},
		{"/v1/secrets:batchDelete", nil},
	} {
		var multi []string
		for _, m := range p.methods {
			if res := p.match(httptest.NewRequest(m, tt.path, nil), m); res.matched {
				multi = multiSegmentVars(res.pat)
				break
			}
		}
		if !slices.Equal(multi, tt.multi) {
			t.Errorf("%s: multi-segment variables %v, want %v", tt.path, multi, tt.multi)
		}
	}
}

func TestGatewayDecodeError(t *testing.T) {
	for _, tt := range []struct {
		err        error
		want       string
		notQuoting string
	}{
		// protojson's errors, with either space after "proto:".
		{errors.New("proto: (line 1:10): invalid value for string field value: 4242"),
			"request body, line 1 column 10: invalid value for string field value", "4242"},
		{errors.New("proto:\u00a0(line 1:10): invalid value for string field value: 4242"),
			"request body, line 1 column 10: invalid value for string field value", "4242"},
		{errors.New("proto:\u00a0(line 1:29): invalid value for int64 field selectedRepositoryIds: \"s3cr3t\""),
			"request body, line 1 column 29: invalid value for int64 field selected_repository_ids", "s3cr3t"},
		{errors.New(`proto: (line 1:21): unknown field "bogus"`), `request body, line 1 column 21: unknown field "bogus"`, ""},
		{errors.New(`proto: (line 1:14): duplicate field "value"`), `request body, line 1 column 14: duplicate field "value"`, ""},
		// Anything else is described without its text.
		{errors.New(`proto: syntax error (line 1:21): unexpected token "s3cr3t"`), "request body is not a valid JSON request", "s3cr3t"},
		{errors.New(`proto: (line 1:2): unknown field "s3cr3t value"`), "request body is not a valid JSON request", "s3cr3t"},
		{errors.New("s3cr3t"), "request body is not a valid JSON request", "s3cr3t"},
		{fmt.Errorf("reading: %w", io.ErrUnexpectedEOF), "request body ends inside its JSON value", ""},
	} {
		got := decodeError(tt.err, nil, nil).Error()
		if got != tt.want {
			t.Errorf("decodeError(%q) = %q, want %q", tt.err, got, tt.want)
		}
		if tt.notQuoting != "" && strings.Contains(got, tt.notQuoting) {
			t.Errorf("decodeError(%q) quotes %q", tt.err, tt.notQuoting)
		}
	}
	var se *json.SyntaxError
	err := json.Unmarshal([]byte(`{"value":s3cr3t}`), &struct{}{})
	if !errors.As(err, &se) {
		t.Fatalf("not a syntax error: %v", err)
	}
	if got := decodeError(err, nil, nil).Error(); !strings.HasPrefix(got, "request body is not valid JSON: ") || strings.Contains(got, "s3cr3t") {
		t.Errorf("decodeError(%v) = %q", err, got)
	}
}

// serveUnimplemented serves, on a loopback port until the test ends, a
// gRPC server built with opts whose SecretService answers every call
// Unimplemented, and returns a client connection to it.
func serveUnimplemented(t *testing.T, opts ...grpc.ServerOption) *grpc.ClientConn {
	t.Helper()
	srv := grpc.NewServer(opts...)
	secretbrokerv1.RegisterSecretServiceServer(srv, unimplementedSecretService{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// TestManyMetadataHeadersAre431: Grpc-Metadata-* headers within the HTTP
// listener's bound whose size as gRPC metadata (32 bytes more per field)
// is over the in-process server's header list limit were answered 500
// INTERNAL, a server error for what the caller sent: they are 431.
func TestManyMetadataHeadersAre431(t *testing.T) {
	b := startBroker(t, devConfig(t))
	req, err := http.NewRequest(http.MethodGet, "http://"+b.httpAddr+"/v1/repos/octo-org/hello-world/actions/secrets", nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 1900 {
		req.Header.Set(fmt.Sprintf("Grpc-Metadata-A%d", i), "x")
	}
	resp, err := b.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge || !strings.Contains(string(body), "Grpc-Metadata") {
		t.Errorf("%d %s; want 431 naming the headers", resp.StatusCode, body)
	}
}
