package pace

import "context"

// An Idler is told when a request stops working to wait for its turn and
// when the wait ends. The broker's front door uses it so that a call
// waiting for GitHub's budget does not count among the calls at work
// (calls that use the broker's CPUs or a request in flight), which it
// bounds tightly: a waiting call costs memory, bounded by the queue
// bounds (Config.MaxQueue, MaxQueueWait), and no CPU.
type Idler interface {
	// Idle is called when a request queues behind others or a hold, in
	// the pacer's own queue or in the State it shares with other replicas
	// (see State), never when the request goes at once.
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

// idling tells a request's Idler, once, that it waits, and that the wait
// ended: Acquire's waits in the pacer's queue and in the shared State are
// one wait.
type idling struct {
	idler Idler // nil: none
	idle  bool  // Idle was called, Resume not yet
}

// wait tells the Idler that the request waits, unless it was told so.
func (i *idling) wait() {
	if i.idler != nil && !i.idle {
		i.idle = true
		i.idler.Idle()
	}
}

// done tells the Idler that the wait ended, if it was told of one.
func (i *idling) done() {
	if i.idle {
		i.idle = false
		i.idler.Resume()
	}
}
