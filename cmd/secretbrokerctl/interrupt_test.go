package main

import (
	"os"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// exitRecorder is the exit function of a test run: it records the code
// and when it was called, and returns (the process would have ended).
type exitRecorder struct {
	mu    sync.Mutex
	code  int
	at    time.Duration // since start
	calls int
	start time.Time
}

func (e *exitRecorder) exit(code int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.code, e.at = code, time.Since(e.start)
	e.calls++
}

// TestSecondInterrupt: Ctrl-C while sync follows its operation cancels
// it; a second Ctrl-C while the cancel is under way (CancelOperation, or
// the wait for the cancelled operation to stop, blocked at the broker)
// exits at once with 130, without waiting for it, saying the operation
// may still be running and how to see and cancel it. A run that ends
// before a second interrupt never exits through it.
func TestSecondInterrupt(t *testing.T) {
	envFile := writeFile(t, "app.env", []byte("A="+plantedValue+"\nB=b-value-2\n"))
	for _, tc := range []struct {
		name string
		// cancelHangs: CancelOperation blocks; otherwise it answers the
		// operation still running, and the wait for it to stop blocks.
		cancelHangs bool
		output      string
		second      bool // a second interrupt
	}{
		{name: "during CancelOperation", cancelHangs: true, output: outputTable, second: true},
		{name: "during the wait for the cancelled operation", output: outputTable, second: true},
		{name: "during CancelOperation, JSON", cancelHangs: true, output: outputJSON, second: true},
		{name: "one interrupt", cancelHangs: true, output: outputTable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFlaky(map[string][]failure{})
				f.waitRunning = true
				cancelStarted := make(chan struct{})
				f.cancelStarted = cancelStarted
				// The cancel blocks, or answers the operation still
				// running, and the wait for it to stop blocks.
				f.cancelBlocks, f.cancelRunning = tc.cancelHangs, !tc.cancelHangs
				run := newFakeRun(t, f, "")
				rec := &exitRecorder{start: f.start}
				sigs := make(chan os.Signal, 2)
				code := make(chan int, 1)
				go func() {
					code <- run.c.runSignals([]string{"sync", "-o", tc.output, "--from-env-file", envFile, "repos/o/r/actions"}, sigs, rec.exit)
				}()
				time.Sleep(7 * time.Second) // following: in its second WaitOperation
				sigs <- os.Interrupt
				<-cancelStarted
				synctest.Wait() // the cancel blocks at the broker
				interrupted := time.Since(f.start)
				wantContains(t, "stderr", run.stderr.String(), "interrupted: cancelling "+flakyOp)
				if tc.second {
					sigs <- os.Interrupt
					synctest.Wait()
					rec.mu.Lock()
					calls, exitCode, at := rec.calls, rec.code, rec.at
					rec.mu.Unlock()
					if calls != 1 || exitCode != exitInterrupted || at != interrupted {
						t.Errorf("exit called %d times, with %d at %s; want once, with %d at %s (at once)", calls, exitCode, at, exitInterrupted, interrupted)
					}
					f.mu.Lock()
					ended := f.cancelEnded
					f.mu.Unlock()
					if tc.cancelHangs && ended != 0 {
						t.Errorf("exit came after the cancel ended (%s)", ended)
					}
					wantContains(t, "stderr", run.stderr.String(),
						"secretbrokerctl: interrupted again: exiting without waiting; "+flakyOp+" may still be running: secretbrokerctl op "+flakyOp+" shows it, secretbrokerctl cancel "+flakyOp+" stops it")
				}
				// The process would be gone; here the run goes on to the
				// cancel's end (15s), which must not exit again.
				c := <-code
				r := run.result(t, c)
				wantCode(t, r, exitFail)
				if !tc.second && rec.calls != 0 {
					t.Errorf("one interrupt exited through exit(%d)", rec.code)
				}
				if tc.second && rec.calls != 1 {
					t.Errorf("exit called %d times", rec.calls)
				}
			})
		})
	}
}
