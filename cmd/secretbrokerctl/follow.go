package main

import (
	"context"
	"fmt"
	"time"

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
	// interrupted: ctx ended (Ctrl-C) and CancelOperation was sent.
	interrupted bool
	// err: a call failed; the operation may still be running.
	err error
}

// follow waits for op to be done with WaitOperation, showing its progress
// on p after every wait. When ctx ends (an interrupt), it cancels the
// operation (CancelOperation), waits a little for it to end, and returns
// it as it is then.
func (c *cli) follow(ctx context.Context, client secretbrokerv1.SecretServiceClient, op *secretbrokerv1.Operation, p *progress, step time.Duration) followed {
	for !op.GetDone() {
		p.update(op.GetMetadata())
		wctx, cancel := context.WithTimeout(ctx, step+callSlack)
		next, err := client.WaitOperation(wctx, &secretbrokerv1.WaitOperationRequest{Name: op.GetName(), Timeout: durationpb.New(step)})
		cancel()
		if ctx.Err() != nil {
			p.interrupt()
			return c.cancelOp(ctx, client, op)
		}
		if err != nil {
			p.interrupt()
			return followed{op: op, err: err}
		}
		op = next
	}
	p.finish(op.GetMetadata())
	return followed{op: op}
}

// cancelOp cancels op after an interrupt and waits for it to end, for
// cancelTimeout at most; a call that fails leaves op as it was last seen.
func (c *cli) cancelOp(ctx context.Context, client secretbrokerv1.SecretServiceClient, op *secretbrokerv1.Operation) followed {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cancelTimeout)
	defer cancel()
	fmt.Fprintf(c.stderr, "%s: interrupted: cancelling %s\n", progName, op.GetName())
	got, err := client.CancelOperation(cctx, &secretbrokerv1.CancelOperationRequest{Name: op.GetName()})
	if err != nil {
		return followed{op: op, interrupted: true, err: fmt.Errorf("cancel: %w", err)}
	}
	op = got
	if !op.GetDone() {
		got, err := client.WaitOperation(cctx, &secretbrokerv1.WaitOperationRequest{Name: op.GetName(), Timeout: durationpb.New(cancelTimeout - time.Second)})
		if err != nil {
			return followed{op: op, interrupted: true, err: fmt.Errorf("wait for the cancelled operation: %w", err)}
		}
		op = got
	}
	return followed{op: op, interrupted: true}
}
