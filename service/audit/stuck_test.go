package audit

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// gateWriter hangs each write until gate is closed.
type gateWriter struct {
	gate chan struct{}
	mu   sync.Mutex
	buf  bytes.Buffer
}

func (w *gateWriter) Write(p []byte) (int, error) {
	<-w.gate
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

// TestWriteContextGivesUpOnAStuckTrail: WriteContext waits for a stuck
// write no longer than its context; a trail that is free takes the
// record even from a context that has ended (an outcome written after
// the call's deadline); Write waits however long it takes.
func TestWriteContextGivesUpOnAStuckTrail(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := &gateWriter{gate: make(chan struct{})}
		l := NewWriter(w, nil)
		stuck := make(chan error, 1)
		go func() { stuck <- l.Write(Record{Phase: PhaseIntent, Resource: "stuck"}) }()
		synctest.Wait()

		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		start := time.Now()
		if err := l.WriteContext(ctx, Record{Phase: PhaseIntent, Resource: "bounded"}); err == nil {
			t.Fatal("WriteContext returned nil with the trail stuck")
		}
		if took := time.Since(start); took != 5*time.Second {
			t.Errorf("WriteContext gave up after %v, want its context's 5s", took)
		}
		if l.Failures() != 1 {
			t.Errorf("Failures = %d, want 1", l.Failures())
		}
		close(w.gate)
		if err := <-stuck; err != nil {
			t.Fatal(err)
		}
		if err := l.WriteContext(ctx, Record{Phase: PhaseOutcome, Resource: "late"}); err != nil {
			t.Fatalf("WriteContext with an ended context and a free trail: %v", err)
		}
		got := w.buf.String()
		if !bytes.Contains([]byte(got), []byte(`"resource":"stuck"`)) || !bytes.Contains([]byte(got), []byte(`"resource":"late"`)) ||
			bytes.Contains([]byte(got), []byte(`"resource":"bounded"`)) {
			t.Errorf("trail:\n%s", got)
		}
	})
}
