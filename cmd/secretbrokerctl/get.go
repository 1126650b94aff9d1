package main

import (
	"context"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
)

func getCommand() command {
	return command{
		name:    "get",
		args:    "NAME",
		summary: "show a secret's metadata (never its value)",
		run:     runGet,
	}
}

// runGet shows one secret's metadata: name, created and updated times,
// visibility.
func runGet(ctx context.Context, c *cli, args []string) int {
	var opts common
	fs := c.flags("get", &opts, defaultTimeout)
	pos, exit := c.parseOrExit(fs, &opts, args, "NAME", 1)
	if exit >= 0 {
		return exit
	}
	name := pos[0]
	client, closeConn, err := c.connect(&opts)
	if err != nil {
		return c.usageErr("get", err)
	}
	defer closeConn()

	cctx, cancel := context.WithTimeout(ctx, opts.timeout)
	defer cancel()
	s, err := client.GetSecret(cctx, &secretbrokerv1.GetSecretRequest{Name: name}, retry(retryRepeatable))
	if err != nil {
		return c.callFailed("get", name, err)
	}
	if opts.output == outputJSON {
		err = writeJSON(c.stdout, protoJSON{s})
	} else {
		t := newTable(c.stdout)
		t.row("NAME", s.GetName())
		t.row("SECRET", s.GetSecretId())
		t.row("CREATED", timestamp(s.GetCreatedAt()))
		t.row("UPDATED", timestamp(s.GetUpdatedAt()))
		t.row("VISIBILITY", orDash(s.GetVisibility()))
		if u := s.GetSelectedRepositoriesUrl(); u != "" {
			t.row("REPOSITORIES", u)
		}
		err = t.flush()
	}
	if err != nil {
		return c.outputFailed("get", err)
	}
	return exitOK
}
