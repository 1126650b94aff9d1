package main

import (
	"context"
	"fmt"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
)

// maxOpsPages bounds how many pages ops follows.
const maxOpsPages = 1000

func opsCommand() command {
	return command{
		name:    "ops",
		args:    "",
		summary: "list your long-running operations (ListOperations)",
		run:     runOps,
	}
}

func opCommand() command {
	return command{
		name:    "op",
		args:    "NAME",
		summary: "show an operation's progress and its items' results (GetOperation)",
		run:     runOp,
	}
}

func cancelCommand() command {
	return command{
		name:    "cancel",
		args:    "NAME",
		summary: "ask an operation to stop at its next item (CancelOperation)",
		run:     runCancel,
	}
}

// opsJSON is ops' JSON output.
type opsJSON struct {
	Operations []protoJSON `json:"operations"`
}

// runOps lists the caller's operations, every page.
func runOps(ctx context.Context, c *cli, args []string) int {
	var (
		opts    common
		notDone bool
	)
	fs := c.flags("ops", &opts, defaultTimeout)
	fs.BoolVar(&notDone, "not-done", false, "only operations still running")
	if _, exit := c.parseOrExit(fs, &opts, args, "no argument", 0); exit >= 0 {
		return exit
	}
	client, closeConn, err := c.connect(&opts)
	if err != nil {
		return c.usageErr("ops", err)
	}
	defer closeConn()
	var (
		ops   []*secretbrokerv1.Operation
		token string
	)
	for page := 0; ; page++ {
		if page == maxOpsPages {
			c.errorf("ops: more than %d pages; stopped", maxOpsPages)
			return exitFail
		}
		cctx, cancel := context.WithTimeout(ctx, opts.timeout)
		resp, err := client.ListOperations(cctx, &secretbrokerv1.ListOperationsRequest{PageSize: 100, PageToken: token, NotDone: notDone}, retry(retryRepeatable))
		cancel()
		if err != nil {
			return c.callFailed("ops", "", err)
		}
		ops = append(ops, resp.GetOperations()...)
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
	}
	if opts.output == outputJSON {
		out := opsJSON{Operations: make([]protoJSON, 0, len(ops))}
		for _, op := range ops {
			out.Operations = append(out.Operations, protoJSON{c.scrubOp(op)})
		}
		if err := writeJSON(c.stdout, out); err != nil {
			return c.outputFailed("ops", err)
		}
		return exitOK
	}
	t := newTable(c.stdout, "OPERATION", "KIND", "STATE", "DONE", "WRITTEN", "DELETED", "UNCHANGED", "FOREIGN", "FAILED", "UPDATED")
	for _, op := range ops {
		md, k := op.GetMetadata(), countsOf(op)
		row := []string{op.GetName(), orDash(md.GetKind()), opState(op), fmt.Sprintf("%d/%d", k.done, k.total)}
		row = append(row, k.cells()...)
		t.row(append(row, timestamp(md.GetUpdateTime()))...)
	}
	if err := t.flush(); err != nil {
		return c.outputFailed("ops", err)
	}
	return exitOK
}

// runOp shows one operation: its progress and, for the items it finished,
// their results.
func runOp(ctx context.Context, c *cli, args []string) int {
	return c.runOneOp(ctx, "op", args, func(ctx context.Context, client secretbrokerv1.SecretServiceClient, name string) (*secretbrokerv1.Operation, error) {
		return client.GetOperation(ctx, &secretbrokerv1.GetOperationRequest{Name: name}, retry(retryRepeatable))
	})
}

// runCancel asks an operation to stop and shows it as it is then.
func runCancel(ctx context.Context, c *cli, args []string) int {
	return c.runOneOp(ctx, "cancel", args, func(ctx context.Context, client secretbrokerv1.SecretServiceClient, name string) (*secretbrokerv1.Operation, error) {
		// Cancelling a cancelled operation changes nothing.
		return client.CancelOperation(ctx, &secretbrokerv1.CancelOperationRequest{Name: name}, retry(retryRepeatable))
	})
}

