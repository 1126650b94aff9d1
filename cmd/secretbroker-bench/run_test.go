package main

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/secretbroker/secretbroker/upstream"
)

// A small run holds the targets the benchmark reports on: at most 1 + K/N
// requests per write, no violation and no loss for the broker; the naive
// client pays a key fetch per write.
func TestMeasureTargets(t *testing.T) {
	c := config{scale: 1000, naiveConcurrency: 10, pacing: upstream.DefaultPacing()}
	for _, k := range []int{1, 4} {
		const n = 40
		broker, err := measure(t.Context(), c, "broker", n, k)
		if err != nil {
			t.Fatal(err)
		}
		if broker.written != n || broker.lost != 0 || broker.failed != 0 {
			t.Errorf("broker, %d scopes: written %d, lost %d, failed %d of %d", k, broker.written, broker.lost, broker.failed, n)
		}
		if broker.requests > n+k {
			t.Errorf("broker, %d scopes: %d requests for %d writes, want at most %d", k, broker.requests, n, n+k)
		}
		if broker.violations != 0 {
			t.Errorf("broker, %d scopes: %d violations", k, broker.violations)
		}
		// Writes go 1 s apart: 40 writes take at least 39 s on the clock.
		if broker.elapsed < broker.minimum || broker.minimum != 39*time.Second {
			t.Errorf("broker: took %v, least time %v", broker.elapsed, broker.minimum)
		}

		naive, err := measure(t.Context(), c, "naive", n, k)
		if err != nil {
			t.Fatal(err)
		}
		if naive.written+naive.failed != n || naive.lost != 0 {
			t.Errorf("naive: written %d, failed %d, lost %d of %d", naive.written, naive.failed, naive.lost, n)
		}
		if naive.requests != 2*n {
			t.Errorf("naive: %d requests for %d writes, want a key fetch and a PUT each", naive.requests, n)
		}
	}
}

func TestLeastTime(t *testing.T) {
	p := upstream.DefaultPacing()
	ghes := p
	ghes.WriteInterval = 0
	tests := []struct {
		p    upstream.Pacing
		n, k int
		want time.Duration
	}{
		{p, 1, 1, 0},
		{p, 100, 10, 99 * time.Second},
		{p, 1000, 1, 999 * time.Second},
		{ghes, 100, 1, 0},                 // 501 points fit one window
		{ghes, 1000, 10, 5 * time.Minute}, // 5010 points: 6 windows
		{ghes, 180, 0, 0},                 // 900 points exactly
		{ghes, 181, 0, time.Minute},       // 905 points
	}
	for _, tt := range tests {
		if got := leastTime(tt.p, tt.n, tt.k); got != tt.want {
			t.Errorf("leastTime(interval %v, %d writes, %d scopes) = %v, want %v", tt.p.WriteInterval, tt.n, tt.k, got, tt.want)
		}
	}
}

func TestFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--writes", "0"},
		{"--writes", "1001"},
		{"--scopes", "x"},
		{"--naive-concurrency", "0"},
	} {
		if err := realMain(t.Context(), args, io.Discard, io.Discard); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
	var out bytes.Buffer
	if err := realMain(t.Context(), []string{"--writes", "2", "--scopes", "1,2", "--scale", "1000"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if rows := strings.Count(out.String(), "\n| broker |"); rows != 2 {
		t.Errorf("%d broker rows, want 2:\n%s", rows, out.String())
	}
}
