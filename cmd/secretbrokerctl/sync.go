package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
)

func syncCommand() command {
	return command{
		name:    "sync",
		args:    "--from-env-file FILE PARENT",
		summary: "make a scope hold an env file's values: the plan, then an operation with progress (SyncSecrets)",
		run:     runSync,
	}
}

// syncOptions are sync's own flags.
type syncOptions struct {
	envFile string
	owner   string
	prune   bool
	dryRun  bool
	force   bool
	yes     bool
	org     orgFlags
}

// syncSummary counts a sync's results.
type syncSummary struct {
	Written   int `json:"written"`
	Deleted   int `json:"deleted"`
	Unchanged int `json:"unchanged"`
	Foreign   int `json:"foreign"`
	Failed    int `json:"failed"`
}

// syncJSON is sync's JSON output, one document at the end. Every field is
// present, as in the gateway's JSON: operation and error "", results []
// and summary null until the sync runs.
type syncJSON struct {
	Parent    string       `json:"parent"`
	DryRun    bool         `json:"dry_run"`
	Plan      []protoJSON  `json:"plan"`
	Operation string       `json:"operation"`
	Results   []protoJSON  `json:"results"`
	Summary   *syncSummary `json:"summary"`
	Error     string       `json:"error"`
}

// runSync makes PARENT hold the values of an env file: it asks the broker
// for the plan (SyncSecrets with dry_run), prints it, and unless
// --dry-run, runs the sync as an operation (async) and follows it to the
// end with a progress bar (plain lines when stdout is not a terminal);
// then it prints the failed items and a summary.
func runSync(ctx context.Context, c *cli, args []string) int {
	var (
		opts common
		so   syncOptions
	)
	fs := c.flags("sync", &opts, putManyTimeout)
	fs.StringVar(&so.envFile, "from-env-file", "", "file of KEY=VALUE lines: the values the scope must hold (\"-\": standard input, never a terminal)")
	fs.BoolVar(&so.prune, "prune", false, "delete the secrets this owner wrote through the broker that the file no longer lists (never another owner's)")
	fs.BoolVar(&so.dryRun, "dry-run", false, "print the plan and write nothing")
	fs.StringVar(&so.owner, "owner", "", "owner label recorded with every secret written (default: the caller's identity)")
	fs.BoolVar(&so.force, "force", false, "write every secret even when unchanged, and take over names another owner wrote")
	fs.BoolVar(&so.yes, "yes", false, "delete without asking (required for --prune when standard input is not a terminal)")
	fs.StringVar(&so.org.visibility, "visibility", "", "organization scopes: visibility of every secret: all, private or selected")
	fs.StringVar(&so.org.repos, "repos", "", "organization scopes: repository ids that may use every secret, comma separated (implies --visibility selected)")
	pos, exit := c.parseOrExit(fs, &opts, args, "PARENT", 1)
	if exit >= 0 {
		return exit
	}
	parent := strings.TrimSuffix(pos[0], "/")
	if so.envFile == "" {
		return c.usageErr("sync", errors.New("--from-env-file is required"))
	}
	interactive := c.term.IsTerminal(c.stdin)
	if so.prune && !so.dryRun && !so.yes && !interactive {
		return c.usageErr("sync", errors.New("--prune deletes secrets: standard input is not a terminal to confirm it; add --yes (or try --dry-run first)"))
	}
	var tmpl secretbrokerv1.PutSecretRequest
	if err := so.org.apply(&tmpl); err != nil {
		return c.usageErr("sync", err)
	}
	if len(tmpl.GetSelectedRepositories()) > 0 {
		return c.usageErr("sync", fmt.Errorf("--repos: sync takes repository ids only, not names (%s)", strings.Join(tmpl.GetSelectedRepositories(), ", ")))
	}
	// From here on every failure writes, with -o json, the one JSON
	// document with its error.
	out := syncJSON{Parent: parent, DryRun: so.dryRun, Plan: []protoJSON{}, Results: []protoJSON{}}
	entries, err := c.readEnvFile(ctx, so.envFile)
	if err != nil {
		if ctx.Err() != nil { // interrupted while reading: not a usage error
			return c.syncFailed(opts.output, &out, err.Error(), fmt.Sprintf("sync %s: %v", parent, err))
		}
		return c.usageErr("sync", err)
	}
	req := &secretbrokerv1.SyncSecretsRequest{
		Parent:                parent,
		Secrets:               make(map[string]string, len(entries)),
		Prune:                 so.prune,
		Owner:                 so.owner,
		Force:                 so.force,
		Visibility:            tmpl.GetVisibility(),
		SelectedRepositoryIds: tmpl.GetSelectedRepositoryIds(),
	}
	for _, e := range entries {
		req.Secrets[e.key] = e.value
	}
	client, closeConn, err := c.connect(&opts)
	if err != nil {
		return c.usageErr("sync", err)
	}
	defer closeConn()

	// The plan.
	planReq := proto.CloneOf(req)
	planReq.DryRun = true
	cctx, cancel := context.WithTimeout(ctx, opts.timeout)
	planResp, err := client.SyncSecrets(cctx, planReq, retry(retryRepeatable)) // a dry run writes nothing
	cancel()
	if err != nil {
		return c.syncFailed(opts.output, &out, c.describe(err), fmt.Sprintf("sync %s: %s", parent, c.describe(err)))
	}
	plan := planResp.GetResults()
	out.Plan = c.resultsJSON(plan)
	if opts.output == outputTable {
		if err := c.printPlan(plan); err != nil {
			return c.outputFailed("sync", err)
		}
	}
	if so.dryRun {
		if opts.output == outputJSON {
			if err := writeJSON(c.stdout, out); err != nil {
				return c.outputFailed("sync", err)
			}
		}
		if c.reportFailed("sync", "plan items cannot be carried out", plan) > 0 {
			return exitFail
		}
		return exitOK
	}

	// What the plan deletes is what may be deleted: the run sends it as
	// expected_deletes (none: an empty list), and the broker refuses
	// (ABORTED) a run whose own plan would delete anything else.
	deletes := plannedDeletes(plan)
	if so.prune {
		req.ExpectedDeletes = &secretbrokerv1.ExpectedDeletes{SecretNames: deletes}
	}
	if len(deletes) > 0 && !so.yes {
		ok, err := c.confirm(ctx, fmt.Sprintf("Delete %d secret(s) from %s (%s)? [y/N] ", len(deletes), parent, strings.Join(deletes, ", ")))
		if err != nil || !ok {
			why := "not confirmed; nothing written"
			if ctx.Err() != nil {
				why = "interrupted: not confirmed; nothing written"
			}
			return c.syncFailed(opts.output, &out, why, fmt.Sprintf("sync %s: %s", parent, why))
		}
	}

	// The run.
	progressOut := c.stdout
	if opts.output == outputJSON {
		progressOut = c.stderr // stdout holds one JSON document
	}
	tty := opts.output == outputTable && c.term.IsTerminal(c.stdout)
	res := c.runSyncOp(ctx, client, &opts, req, newProgress(progressOut, tty, "sync "+parent, c.now), tty)
	out.Operation = res.op
	out.Results = c.resultsJSON(res.results)
	k := countItems(&secretbrokerv1.OperationResponse{SyncResults: res.results}, true)
	sum := k.summary()
	out.Summary = &sum
	var msgs []string // for standard error, after the failed items
	switch {
	case res.aborted:
		out.Error = c.describe(res.err)
		msgs = append(msgs,
			fmt.Sprintf("sync %s: the scope changed since the plan above was made, and the run would delete other secrets than the plan showed: %s", parent, out.Error),
			fmt.Sprintf("sync %s: nothing was changed; run sync again to see the new plan", parent))
	case res.mayHaveStarted:
		out.Error = c.describe(res.err)
		msgs = append(msgs,
			fmt.Sprintf("sync %s: %s", parent, out.Error),
			fmt.Sprintf("sync %s: the sync may have been accepted as an operation before the call ended: %s ops --not-done lists yours still running, %s cancel NAME stops one", parent, progName, progName))
	case res.interrupted && res.err != nil:
		out.Error = fmt.Sprintf("interrupted; %s failed: %s; %s may still be running", res.call, c.describe(res.err), res.op)
		msgs = append(msgs,
			fmt.Sprintf("sync %s: interrupted, but %s of %s failed: %s", parent, res.call, res.op, c.describe(res.err)),
			fmt.Sprintf("sync %s: %s may still be running: %s cancel %s stops it, %s op %s shows it", parent, res.op, progName, res.op, progName, res.op))
	case res.interrupted:
		out.Error = "CANCELLED: interrupted; the operation was cancelled"
		msgs = append(msgs, fmt.Sprintf("sync %s: interrupted; %s cancelled after %d of %d items", parent, orDash(res.op), len(res.results), res.total))
	case res.err != nil:
		out.Error = c.describe(res.err)
		msgs = append(msgs, fmt.Sprintf("sync %s: %s", parent, out.Error))
		if res.lost {
			msgs = append(msgs, fmt.Sprintf("sync %s: %s may still be running: %s op %s", parent, res.op, progName, res.op))
		}
	}
	if opts.output == outputJSON {
		if err := writeJSON(c.stdout, out); err != nil {
			return c.outputFailed("sync", err)
		}
	} else {
		fmt.Fprintln(c.stdout, k.outcomes())
	}
	failed := c.reportFailed("sync", "items failed", res.results)
	for _, m := range msgs {
		c.errorf("%s", m)
	}
	if failed > 0 || res.err != nil || res.interrupted {
		return exitFail
	}
	return exitOK
}

