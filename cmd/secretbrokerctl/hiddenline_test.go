package main

import (
	"errors"
	"io"
	"strings"
	"testing"
)

// TestReadLine: a value's line as typed at a terminal in non-canonical
// mode, edited as the kernel would in canonical mode.
func TestReadLine(t *testing.T) {
	keys := lineKeys{erase: 0x7f, kill: 0x15, eof: 0x04}
	for _, tc := range []struct {
		name, in string
		limit    int
		want     string
		wantErr  error
	}{
		{name: "a line", in: "s3cr3t\nrest", want: "s3cr3t"},
		{name: "carriage return ends it", in: "s3cr3t\r\n", want: "s3cr3t"},
		{name: "longer than a canonical line", in: strings.Repeat("A", 6000) + "\n", want: strings.Repeat("A", 6000)},
		{name: "erase", in: "abcx\x7fd\n", want: "abcd"},
		{name: "backspace", in: "abcx\bd\n", want: "abcd"},
		{name: "erase a multi-byte character", in: "abé\x7f\n", want: "ab"},
		{name: "erase on an empty line", in: "\x7f\x7fab\n", want: "ab"},
		{name: "kill", in: "wrong\x15right\n", want: "right"},
		{name: "end of file ends a line begun", in: "abc\x04", want: "abc"},
		{name: "end of file on an empty line", in: "\x04", wantErr: io.EOF},
		{name: "input ends", in: "abc", want: "abc"},
		{name: "nothing", in: "", wantErr: io.EOF},
		{name: "an empty line", in: "\n", want: ""},
		{name: "at the limit", in: "abcd\n", limit: 4, want: "abcd"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			limit := tc.limit
			if limit == 0 {
				limit = maxValueRead
			}
			got, err := readLine(strings.NewReader(tc.in), keys, limit)
			if !errors.Is(err, tc.wantErr) || string(got) != tc.want {
				t.Errorf("readLine(%q) = %q, %v; want %q, %v", tc.in, got, err, tc.want, tc.wantErr)
			}
		})
	}
	if _, err := readLine(strings.NewReader("abcde\n"), keys, 4); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("a line over the limit: %v", err)
	}
}
