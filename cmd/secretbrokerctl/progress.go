package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
)

const (
	// barWidth is how many cells the progress bar has.
	barWidth = 24
	// plainEvery is the least time between two plain progress lines (when
	// stdout is not a terminal); a line is written only when the count of
	// finished items changed since the last one.
	plainEvery = 5 * time.Second
)

// progress shows an operation's progress: on a terminal, one line redrawn
// in place ("\r" and erase to the end of the line); elsewhere, plain lines,
// at most one every plainEvery and only when the count of finished items
// changed. The clock is injected (now), so that it is tested without
// sleeping.
type progress struct {
	w     io.Writer
	tty   bool
	label string // "sync repos/o/r/actions"
	now   func() time.Time

	started   bool
	start     time.Time // when the first update came
	startDone int       // items finished at start: the rate counts those after
	drawn     bool      // a bar is on the line (tty)

	lastPlain     time.Time
	lastPlainDone int // -1: no plain line yet
}

func newProgress(w io.Writer, tty bool, label string, now func() time.Time) *progress {
	return &progress{w: w, tty: tty, label: label, now: now, lastPlainDone: -1}
}

// update shows op as it is now.
func (p *progress) update(op *secretbrokerv1.Operation) {
	now := p.now()
	md, k := op.GetMetadata(), countsOf(op)
	if !p.started {
		p.started, p.start, p.startDone = true, now, k.done
	}
	if p.tty {
		fmt.Fprintf(p.w, "\r%s\x1b[K", p.bar(md, k, now))
		p.drawn = true
		return
	}
	if k.done == p.lastPlainDone || (p.lastPlainDone >= 0 && now.Sub(p.lastPlain) < plainEvery) {
		return
	}
	p.plain(md, k, now)
}

// finish shows op as it ended and ends the line: the bar is redrawn a
// last time and kept; a plain line is written unless the last one showed
// the same count.
func (p *progress) finish(op *secretbrokerv1.Operation) {
	now := p.now()
	md, k := op.GetMetadata(), countsOf(op)
	if !p.started {
		p.started, p.start, p.startDone = true, now, k.done
	}
	if p.tty {
		fmt.Fprintf(p.w, "\r%s\x1b[K\n", p.bar(md, k, now))
		p.drawn = false
		return
	}
	if k.done != p.lastPlainDone {
		p.plain(md, k, now)
	}
}

// interrupt ends a drawn bar's line, so that what follows starts on its own.
func (p *progress) interrupt() {
	if p.tty && p.drawn {
		fmt.Fprintln(p.w)
		p.drawn = false
	}
}

// plain writes a plain progress line: the items done, by outcome as the
// summary counts them (counts.outcomes), the rate and the ETA.
func (p *progress) plain(md *secretbrokerv1.OperationMetadata, k counts, now time.Time) {
	fmt.Fprintf(p.w, "%s: %d/%d done (%s), %s, ETA %s\n",
		p.label, k.done, k.total, k.outcomes(), p.rate(k, now), p.eta(md, k, now))
	p.lastPlain, p.lastPlainDone = now, k.done
}

// bar is the terminal's line: "[#####-----]  42/100  3.2/s  ETA 18s".
func (p *progress) bar(md *secretbrokerv1.OperationMetadata, k counts, now time.Time) string {
	filled := barWidth
	if k.total > 0 {
		filled = k.done * barWidth / k.total
	}
	line := fmt.Sprintf("[%s%s] %d/%d  %s  ETA %s",
		strings.Repeat("#", filled), strings.Repeat("-", barWidth-filled), k.done, k.total, p.rate(k, now), p.eta(md, k, now))
	if k.failed > 0 {
		line += fmt.Sprintf("  %d failed", k.failed)
	}
	return line
}

// itemsPerSecond is the rate of items finished since the first update;
// 0 before any time has passed.
func (p *progress) itemsPerSecond(k counts, now time.Time) float64 {
	el := now.Sub(p.start).Seconds()
	if el <= 0 || k.done < p.startDone {
		return 0
	}
	return float64(k.done-p.startDone) / el
}

// rate formats the rate: "3.2/s", or "-/s" before it is known.
func (p *progress) rate(k counts, now time.Time) string {
	if now.Sub(p.start) <= 0 {
		return "-/s"
	}
	return fmt.Sprintf("%.1f/s", p.itemsPerSecond(k, now))
}

// eta is the time left: from the broker's estimated completion time (its
// pacer knows the waits ahead) when it sent one, else from the rate; "0s"
// once every item is done; "-" when unknown.
func (p *progress) eta(md *secretbrokerv1.OperationMetadata, k counts, now time.Time) string {
	if k.done >= k.total {
		return "0s"
	}
	if t := md.GetEstimatedCompletionTime(); t != nil && t.IsValid() {
		return formatETA(t.AsTime().Sub(now))
	}
	if r := p.itemsPerSecond(k, now); r > 0 {
		return formatETA(time.Duration(float64(k.total-k.done) / r * float64(time.Second)))
	}
	return "-"
}

// formatETA rounds d up to whole seconds ("1m5s"); a past time is "0s".
func formatETA(d time.Duration) string {
	if d <= 0 {
		return "0s"
	}
	return ((d + time.Second - 1) / time.Second * time.Second).String()
}
