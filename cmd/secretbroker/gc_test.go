package main

import (
	"bytes"
	"log/slog"
	"runtime/debug"
	"strings"
	"testing"
)

// TestTuneGC: the broker's collector defaults apply where the environment
// sets neither GOGC nor GOMEMLIMIT, and each one set is left alone.
func TestTuneGC(t *testing.T) {
	gogc0 := debug.SetGCPercent(100)
	limit0 := debug.SetMemoryLimit(-1)
	t.Cleanup(func() {
		debug.SetGCPercent(gogc0)
		debug.SetMemoryLimit(limit0)
	})
	for _, tc := range []struct {
		name      string
		env       map[string]string
		wantGOGC  int
		wantLimit int64
	}{
		{"neither set", nil, defaultGCPercent, defaultMemoryLimit},
		{"GOGC set", map[string]string{"GOGC": "100"}, 100, defaultMemoryLimit},
		{"GOMEMLIMIT set", map[string]string{"GOMEMLIMIT": "1GiB"}, defaultGCPercent, 1 << 30},
		{"both set", map[string]string{"GOGC": "100", "GOMEMLIMIT": "1GiB"}, 100, 1 << 30},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// What the runtime read from the environment at start.
			debug.SetGCPercent(100)
			debug.SetMemoryLimit(1 << 30)
			var logs bytes.Buffer
			tuneGC(func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok }, slog.New(slog.NewTextHandler(&logs, nil)))
			if got := debug.SetGCPercent(100); got != tc.wantGOGC {
				t.Errorf("GOGC %d, want %d", got, tc.wantGOGC)
			}
			if got := debug.SetMemoryLimit(-1); got != tc.wantLimit {
				t.Errorf("memory limit %d, want %d", got, tc.wantLimit)
			}
			if !strings.Contains(logs.String(), "garbage collector") {
				t.Errorf("no log line of the collector's settings: %q", logs.String())
			}
		})
	}
}
