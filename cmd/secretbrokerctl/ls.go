package main

import (
	"context"
	"fmt"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
)

// listPageSize is the page size ls asks for: the most the API serves.
const listPageSize = 100

// maxListPages bounds how many pages ls follows, against a broker whose
// page tokens never end.
const maxListPages = 10_000

func lsCommand() command {
	return command{
		name:    "ls",
		args:    "PARENT",
		summary: "list a scope's secrets (all pages)",
		run:     runLs,
	}
}

// lsJSON is ls's JSON output: every secret of the scope, as the gateway
// writes each one.
type lsJSON struct {
	Parent     string      `json:"parent"`
	Secrets    []protoJSON `json:"secrets"`
	TotalCount int32       `json:"total_count"`
}

// runLs lists every secret of a scope, following every page; each call
// has its own --timeout.
func runLs(ctx context.Context, c *cli, args []string) int {
	var opts common
	fs := c.flags("ls", &opts, defaultTimeout)
	pos, exit := c.parseOrExit(fs, &opts, args, "PARENT", 1)
	if exit >= 0 {
		return exit
	}
	parent := pos[0]
	client, closeConn, err := c.connect(&opts)
	if err != nil {
		return c.usageErr("ls", err)
	}
	defer closeConn()

	var (
		secrets []*secretbrokerv1.Secret
		total   int32
		token   string
	)
	for page := 0; ; page++ {
		if page == maxListPages {
			c.errorf("ls %s: more than %d pages; stopped", parent, maxListPages)
			return exitFail
		}
		resp, err := listPage(ctx, client, opts, parent, token)
		if err != nil {
			return c.callFailed("ls", parent, err)
		}
		secrets = append(secrets, resp.GetSecrets()...)
		total = resp.GetTotalCount()
		next := resp.GetNextPageToken()
		if next == "" {
			break
		}
		if next == token {
			c.errorf("ls %s: the broker sent the same page token twice; stopped", parent)
			return exitFail
		}
		token = next
	}

	if opts.output == outputJSON {
		out := lsJSON{Parent: parent, Secrets: make([]protoJSON, 0, len(secrets)), TotalCount: total}
		for _, s := range secrets {
			out.Secrets = append(out.Secrets, protoJSON{s})
		}
		err = writeJSON(c.stdout, out)
	} else {
		t := newTable(c.stdout, "SECRET", "UPDATED", "CREATED", "VISIBILITY")
		for _, s := range secrets {
			t.row(s.GetSecretId(), timestamp(s.GetUpdatedAt()), timestamp(s.GetCreatedAt()), orDash(s.GetVisibility()))
		}
		err = t.flush()
		if err == nil && len(secrets) == 0 {
			_, err = fmt.Fprintf(c.stderr, "%s: no secrets in %s\n", progName, parent)
		}
	}
	if err != nil {
		return c.outputFailed("ls", err)
	}
	return exitOK
}

// listPage fetches one page within its own deadline.
func listPage(ctx context.Context, client secretbrokerv1.SecretServiceClient, opts common, parent, token string) (*secretbrokerv1.ListSecretsResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, opts.timeout)
	defer cancel()
	return client.ListSecrets(ctx, &secretbrokerv1.ListSecretsRequest{Parent: parent, PageSize: listPageSize, PageToken: token}, retry(retryRepeatable))
}
