package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// jsonOptions write messages as the JSON gateway does: snake_case field
// names, every field present.
var jsonOptions = protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}

// protoJSON is a message that encoding/json writes as the gateway's JSON.
type protoJSON struct{ m proto.Message }

func (p protoJSON) MarshalJSON() ([]byte, error) {
	b, err := jsonOptions.Marshal(p.m)
	if err != nil {
		return nil, fmt.Errorf("encode %T: %w", p.m, err)
	}
	return b, nil
}

// writeJSON writes v, indented, and a newline to w.
func writeJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode JSON: %w", err)
	}
	if _, err := w.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// table writes aligned columns.
type table struct{ tw *tabwriter.Writer }

func newTable(w io.Writer, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)}
	if len(header) > 0 {
		t.row(header...)
	}
	return t
}

// row writes one row; a cell's tabs and line breaks become spaces.
func (t *table) row(cells ...string) {
	for i, c := range cells {
		cells[i] = strings.NewReplacer("\t", " ", "\n", " ", "\r", " ").Replace(c)
	}
	fmt.Fprintln(t.tw, strings.Join(cells, "\t"))
}

func (t *table) flush() error {
	if err := t.tw.Flush(); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// timestamp formats ts for a table: RFC 3339 in UTC, "-" when unset.
func timestamp(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return "-"
	}
	return ts.AsTime().UTC().Format(time.RFC3339)
}

// orDash is s, or "-" when s is empty.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// describe formats a call's error as "CODE: message", with the delay of a
// RetryInfo when the broker sent one, scrubbed of any secret.
func (c *cli) describe(err error) string {
	st := status.Convert(err)
	msg := codeName(st.Code()) + ": " + st.Message()
	if d := retryInfoDelay(st); d > 0 {
		msg += fmt.Sprintf(" (retry after %s)", d)
	}
	if c.plaintext && st.Code() == codes.Unavailable && closedOnConnect(st.Message()) {
		// A TLS server closes a plaintext client's connection without a
		// word: the broker's gRPC listener serves TLS outside --dev.
		msg += " (the connection was plaintext: if the broker serves TLS, as it does outside --dev, pass --tls or --tls-ca-file)"
	}
	return c.scrub(msg)
}

// closedOnConnect reports whether msg is a connection the broker closed
// as it began: grpc-go's reading of the server's preface ended, or its
// first writes failed, racing with the close.
func closedOnConnect(msg string) bool {
	for _, s := range []string{"error reading server preface", "broken pipe", "connection reset by peer", "read/write on closed pipe"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// callFailed reports a failed call on stderr ("CMD TARGET: CODE: message")
// and returns exitFail.
func (c *cli) callFailed(cmd, target string, err error) int {
	c.errorf("%s %s: %s", cmd, target, c.describe(err))
	return exitFail
}

// outputFailed reports that the output could not be written.
func (c *cli) outputFailed(cmd string, err error) int {
	c.errorf("%s: %v", cmd, err)
	return exitFail
}

// codeName is c as the API names codes: "NOT_FOUND", "INVALID_ARGUMENT".
func codeName(c codes.Code) string { return code.Code(c).String() }
