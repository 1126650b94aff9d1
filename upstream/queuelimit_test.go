package upstream

import (
	"context"
	"testing"
	"time"

	"github.com/secretbroker/secretbroker/upstream/pace"
)

// TestWithoutQueueLimit: the marker reaches the pacer, and the queue
// bounds reach its Config.
func TestWithoutQueueLimit(t *testing.T) {
	ctx := context.Background()
	if pace.Patient(ctx) || !pace.Patient(WithoutQueueLimit(WithCaller(ctx, "x"))) {
		t.Fatal("WithoutQueueLimit does not mark the context for the pacer")
	}
	p := DefaultPacing()
	if p.MaxQueue != 0 || p.MaxQueueWait != 0 {
		t.Fatalf("DefaultPacing has queue bounds %d, %v; want none", p.MaxQueue, p.MaxQueueWait)
	}
	p.MaxQueue, p.MaxQueueWait = 7, time.Minute
	if c := p.config(); c.MaxQueue != 7 || c.MaxQueueWait != time.Minute {
		t.Fatalf("config: MaxQueue %d, MaxQueueWait %v", c.MaxQueue, c.MaxQueueWait)
	}
}
