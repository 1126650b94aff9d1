package pace

import "context"

// An Idler is told when a request stops working to wait for its turn and
// when the wait ends. The broker's front door uses it so that a call
// waiting for GitHub's budget does not count among the calls at work
// (calls that use the broker's CPUs or a request in flight), which it
// bounds tightly: a waiting call costs memory, bounded by the queue
// bounds (Config.MaxQueue, MaxQueueWait), and no CPU.
type Idler interface {
	// Idle is called when a request queues behind others or a hold,
	// never when the pacer admits it at once.
	Idle()
	// Resume is called once after each Idle, when the wait ends, whether
	// the request was admitted, refused or cancelled.
	Resume()
}

// idlerKey is the context key of WithIdler.
type idlerKey struct{}

// WithIdler returns a context whose requests tell idler when they wait for
// their turn (Acquire).
func WithIdler(ctx context.Context, idler Idler) context.Context {
	return context.WithValue(ctx, idlerKey{}, idler)
}

// idlerOf returns ctx's Idler, or nil.
func idlerOf(ctx context.Context) Idler {
	i, _ := ctx.Value(idlerKey{}).(Idler)
	return i
}