// runOneOp runs the subcommand cmd, which takes one operation's NAME,
// makes call with it and prints the operation call returns.
func (c *cli) runOneOp(ctx context.Context, cmd string, args []string,
	call func(context.Context, secretbrokerv1.SecretServiceClient, string) (*secretbrokerv1.Operation, error)) int {
	var opts common
	fs := c.flags(cmd, &opts, defaultTimeout)
	pos, exit := c.parseOrExit(fs, &opts, args, "NAME", 1)
	if exit >= 0 {
		return exit
	}
	name := pos[0]
	client, closeConn, err := c.connect(&opts)
	if err != nil {
		return c.usageErr(cmd, err)
	}
	defer closeConn()
	cctx, cancel := context.WithTimeout(ctx, opts.timeout)
	op, err := call(cctx, client, name)
	cancel()
	if err != nil {
		return c.callFailed(cmd, name, err)
	}
	if err := c.printOp(opts.output, op); err != nil {
		return c.outputFailed(cmd, err)
	}
	return exitOK
}

// printOp writes an operation: its fields, then its items' results (sync
// or batch) as a table; or the operation as JSON.
func (c *cli) printOp(output string, op *secretbrokerv1.Operation) error {
	op = c.scrubOp(op)
	if output == outputJSON {
		return writeJSON(c.stdout, protoJSON{op})
	}
	md, k := op.GetMetadata(), countsOf(op)
	t := newTable(c.stdout)
	t.row("NAME", op.GetName())
	t.row("KIND", orDash(md.GetKind()))
	t.row("STATE", opState(op))
	t.row("DONE", fmt.Sprintf("%d/%d (%s)", k.done, k.total, k.outcomes()))
	if !op.GetDone() {
		t.row("ESTIMATED_END", timestamp(md.GetEstimatedCompletionTime()))
	}
	t.row("CREATED", timestamp(md.GetCreateTime()))
	t.row("UPDATED", timestamp(md.GetUpdateTime()))
	if e := op.GetError(); e != nil && e.GetCode() != int32(code.Code_OK) {
		t.row("ERROR", code.Code(e.GetCode()).String()+": "+e.GetMessage())
	}
	if err := t.flush(); err != nil {
		return err
	}
	resp := op.GetResponse()
	if len(resp.GetSyncResults()) == 0 && len(resp.GetBatchPutResults()) == 0 {
		return nil
	}
	fmt.Fprintln(c.stdout)
	items := newTable(c.stdout, "SECRET", "ACTION", "RESULT", "DETAIL")
	for _, r := range resp.GetSyncResults() {
		detail := ""
		if r.GetCode() != code.Code_OK {
			detail = r.GetMessage()
		}
		items.row(r.GetName(), actionWord(r.GetAction()), r.GetCode().String(), detail)
	}
	for _, r := range resp.GetBatchPutResults() {
		action, detail := "update", ""
		switch {
		case r.GetCode() != code.Code_OK:
			action, detail = "-", itemMessage(r)
		case r.GetUnchanged():
			action = "unchanged"
		case r.GetCreated():
			action = "create"
		}
		items.row(r.GetName(), action, r.GetCode().String(), detail)
	}
	return items.flush()
}

// scrubOp returns op with every message scrubbed of the run's secrets.
func (c *cli) scrubOp(op *secretbrokerv1.Operation) *secretbrokerv1.Operation {
	op = proto.CloneOf(op)
	if e := op.GetError(); e != nil {
		e.Message = c.scrub(e.GetMessage())
	}
	for _, r := range op.GetResponse().GetSyncResults() {
		r.Message = c.scrub(r.GetMessage())
	}
	for _, r := range op.GetResponse().GetBatchPutResults() {
		r.Message = c.scrub(r.GetMessage())
	}
	return op
}

// opState is "running", "done", "cancelled" or "failed".
func opState(op *secretbrokerv1.Operation) string {
	switch e := op.GetError(); {
	case !op.GetDone():
		return "running"
	case e == nil || e.GetCode() == int32(codes.OK):
		return "done"
	case e.GetCode() == int32(codes.Canceled):
		return "cancelled"
	default:
		return "failed (" + strings.ToLower(code.Code(e.GetCode()).String()) + ")"
	}
}
