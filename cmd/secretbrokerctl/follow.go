package main

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
)

const (
	// waitStepTTY is how long one WaitOperation waits when a progress bar
	// is drawn: the bar is redrawn at least this often.
	waitStepTTY = time.Second
	// waitStepPlain is how long one WaitOperation waits otherwise.
	waitStepPlain = plainEvery
	// callSlack is added to a WaitOperation's own timeout for its deadline.
	callSlack = 10 * time.Second
	// cancelTimeout bounds CancelOperation and the wait for the cancelled
	// operation to end, after an interrupt.
	cancelTimeout = 15 * time.Second
)

// followed is how following an operation ended.
type followed struct {
	op *secretbrokerv1.Operation // the operation as last seen
	// interrupted: ctx ended (Ctrl-C) before the operation was seen done,
	// and CancelOperation was sent. An operation that turned out to have
	// completed anyway (done without an error) is not interrupted.
	interrupted bool
	// err: a call failed (call names it); the operation may still be
	// running. With interrupted, the cancel itself failed, or the wait
	// for the cancelled operation to stop.
	err  error
	call string
}

// follow waits for op to be done with WaitOperation, showing its progress
// on p after every wait. When ctx ends (an interrupt), it cancels the
// operation (CancelOperation), waits a little for it to end, and returns
// it as it is then. An answer that the operation is done counts even when
// ctx ended while it was on its way: the operation completed, and there is
// nothing left to cancel.
func (c *cli) follow(ctx context.Context, client secretbrokerv1.SecretServiceClient, op *secretbrokerv1.Operation, p *progress, step time.Duration) followed {
	for !op.GetDone() {
		p.update(op)
		wctx, cancel := context.WithTimeout(ctx, step+callSlack)
		next, err := client.WaitOperation(wctx, &secretbrokerv1.WaitOperationRequest{Name: op.GetName(), Timeout: durationpb.New(step)},
			retryCall{kind: retryRepeatable, beforeNotice: p.interrupt})
		cancel()
		if err == nil && next.GetDone() {
			op = next
			break
		}
		if ctx.Err() != nil {
			if err == nil {
				op = next
			}
			p.interrupt()
			return c.cancelOp(ctx, client, op)
		}
		if err != nil {
			p.interrupt()
			return followed{op: op, err: err, call: "WaitOperation"}
		}
		op = next
	}
	p.finish(op)
	return followed{op: op}
}

// cancelOp cancels op after an interrupt and waits for it to end, for
// cancelTimeout at most; a call that fails leaves op as it was last seen.
func (c *cli) cancelOp(ctx context.Context, client secretbrokerv1.SecretServiceClient, op *secretbrokerv1.Operation) followed {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cancelTimeout)
	defer cancel()
	fmt.Fprintf(c.stderr, "%s: interrupted: cancelling %s\n", progName, op.GetName())
	got, err := client.CancelOperation(cctx, &secretbrokerv1.CancelOperationRequest{Name: op.GetName()}, retry(retryRepeatable))
	if err != nil {
		return followed{op: op, interrupted: true, err: err, call: "CancelOperation"}
	}
	op = got
	if !op.GetDone() {
		got, err := client.WaitOperation(cctx, &secretbrokerv1.WaitOperationRequest{Name: op.GetName(), Timeout: durationpb.New(cancelTimeout - time.Second)}, retry(retryRepeatable))
		if err == nil && !got.GetDone() {
			err = status.Error(codes.DeadlineExceeded, "the operation had not stopped yet")
		}
		if err != nil {
			return followed{op: op, interrupted: true, err: err, call: "WaitOperation for the cancelled operation"}
		}
		op = got
	}
	if completed(op) {
		fmt.Fprintf(c.stderr, "%s: %s had completed before it could be cancelled\n", progName, op.GetName())
		return followed{op: op}
	}
	return followed{op: op, interrupted: true}
}

// completed reports whether op is done without an error: it ran to its
// end (whatever its items' results).
func completed(op *secretbrokerv1.Operation) bool {
	e := op.GetError()
	return op.GetDone() && (e == nil || e.GetCode() == int32(code.Code_OK))
}
