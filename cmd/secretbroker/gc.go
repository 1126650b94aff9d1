package main

import (
	"log/slog"
	"runtime/debug"
)

// The garbage collector's settings when the environment sets none.
const (
	// defaultGCPercent is GOGC's value unless GOGC is set: the heap may
	// grow to five times what survived the last collection. The broker's
	// live heap is small (keys, records, a few MB) and its garbage is per
	// call; at Go's default of 100, collection took about 12% of the
	// broker's CPU at saturation, and a smaller share at 400 made
	// PutSecret cheaper by about a fifth (docs/BENCHMARKS.md, issue 12).
	defaultGCPercent = 400
	// defaultMemoryLimit is GOMEMLIMIT's value unless GOMEMLIMIT is set:
	// a soft limit at which the collector runs as often as it must, so
	// that the larger GOGC cannot let a flood of large requests grow the
	// heap past it. Kubernetes deployments set GOMEMLIMIT below their
	// container's limit (deploy/), which replaces this one.
	defaultMemoryLimit = 192 << 20
)

// tuneGC applies defaultGCPercent and defaultMemoryLimit where lookup
// (os.LookupEnv) finds no GOGC or GOMEMLIMIT, and logs what the collector
// runs with.
func tuneGC(lookup func(string) (string, bool), log *slog.Logger) {
	gogc, limit := "from GOGC", "from GOMEMLIMIT"
	if _, ok := lookup("GOGC"); !ok {
		debug.SetGCPercent(defaultGCPercent)
		gogc = "default"
	}
	if _, ok := lookup("GOMEMLIMIT"); !ok {
		debug.SetMemoryLimit(defaultMemoryLimit)
		limit = "default"
	}
	cur := debug.SetGCPercent(-1) // reads the value back...
	debug.SetGCPercent(cur)       // ...and restores it
	log.Info("garbage collector",
		slog.Int("gogc", cur), slog.String("gogc_source", gogc),
		slog.Int64("memory_limit_bytes", debug.SetMemoryLimit(-1)), slog.String("memory_limit_source", limit))
}