// syncFailed ends a sync that failed before running: msg on standard
// error and, with -o json, the JSON document so far with its error.
func (c *cli) syncFailed(output string, out *syncJSON, jsonErr, msg string) int {
	if output == outputJSON {
		out.Error = c.scrub(jsonErr)
		if err := writeJSON(c.stdout, out); err != nil {
			return c.outputFailed("sync", err)
		}
	}
	c.errorf("%s", msg)
	return exitFail
}

// plannedDeletes returns the short names of the plan's deletes that will
// be carried out (DELETE with OK; a delete the plan already refuses, such
// as one changed at GitHub, is not one), sorted by the plan.
func plannedDeletes(plan []*secretbrokerv1.SyncSecretsResult) []string {
	deletes := []string{}
	for _, r := range plan {
		if r.GetAction() == secretbrokerv1.SyncAction_SYNC_ACTION_DELETE && r.GetCode() == code.Code_OK {
			deletes = append(deletes, shortName(r.GetName()))
		}
	}
	return deletes
}

// syncRun is how running a sync ended.
type syncRun struct {
	op          string // the operation's name; "" without one
	results     []*secretbrokerv1.SyncSecretsResult
	total       int
	interrupted bool
	// err: the call failed, the operation ended with an error, or
	// following (or, with interrupted, cancelling) it failed.
	err error
	// call names the call following the operation that failed.
	call string
	// lost: following the operation failed; it may still be running.
	lost bool
	// aborted: the broker refused the run (ABORTED) because its plan
	// would delete other secrets than expected_deletes; nothing changed.
	aborted bool
	// mayHaveStarted: the call that starts the operation failed without
	// a refusal from the broker (interrupted, timed out, the connection
	// lost, ...): an operation may have been accepted all the same.
	mayHaveStarted bool
}

