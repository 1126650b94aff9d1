package main

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// rawGet sends a GET with the raw request target and User-Agent given,
// bytes a Go client would escape or refuse, and reads the answer's status
// line.
func rawGet(t *testing.T, addr, target, userAgent string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET "+target+" HTTP/1.1\r\nHost: broker\r\nUser-Agent: "+userAgent+"\r\nConnection: close\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(line)
}

// TestHostileStringsKeepTraceExport: OTLP carries a span's strings as
// protobuf strings, which must be valid UTF-8, and one that is not fails
// the marshalling of its whole batch. The gateway's HTTP span carries the
// request's path and User-Agent, which anyone may send, unauthenticated,
// to /healthz: such a request must not cost the spans of the calls
// exported with it. Its own span is exported too, with U+FFFD for each
// run of bytes that are not UTF-8.
func TestHostileStringsKeepTraceExport(t *testing.T) {
	recv := newOTLPReceiver(t)
	otelEnv := map[string]string{
		"OTEL_TRACES_EXPORTER":        "otlp",
		"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
		"OTEL_EXPORTER_OTLP_ENDPOINT": recv.srv.URL,
		// Nothing is exported before the shutdown's flush: one batch.
		"OTEL_BSP_SCHEDULE_DELAY": "600000",
	}
	for k, v := range otelEnv {
		t.Setenv(k, v) // autoexport reads the process environment
	}
	cfg, err := loadConfig([]string{"--dev", "--grpc-addr=127.0.0.1:0", "--http-addr=127.0.0.1:0", "--admin-addr=127.0.0.1:0",
		"--shutdown-timeout=5s"}, envMap(otelEnv), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	b := startBroker(t, cfg)

	if code, m := b.do(t, "GET", "/v1/orgs/octo-org/actions/secrets", ""); code != 200 {
		t.Fatalf("ListSecrets = %d %v", code, m)
	}
	if got := rawGet(t, b.httpAddr, "/healthz", "hostile-\xff\xfe-agent"); !strings.Contains(got, " 200 ") {
		t.Fatalf("GET /healthz: %s", got)
	}
	if got := rawGet(t, b.httpAddr, "/%ff%c3", "curl"); !strings.Contains(got, " 400 ") {
		t.Fatalf("GET /%%ff%%c3: %s", got)
	}
	b.stop(t, 15*time.Second) // flushes the spans

	recv.mu.Lock()
	text, requests := recv.text.String(), recv.requests
	recv.mu.Unlock()
	if requests == 0 {
		t.Fatalf("the OTLP receiver got no export; broker logs:\n%s", b.logs)
	}
	for _, want := range []string{
		"secretbroker.v1.SecretService/ListSecrets", // the call exported with the hostile requests
		"hostile-\ufffd-agent",
		"/\ufffd\"",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the exported spans lack %q:\n%s", want, text)
		}
	}
	if strings.Contains(b.logs.String(), "trace export failing") {
		t.Errorf("an export failed:\n%s", b.logs)
	}
}
