// Package logtest owns what the tests of the broker's packages share about
// its logs: a JSON log read back line by line.
package logtest

import (
	"encoding/json"
	"strings"
	"testing"
)

// JSONLines decodes every line of a JSON log; a line that is not JSON
// fails the test (a stray text line).
func JSONLines(t testing.TB, out string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for line := range strings.Lines(out) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not a JSON line: %q", line)
		}
		lines = append(lines, m)
	}
	return lines
}
