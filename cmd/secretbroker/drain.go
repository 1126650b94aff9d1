package main

import (
	"context"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/secretbroker/secretbroker/service"
)

// A shutdown gives the calls in progress --shutdown-timeout to finish.
// Those still running a little before it ends (drainMargin) are told to
// stop (callDrain): their contexts end, so a batch stops starting items
// and answers with what it did, item by item (each with its outcome in the
// audit trail), and the answer still reaches the caller before the
// connections are closed. Cutting them at the deadline instead would
// leave the caller without an answer, even for the writes GitHub took.

// maxDrainMargin bounds drainMargin.
const maxDrainMargin = 2 * time.Second

// drainMargin is how long before the end of a shutdown of timeout the
// calls still running are told to stop: a fifth of it, at most
// maxDrainMargin.
func drainMargin(timeout time.Duration) time.Duration {
	return min(timeout/5, maxDrainMargin)
}

// callDrain ends the contexts of the calls in progress on demand.
type callDrain struct {
	ctx  context.Context
	stop context.CancelFunc
}

func newCallDrain() *callDrain {
	ctx, stop := context.WithCancel(context.Background())
	return &callDrain{ctx: ctx, stop: stop}
}

// errDrained is a call's answer when the shutdown ended it and it returned
// CANCELLED: the caller did not cancel, and may call again (another
// replica, or this one restarted). A write the drain stopped after GitHub
// was sent it returns ABORTED instead (GitHub may have applied it), which
// is passed on as it is.
func errDrained() error {
	return service.Stopped("it").Err()
}

// unary ends a call's context when the drain starts (at once for a call
// that starts after), with service.ErrDrained as its cause, so that the
// service's outcome records say what the call is answered (UNAVAILABLE
// for a call stopped before it sent anything, ABORTED for a write GitHub
// was sent) and its answers say who stopped it.
func (d *callDrain) unary() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, cancel := context.WithCancelCause(ctx)
		release := context.AfterFunc(d.ctx, func() { cancel(service.ErrDrained) })
		defer func() {
			release()
			cancel(nil)
		}()
		resp, err := handler(ctx, req)
		if err != nil && d.ctx.Err() != nil && status.Code(err) == codes.Canceled {
			err = errDrained()
		}
		return resp, err
	}
}

// stream is unary for streaming calls (health watches, reflection).
func (d *callDrain) stream() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, cancel := context.WithCancelCause(ss.Context())
		release := context.AfterFunc(d.ctx, func() { cancel(service.ErrDrained) })
		defer func() {
			release()
			cancel(nil)
		}()
		err := handler(srv, drainedStream{ServerStream: ss, ctx: ctx})
		if err != nil && d.ctx.Err() != nil && status.Code(err) == codes.Canceled {
			err = errDrained()
		}
		return err
	}
}

// drainedStream is a ServerStream with the drain's context.
type drainedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s drainedStream) Context() context.Context { return s.ctx }