// runSyncOp runs req as an operation and follows it to the end. A broker
// that does not serve operations (UNIMPLEMENTED for async) is sent the
// sync in one call instead, without progress.
func (c *cli) runSyncOp(ctx context.Context, client secretbrokerv1.SecretServiceClient, opts *common, req *secretbrokerv1.SyncSecretsRequest, p *progress, tty bool) syncRun {
	areq := proto.CloneOf(req)
	areq.Async = true
	// Starting the operation is sent again only after the broker refused
	// it (RESOURCE_EXHAUSTED with a RetryInfo): after UNAVAILABLE it may
	// have been accepted, and a second start would run the sync twice.
	var trace retryTrace
	c.setRunning(fmt.Sprintf("the sync of %s may have been accepted as an operation: %s ops --not-done lists yours still running, %s cancel NAME stops one", req.GetParent(), progName, progName))
	cctx, cancel := context.WithTimeout(ctx, opts.timeout)
	resp, err := client.SyncSecrets(cctx, areq, retryTraced(retryRefused, &trace))
	cancel()
	if err != nil {
		c.setRunning("")
	}
	if status.Code(err) == codes.Unimplemented {
		fmt.Fprintf(c.stderr, "%s: the broker does not run operations; syncing in one call, without progress\n", progName)
		// As the start: sent again only when refused. A sync cut off after
		// deleting some of expected_deletes would be refused (ABORTED) as
		// if the scope had changed by itself.
		cctx, cancel := context.WithTimeout(ctx, opts.timeout)
		resp, err := client.SyncSecrets(cctx, req, retry(retryRefused))
		cancel()
		if err != nil {
			return syncRun{err: err, aborted: status.Code(err) == codes.Aborted}
		}
		return syncRun{results: resp.GetResults(), total: len(resp.GetResults())}
	}
	if err != nil {
		r := syncRun{err: err}
		switch {
		case status.Code(err) == codes.Aborted && ctx.Err() == nil:
			r.aborted = true
		case trace.interrupted:
			// Interrupted while waiting to send it again: every attempt
			// was refused.
		case ctx.Err() != nil || !refusal(status.Code(err)):
			r.mayHaveStarted = true
		}
		return r
	}
	op := resp.GetOperation()
	if op.GetName() == "" {
		c.setRunning("")
		return syncRun{results: resp.GetResults(), total: len(resp.GetResults()), err: errors.New("the broker answered async without an operation")}
	}
	step := waitStepPlain
	if tty {
		step = waitStepTTY
	}
	c.setRunning(fmt.Sprintf("%s may still be running: %s op %s shows it, %s cancel %s stops it", op.GetName(), progName, op.GetName(), progName, op.GetName()))
	f := c.follow(ctx, client, op, p, step)
	if f.op.GetDone() {
		c.setRunning("")
	}
	r := syncRun{
		op:          f.op.GetName(),
		results:     ranResults(f.op.GetResponse().GetSyncResults()),
		total:       int(f.op.GetMetadata().GetTotal()),
		interrupted: f.interrupted,
		err:         f.err,
		call:        f.call,
		lost:        f.err != nil,
	}
	if r.err == nil && !r.interrupted && f.op.GetError() != nil && f.op.GetError().GetCode() != int32(code.Code_OK) {
		st := f.op.GetError()
		r.err = status.Error(codes.Code(st.GetCode()), st.GetMessage())
	}
	return r
}

