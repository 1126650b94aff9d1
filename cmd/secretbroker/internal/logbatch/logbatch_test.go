package logbatch

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
)

// lockedBuffer is a bytes.Buffer safe for one writer and a reader.
type lockedBuffer struct {
	mu     sync.Mutex
	b      bytes.Buffer
	writes int
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.writes++
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestWriter: lines written from many goroutines all arrive whole, in
// fewer writes than lines once they gather, and Close writes what is
// pending; a Write after Close goes straight through.
func TestWriter(t *testing.T) {
	var out lockedBuffer
	b := New(&out)
	const writers, each = 8, 500
	var mu sync.Mutex // as slog's handler holds its own lock around Write
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				mu.Lock()
				_, err := fmt.Fprintf(b, "writer %d line %d\n", w, i)
				mu.Unlock()
				if err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	b.Close()
	fmt.Fprintf(b, "after close\n")
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != writers*each+1 || lines[len(lines)-1] != "after close" {
		t.Fatalf("%d lines, the last %q; want %d and \"after close\"", len(lines), lines[len(lines)-1], writers*each+1)
	}
	lines = lines[:len(lines)-1]
	want := make([]string, 0, writers*each)
	for w := range writers {
		for i := range each {
			want = append(want, fmt.Sprintf("writer %d line %d", w, i))
		}
	}
	slices.Sort(lines)
	slices.Sort(want)
	if !slices.Equal(lines, want) {
		t.Fatal("lines lost, torn or repeated")
	}
	t.Logf("%d lines in %d writes", writers*each, out.writes-1)
}

// blockingWriter holds every Write until release is closed.
type blockingWriter struct {
	release chan struct{}
	lockedBuffer
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	<-w.release
	return w.lockedBuffer.Write(p)
}

// TestWriterBackpressure: while the log's writer is stuck, Write
// returns until maxPending bytes are pending, then waits; nothing is
// dropped.
func TestWriterBackpressure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		out := &blockingWriter{release: make(chan struct{})}
		b := New(out)
		b.maxPending = 10
		line := []byte("0123456789\n") // 11 bytes: one line fills the bound
		b.Write(line)                  // taken by the writer, which is stuck
		synctest.Wait()
		b.Write(line) // pending: 11 bytes
		blocked := make(chan struct{})
		go func() {
			b.Write(line) // over the bound: waits
			close(blocked)
		}()
		synctest.Wait()
		select {
		case <-blocked:
			t.Fatal("a Write over the bound did not wait")
		default:
		}
		close(out.release)
		<-blocked
		b.Close()
		if got := out.String(); got != strings.Repeat(string(line), 3) {
			t.Fatalf("wrote %q, want three lines", got)
		}
	})
}
