package main

import (
	"io"
	"sync"
)

// lineBatcher is the process log's writer. slog's handler writes one
// line at a time, under its own lock; lineBatcher appends the line to a
// buffer and returns, and one goroutine writes whatever has gathered, so
// that under load many lines go out in one write(2) instead of a system
// call each (one per RPC at INFO), and no call waits for another's write.
// When the writer falls behind by maxPendingLog bytes, Write waits for it:
// no line is dropped. Close writes what is pending; Writes after it go
// straight through.
type lineBatcher struct {
	w          io.Writer
	maxPending int

	mu     sync.Mutex
	space  *sync.Cond // signalled when the pending bytes are taken
	buf    []byte     // pending
	closed bool

	wake chan struct{} // a Write has left bytes pending; capacity 1
	stop chan struct{} // closed by Close
	done chan struct{} // closed when the writing goroutine has ended
}

// maxPendingLog bounds the bytes a lineBatcher holds before Write waits.
const maxPendingLog = 1 << 20

// newLineBatcher starts the goroutine that writes to w; Close ends it.
func newLineBatcher(w io.Writer) *lineBatcher {
	b := &lineBatcher{w: w, maxPending: maxPendingLog,
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	b.space = sync.NewCond(&b.mu)
	go b.run()
	return b
}

// Write queues p for the writing goroutine; it never fails (a failed
// write of the log has nowhere to be reported).
func (b *lineBatcher) Write(p []byte) (int, error) {
	b.mu.Lock()
	for len(b.buf) >= b.maxPending && !b.closed {
		b.space.Wait()
	}
	if b.closed {
		b.mu.Unlock()
		return b.w.Write(p)
	}
	b.buf = append(b.buf, p...)
	b.mu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default: // the writer is already due to look
	}
	return len(p), nil
}

// run writes the pending bytes each time a Write leaves some, until Close.
func (b *lineBatcher) run() {
	defer close(b.done)
	var out []byte
	for {
		select {
		case <-b.wake:
		case <-b.stop:
			b.mu.Lock()
			out, b.buf = b.buf, nil
			b.closed = true
			b.space.Broadcast()
			b.mu.Unlock()
			if len(out) > 0 {
				_, _ = b.w.Write(out)
			}
			return
		}
		b.mu.Lock()
		out, b.buf = b.buf, out[:0]
		b.space.Broadcast()
		b.mu.Unlock()
		if len(out) > 0 {
			_, _ = b.w.Write(out)
		}
	}
}

// Close writes what is pending and ends the writing goroutine; it is
// called once.
func (b *lineBatcher) Close() {
	close(b.stop)
	<-b.done
}