// refusal reports whether c, a call's failure, is the broker's answer
// that it did not take the call on (the request is wrong, not allowed, or
// conflicts with the state), as opposed to an end (a deadline, an
// interrupt, a lost connection, an internal error) that leaves it unknown
// whether the broker took it on.
func refusal(c codes.Code) bool {
	switch c {
	case codes.InvalidArgument, codes.NotFound, codes.AlreadyExists, codes.PermissionDenied, codes.ResourceExhausted,
		codes.FailedPrecondition, codes.Aborted, codes.OutOfRange, codes.Unimplemented, codes.Unauthenticated:
		return true
	}
	return false
}

// printPlan writes the plan as a table: secret, action, the owner the
// broker recorded (conflict, foreign), and why an item cannot be done.
func (c *cli) printPlan(plan []*secretbrokerv1.SyncSecretsResult) error {
	t := newTable(c.stdout, "SECRET", "ACTION", "OWNER", "DETAIL")
	for _, r := range plan {
		detail := ""
		if r.GetCode() != code.Code_OK {
			detail = c.scrub(r.GetCode().String() + ": " + r.GetMessage())
		}
		t.row(shortName(r.GetName()), actionWord(r.GetAction()), orDash(r.GetRecordedOwner()), detail)
	}
	return t.flush()
}

