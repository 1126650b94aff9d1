package main

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"
)

// grpcPlainLine matches a line in grpclog's default format, as it wrote
// to stderr: "2026/11/28 18:25:51 ERROR: ...".
var grpcPlainLine = regexp.MustCompile(`^\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2} (INFO|WARNING|ERROR|FATAL): `)

// TestJSONLogHoldsOnlyJSON: a JSON call with a header grpc-gateway cannot
// forward (a non-ASCII Grpc-Metadata-* value) made grpc-gateway print a
// plain-text line on stderr, between the JSON log's lines, at any log
// level: grpc's lines are the log's JSON lines now (at DEBUG).
func TestJSONLogHoldsOnlyJSON(t *testing.T) {
	bin := buildBrokerBinary(t)
	b := startProcBroker(t, "broker", bin, "--dev", "--log-level=debug")
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+b.addrs.http+"/v1/orgs/octo-org/actions/secrets/public-key", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Grpc-Metadata-Note", "café")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET public-key: %s", resp.Status)
	}
	b.stop(t) // the log is read whole once the process is gone; SIGKILL would lose its pending lines
	found := false
	for _, line := range strings.Split(b.log.text(), "\n") {
		if grpcPlainLine.MatchString(line) {
			t.Errorf("a line in grpclog's own format: %q", line)
		}
		if strings.Contains(line, "non-ASCII") {
			found = true
			if !json.Valid([]byte(line)) || !strings.Contains(line, `"component":"grpc"`) {
				t.Errorf("grpc-gateway's line is not the log's JSON: %q", line)
			}
		}
	}
	if !found {
		t.Errorf("grpc-gateway's line about the header is not in the log:\n%s", b.log.tail())
	}
}
