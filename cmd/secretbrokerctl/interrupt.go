package main

import (
	"context"
	"fmt"
	"os"
)

// exitInterrupted is the exit code after a second interrupt: 128 + SIGINT,
// as a shell reports a process Ctrl-C ended.
const exitInterrupted = 130

// runSignals runs the command line args as run does, with sigs delivering
// the process's interrupts (Ctrl-C, SIGTERM): the first ends the context
// the command runs in, which stops it as gracefully as it can (sync
// cancels its operation and waits for it to stop); a second one while it
// does stops the process at once through exit(exitInterrupted), after
// saying what may still be running (see setRunning) and how to see it.
func (c *cli) runSignals(args []string, sigs <-chan os.Signal, exit func(int)) int {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	defer close(done)
	go c.watchInterrupts(sigs, done, cancel, exit)
	return c.main(ctx, args)
}

// watchInterrupts cancels at the first signal and exits at the second,
// until done is closed.
func (c *cli) watchInterrupts(sigs <-chan os.Signal, done <-chan struct{}, cancel context.CancelFunc, exit func(int)) {
	select {
	case <-sigs:
		cancel()
	case <-done:
		return
	}
	select {
	case <-sigs:
		// Not through errorf: its scrub reads the secrets the command's
		// goroutine may be adding to. The message holds no secret: fixed
		// text and an operation's name.
		msg := progName + ": interrupted again: exiting without waiting"
		if hint := c.runningHint(); hint != "" {
			msg += "; " + hint
		}
		fmt.Fprintln(c.stderr, msg)
		exit(exitInterrupted)
	case <-done:
	}
}

// setRunning records what may go on at the broker should the process stop
// now, as the second interrupt says it ("" for nothing): an operation's
// name and how to see and cancel it.
func (c *cli) setRunning(hint string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.running = hint
}

func (c *cli) runningHint() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.running
}