// reportFailed writes the items whose code is not OK on stderr, after
// "CMD: N of M WHAT:", and returns how many there are.
func (c *cli) reportFailed(cmd, what string, results []*secretbrokerv1.SyncSecretsResult) int {
	var failed []*secretbrokerv1.SyncSecretsResult
	for _, r := range results {
		if r.GetCode() != code.Code_OK {
			failed = append(failed, r)
		}
	}
	if len(failed) == 0 {
		return 0
	}
	c.errorf("%s: %d of %d %s:", cmd, len(failed), len(results), what)
	for _, r := range failed {
		msg := r.GetCode().String() + ": " + r.GetMessage()
		if d := r.GetRetryAfter(); d != nil {
			msg += fmt.Sprintf(" (retry after %s)", d.AsDuration())
		}
		fmt.Fprintf(c.stderr, "  %s (%s): %s\n", r.GetName(), actionWord(r.GetAction()), c.scrub(msg))
	}
	return len(failed)
}

// ranResults returns the results of the items run: without those of the
// items an operation ended without running (notRun), which a cancelled
// sync reports by their number ("cancelled after 1 of 3 items").
func ranResults(results []*secretbrokerv1.SyncSecretsResult) []*secretbrokerv1.SyncSecretsResult {
	ran := make([]*secretbrokerv1.SyncSecretsResult, 0, len(results))
	for _, r := range results {
		if !notRun(r.GetCode()) {
			ran = append(ran, r)
		}
	}
	return ran
}

// resultsJSON is results as the gateway writes them, messages scrubbed.
func (c *cli) resultsJSON(results []*secretbrokerv1.SyncSecretsResult) []protoJSON {
	out := make([]protoJSON, 0, len(results))
	for _, r := range results {
		r = proto.CloneOf(r)
		r.Message = c.scrub(r.GetMessage())
		out = append(out, protoJSON{r})
	}
	return out
}

// shortName is a secret's name without its scope: "NPM_TOKEN" of
// "repos/o/r/actions/secrets/NPM_TOKEN".
func shortName(name string) string {
	if i := strings.LastIndex(name, "/secrets/"); i >= 0 {
		return name[i+len("/secrets/"):]
	}
	return name
}

// actionWord is an action as the plan shows it: "create", "update", ...
func actionWord(a secretbrokerv1.SyncAction) string {
	w := strings.ToLower(strings.TrimPrefix(a.String(), "SYNC_ACTION_"))
	if a == secretbrokerv1.SyncAction_SYNC_ACTION_UNSPECIFIED {
		return "-"
	}
	return w
}

// confirm asks question on stderr and reads the answer, a line, from
// standard input (a terminal): true for "y" or "yes". It returns ctx's
// error when ctx ends first.
func (c *cli) confirm(ctx context.Context, question string) (bool, error) {
	fmt.Fprint(c.stderr, question)
	type answer struct {
		line string
		err  error
	}
	got := make(chan answer, 1)
	go func() {
		var b strings.Builder
		buf := make([]byte, 1)
		for b.Len() < 64 {
			n, err := c.stdin.Read(buf)
			if n == 1 {
				if buf[0] == '\n' {
					break
				}
				b.WriteByte(buf[0])
			}
			if err != nil {
				if errors.Is(err, io.EOF) && b.Len() > 0 {
					break
				}
				got <- answer{err: err}
				return
			}
		}
		got <- answer{line: b.String()}
	}()
	select {
	case a := <-got:
		if a.err != nil {
			return false, a.err
		}
		switch strings.ToLower(strings.TrimSpace(a.line)) {
		case "y", "yes":
			return true, nil
		}
		return false, nil
	case <-ctx.Done():
		fmt.Fprintln(c.stderr)
		return false, ctx.Err()
	}
}
