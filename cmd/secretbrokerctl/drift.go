package main

import (
	"context"
	"fmt"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
)

// exitDrift is drift's exit code with --exit-code when the scope drifted.
const exitDrift = 3

func driftCommand() command {
	return command{
		name:    "drift",
		args:    "PARENT",
		summary: "list a scope's drifted, unmanaged and missing secrets (DetectDrift)",
		run:     runDrift,
	}
}

// driftJSON is drift's JSON output: the response as the gateway writes it.
type driftJSON struct {
	Parent string    `json:"parent"`
	Drift  protoJSON `json:"drift"`
}

// runDrift prints how a scope differs from what the broker last wrote: one
// row per secret, its state (drifted, unmanaged, missing), the updated_at
// the broker recorded after its last write, the one GitHub reports now,
// and the owner recorded. With --exit-code it exits 3 when a secret
// drifted or is missing (unmanaged secrets, which a person or another tool
// may rightly own, do not count).
func runDrift(ctx context.Context, c *cli, args []string) int {
	var (
		opts     common
		exitCode bool
	)
	fs := c.flags("drift", &opts, defaultTimeout)
	fs.BoolVar(&exitCode, "exit-code", false, "exit 3 when a secret drifted or is missing, as git diff --exit-code")
	pos, exit := c.parseOrExit(fs, &opts, args, "PARENT", 1)
	if exit >= 0 {
		return exit
	}
	parent := pos[0]
	client, closeConn, err := c.connect(&opts)
	if err != nil {
		return c.usageErr("drift", err)
	}
	defer closeConn()
	cctx, cancel := context.WithTimeout(ctx, opts.timeout)
	resp, err := client.DetectDrift(cctx, &secretbrokerv1.DetectDriftRequest{Parent: parent}, retry(retryRepeatable))
	cancel()
	if err != nil {
		return c.callFailed("drift", parent, err)
	}
	if opts.output == outputJSON {
		if err := writeJSON(c.stdout, driftJSON{Parent: parent, Drift: protoJSON{resp}}); err != nil {
			return c.outputFailed("drift", err)
		}
	} else if err := c.printDrift(parent, resp); err != nil {
		return c.outputFailed("drift", err)
	}
	if exitCode && (len(resp.GetDrifted()) > 0 || len(resp.GetMissing()) > 0) {
		return exitDrift
	}
	return exitOK
}

// printDrift writes the drift as one table, or a line saying there is none.
func (c *cli) printDrift(parent string, resp *secretbrokerv1.DetectDriftResponse) error {
	if len(resp.GetDrifted())+len(resp.GetUnmanaged())+len(resp.GetMissing()) == 0 {
		_, err := fmt.Fprintf(c.stdout, "no drift in %s\n", parent)
		if err != nil {
			return fmt.Errorf("write output: %w", err)
		}
		return nil
	}
	t := newTable(c.stdout, "SECRET", "STATE", "RECORDED_UPDATED", "GITHUB_UPDATED", "OWNER")
	for _, d := range resp.GetDrifted() {
		t.row(shortName(d.GetSecret().GetName()), "drifted", timestamp(d.GetRecordedUpdatedAt()), timestamp(d.GetSecret().GetUpdatedAt()), orDash(d.GetOwner()))
	}
	for _, s := range resp.GetUnmanaged() {
		t.row(shortName(s.GetName()), "unmanaged", "-", timestamp(s.GetUpdatedAt()), "-")
	}
	for _, m := range resp.GetMissing() {
		t.row(shortName(m), "missing", "-", "-", "-")
	}
	return t.flush()
}
