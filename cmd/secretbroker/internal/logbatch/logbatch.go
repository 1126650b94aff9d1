// Package logbatch owns the process log's writer: lines written one at a
// time (by slog's handler, under its own lock) gathered in a buffer and
// written by one goroutine, many lines to a write(2), with backpressure
// instead of dropped lines.
package logbatch

import (
	"io"
	"sync"
)

// Writer is the process log's writer. slog's handler writes one
// line at a time, under its own lock; Writer appends the line to a
// buffer and returns, and one goroutine writes whatever has gathered, so
// that under load many lines go out in one write(2) instead of a system
// call each (one per RPC at INFO), and no call waits for another's write.
// When the writer falls behind by maxPendingBytes, Write waits for it:
// no line is dropped. Close writes what is pending; Writes after it go
// straight through.
type Writer struct {
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

// maxPendingBytes bounds the bytes a Writer holds before Write waits.
const maxPendingBytes = 1 << 20

// New starts the goroutine that writes to w; Close ends it.
func New(w io.Writer) *Writer {
	b := &Writer{w: w, maxPending: maxPendingBytes,
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	b.space = sync.NewCond(&b.mu)
	go b.run()
	return b
}

// Write queues p for the writing goroutine; it never fails (a failed
// write of the log has nowhere to be reported).
func (b *Writer) Write(p []byte) (int, error) {
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
func (b *Writer) run() {
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
func (b *Writer) Close() {
	close(b.stop)
	<-b.done
}
