package upstream

import (
	"context"
	"sync"

	"github.com/secretbroker/secretbroker/upstream/pace"
)

// StatusRecorder collects the HTTP status codes of GitHub's answers to the
// requests made for one call, so that the call's audit record can say what
// GitHub answered. It is safe for concurrent use.
type StatusRecorder struct {
	mu        sync.Mutex
	last      int // the last answer's status
	lastWrite int // the last answer's status to a PUT or DELETE
}

type statusRecorderKey struct{}

// WithStatusRecorder returns a context whose upstream requests report their
// answers' status codes to the returned recorder. A recorder already in ctx
// is replaced: each call (or batch item) has its own.
func WithStatusRecorder(ctx context.Context) (context.Context, *StatusRecorder) {
	r := &StatusRecorder{}
	return context.WithValue(ctx, statusRecorderKey{}, r), r
}

// Status returns the status of GitHub's answer to the call's last write
// (PUT or DELETE), else to its last request; 0 when no request got an
// answer.
func (r *StatusRecorder) Status() int {
	if r == nil {
		return 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lastWrite != 0 {
		return r.lastWrite
	}
	return r.last
}

// recordStatus reports an answer's status to ctx's recorder, if any.
func recordStatus(ctx context.Context, method string, status int) {
	r, _ := ctx.Value(statusRecorderKey{}).(*StatusRecorder)
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.last = status
	if pace.IsWrite(method) {
		r.lastWrite = status
	}
}
