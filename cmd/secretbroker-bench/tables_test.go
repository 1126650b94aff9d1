package main

import (
	"context"
	"flag"
	"os"
	"testing"
	"testing/synctest"

	"github.com/secretbroker/secretbroker/upstream/pace/redistest"
)

// tables is set by the command: go test ... -args -tables -- FLAGS.
var tables = flag.Bool("tables", false, "run the benchmark with the command's flags after -- and write its tables to stdout (go run ./cmd/secretbroker-bench does this)")

// TestTables is the benchmark itself, in fake time: the command runs it
// through the go tool. It skips unless -tables is given.
func TestTables(t *testing.T) {
	if !*tables {
		t.Skip("the benchmark: run go run ./cmd/secretbroker-bench")
	}
	c, err := parseFlags(flag.Args(), os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	c.realTime = false
	if c.replicas > 1 && c.redisAddr == "" {
		c.redisAddr = redistest.Start(t).Addr // outside the bubbles
	}
	if c.resync {
		if err := writeResync(t.Context(), c, os.Stdout, resyncInBubble(t)); err != nil {
			t.Fatal(err)
		}
		return
	}
	if err := writeTables(t.Context(), c, os.Stdout, measureInBubble(t)); err != nil {
		t.Fatal(err)
	}
}

// measureInBubble runs each measure in a synctest bubble of its own, on
// the bubble's context: the emulator, the broker and the clients are
// created and stopped inside it, and their time is fake and exact.
func measureInBubble(t *testing.T) measureFunc {
	return func(_ context.Context, c config, client string, n, k int) (r result, err error) {
		synctest.Test(t, func(t *testing.T) {
			r, err = measure(t.Context(), c, client, n, k)
		})
		return r, err
	}
}

// resyncInBubble runs each client's re-sync phases in a synctest bubble of
// its own.
func resyncInBubble(t *testing.T) resyncRunFunc {
	return func(_ context.Context, c config, client string) (rs []phaseResult, err error) {
		synctest.Test(t, func(t *testing.T) {
			rs, err = measureResync(t.Context(), c, client)
		})
		return rs, err
	}
}
