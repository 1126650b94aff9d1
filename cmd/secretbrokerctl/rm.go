package main

import (
	"context"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
)

func rmCommand() command {
	return command{
		name:    "rm",
		args:    "NAME",
		summary: "delete a secret",
		run:     runRm,
	}
}

// rmJSON is rm's JSON output.
type rmJSON struct {
	Name    string `json:"name"`
	Deleted bool   `json:"deleted"`
}

// runRm deletes one secret. It asks no confirmation: the name is given in
// full.
func runRm(ctx context.Context, c *cli, args []string) int {
	var opts common
	fs := c.flags("rm", &opts, defaultTimeout)
	pos, exit := c.parseOrExit(fs, &opts, args, "NAME", 1)
	if exit >= 0 {
		return exit
	}
	name := pos[0]
	client, closeConn, err := c.connect(&opts)
	if err != nil {
		return c.usageErr("rm", err)
	}
	defer closeConn()

	cctx, cancel := context.WithTimeout(ctx, opts.timeout)
	defer cancel()
	// A delete sent again ends as the first would have; but when an
	// attempt cut off (UNAVAILABLE, or ABORTED: cut after GitHub was sent
	// it) may have deleted the secret, the next one's NOT_FOUND may be its
	// doing, and rm says so.
	var trace retryTrace
	if _, err := client.DeleteSecret(cctx, &secretbrokerv1.DeleteSecretRequest{Name: name}, retryTraced(retryRepeatable, &trace)); err != nil {
		code := c.callFailed("rm", name, err)
		if status.Code(err) == codes.NotFound {
			for _, cut := range []codes.Code{codes.Unavailable, codes.Aborted} {
				if trace.sawCode(cut) {
					c.errorf("rm %s: an earlier attempt ended %s and may have deleted it", name, codeName(cut))
					break
				}
			}
		}
		return code
	}
	if opts.output == outputJSON {
		err = writeJSON(c.stdout, rmJSON{Name: name, Deleted: true})
	} else {
		_, err = fmt.Fprintf(c.stdout, "deleted %s\n", name)
	}
	if err != nil {
		return c.outputFailed("rm", err)
	}
	return exitOK
}
