package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
)

// fakeClock is a clock a test sets.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

// md is a batch operation with its metadata only (a batch's metadata
// counts as its results do); eta, when not zero, is the estimated
// completion time t0+eta.
func md(total, written, unchanged, failed int, eta time.Duration) *secretbrokerv1.Operation {
	m := &secretbrokerv1.OperationMetadata{
		Kind:  kindBatch,
		Total: int32(total), Written: int32(written), Unchanged: int32(unchanged), Failed: int32(failed),
		Remaining: int32(total - written - unchanged - failed),
	}
	if eta != 0 {
		m.EstimatedCompletionTime = timestamppb.New(t0.Add(eta))
	}
	return &secretbrokerv1.Operation{Metadata: m}
}

// step is one update (or, last, finish) at a time after t0.
type step struct {
	at     time.Duration
	md     *secretbrokerv1.Operation
	finish bool
}

func TestProgress(t *testing.T) {
	for _, tc := range []struct {
		name  string
		tty   bool
		steps []step
		want  string
	}{
		{
			name: "bar from the broker's estimate",
			tty:  true,
			steps: []step{
				{at: 0, md: md(100, 0, 0, 0, 100*time.Second)},
				{at: 10 * time.Second, md: md(100, 20, 5, 0, 90*time.Second)},
				{at: 20 * time.Second, md: md(100, 48, 0, 2, 80*time.Second)},
				{at: 30 * time.Second, md: md(100, 97, 0, 3, 0), finish: true},
			},
			want: "\r[------------------------] 0/100  -/s  ETA 1m40s\x1b[K" +
				"\r[######------------------] 25/100  2.5/s  ETA 1m20s\x1b[K" +
				"\r[############------------] 50/100  2.5/s  ETA 1m0s  2 failed\x1b[K" +
				"\r[########################] 100/100  3.3/s  ETA 0s  3 failed\x1b[K\n",
		},
		{
			name: "bar from the rate without an estimate; a past estimate is 0s",
			tty:  true,
			steps: []step{
				{at: 0, md: md(10, 2, 0, 0, 0)},
				{at: 4 * time.Second, md: md(10, 4, 0, 0, 0)},
				{at: 5 * time.Second, md: md(10, 5, 0, 0, time.Second)},
			},
			want: "\r[####--------------------] 2/10  -/s  ETA -\x1b[K" +
				"\r[#########---------------] 4/10  0.5/s  ETA 12s\x1b[K" +
				"\r[############------------] 5/10  0.6/s  ETA 0s\x1b[K",
		},
		{
			name: "plain lines: at most one per 5s, only when the count moved, and the last",
			steps: []step{
				{at: 0, md: md(4, 0, 0, 0, 0)},
				{at: 1 * time.Second, md: md(4, 1, 0, 0, 0)}, // too soon
				{at: 5 * time.Second, md: md(4, 1, 0, 0, 0)},
				{at: 20 * time.Second, md: md(4, 1, 0, 0, 0)}, // no change
				{at: 21 * time.Second, md: md(4, 2, 1, 0, 0)},
				{at: 22 * time.Second, md: md(4, 2, 1, 1, 0), finish: true},
			},
			want: "L: 0/4 done (0 written, 0 unchanged, 0 failed), -/s, ETA -\n" +
				"L: 1/4 done (1 written, 0 unchanged, 0 failed), 0.2/s, ETA 15s\n" +
				"L: 3/4 done (2 written, 1 unchanged, 0 failed), 0.1/s, ETA 7s\n" +
				"L: 4/4 done (2 written, 1 unchanged, 1 failed), 0.2/s, ETA 0s\n",
		},
		{
			name: "plain: the last line is not repeated",
			steps: []step{
				{at: 0, md: md(2, 2, 0, 0, 0)},
				{at: time.Second, md: md(2, 2, 0, 0, 0), finish: true},
			},
			want: "L: 2/2 done (2 written, 0 unchanged, 0 failed), -/s, ETA 0s\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			clk := &fakeClock{t: t0}
			p := newProgress(&out, tc.tty, "L", clk.now)
			for _, s := range tc.steps {
				clk.t = t0.Add(s.at)
				if s.finish {
					p.finish(s.md)
				} else {
					p.update(s.md)
				}
			}
			if out.String() != tc.want {
				t.Errorf("got:\n%q\nwant:\n%q", out.String(), tc.want)
			}
		})
	}
}

func TestProgressInterrupt(t *testing.T) {
	var out bytes.Buffer
	clk := &fakeClock{t: t0}
	p := newProgress(&out, true, "L", clk.now)
	p.interrupt() // nothing drawn: nothing to end
	p.update(md(3, 1, 0, 0, 0))
	p.interrupt()
	p.interrupt()
	if n := strings.Count(out.String(), "\n"); n != 1 || !strings.HasSuffix(out.String(), "\x1b[K\n") {
		t.Errorf("got %q", out.String())
	}
}

func TestFormatETA(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{-time.Second, "0s"},
		{0, "0s"},
		{time.Millisecond, "1s"},
		{59*time.Second + time.Millisecond, "1m0s"},
		{90 * time.Minute, "1h30m0s"},
	} {
		if got := formatETA(tc.d); got != tc.want {
			t.Errorf("formatETA(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
}
