package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/protobuf/proto"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
)

const (
	// maxBatchItems is the most items one BatchPutSecrets call takes.
	maxBatchItems = 1000
	// maxBatchBytes bounds one call's request, below the broker's 16 MiB.
	maxBatchBytes = 12 << 20
	// putManyTimeout is put-many's default --timeout per call: a batch of
	// 1,000 writes at GitHub's pace of one a second takes about 17 minutes.
	putManyTimeout = 20 * time.Minute
)

func putManyCommand() command {
	return command{
		name:    "put-many",
		args:    "--from-env-file FILE PARENT",
		summary: "create or update a scope's secrets from KEY=VALUE lines (BatchPutSecrets)",
		run:     runPutMany,
	}
}

// putManyJSON is put-many's JSON output: one result per item, in the
// order of the file, as the API writes them.
type putManyJSON struct {
	Results []protoJSON `json:"results"`
}

// runPutMany writes every KEY=VALUE of an env file as PARENT/secrets/KEY
// with BatchPutSecrets (1,000 items a call at most), prints one result per
// item, and fails (exit 1) when any item failed, naming each.
func runPutMany(ctx context.Context, c *cli, args []string) int {
	var (
		opts    common
		envFile string
		org     orgFlags
	)
	fs := c.flags("put-many", &opts, putManyTimeout)
	fs.StringVar(&envFile, "from-env-file", "", "file of KEY=VALUE lines (\"-\": standard input, never a terminal)")
	fs.StringVar(&org.visibility, "visibility", "", "organization scopes: visibility of every secret: all, private or selected")
	fs.StringVar(&org.repos, "repos", "", "organization scopes: repositories for every secret, names or ids, comma separated (implies --visibility selected)")
	pos, exit := c.parseOrExit(fs, &opts, args, "PARENT", 1)
	if exit >= 0 {
		return exit
	}
	parent := strings.TrimSuffix(pos[0], "/")
	if envFile == "" {
		return c.usageErr("put-many", errors.New("--from-env-file is required"))
	}
	var tmpl secretbrokerv1.PutSecretRequest
	if err := org.apply(&tmpl); err != nil {
		return c.usageErr("put-many", err)
	}
	entries, err := c.readEnvFile(ctx, envFile)
	if err != nil {
		if ctx.Err() != nil { // interrupted while reading: not a usage error
			c.errorf("put-many %s: %v", parent, err)
			return exitFail
		}
		return c.usageErr("put-many", err)
	}
	if len(entries) == 0 {
		return c.usageErr("put-many", fmt.Errorf("%s holds no KEY=VALUE line", envFile))
	}
	client, closeConn, err := c.connect(&opts)
	if err != nil {
		return c.usageErr("put-many", err)
	}
	defer closeConn()

	reqs := make([]*secretbrokerv1.PutSecretRequest, len(entries))
	for i, e := range entries {
		r := proto.CloneOf(&tmpl)
		r.Name = parent + "/secrets/" + e.key
		r.Payload = &secretbrokerv1.PutSecretRequest_Value{Value: e.value}
		reqs[i] = r
	}
	var (
		results []*secretbrokerv1.BatchPutSecretsResult
		callErr error
	)
	for _, chunk := range chunks(reqs) {
		cctx, cancel := context.WithTimeout(ctx, opts.timeout)
		// Each item is a put of its value: a batch sent again after one
		// cut off finds the items it wrote unchanged. Never async here.
		resp, err := client.BatchPutSecrets(cctx, &secretbrokerv1.BatchPutSecretsRequest{Requests: chunk}, retry(retryRepeatable))
		cancel()
		if err == nil && len(resp.GetResults()) != len(chunk) {
			err = fmt.Errorf("the broker answered %d results for %d items", len(resp.GetResults()), len(chunk))
		}
		if err != nil {
			callErr = err
			break
		}
		results = append(results, resp.GetResults()...)
	}

	if err := c.printBatch(opts.output, results); err != nil {
		return c.outputFailed("put-many", err)
	}
	failed := 0
	for _, r := range results {
		if r.GetCode() != code.Code_OK {
			failed++
		}
	}
	if failed > 0 {
		c.errorf("put-many: %d of %d items failed:", failed, len(reqs))
		for _, r := range results {
			if r.GetCode() != code.Code_OK {
				fmt.Fprintf(c.stderr, "  %s: %s\n", r.GetName(), c.scrub(itemDetail(r)))
			}
		}
	}
	if callErr != nil {
		c.errorf("put-many %s: %s; %d of %d items not sent or not answered",
			parent, c.describe(callErr), len(reqs)-len(results), len(reqs))
	}
	if failed > 0 || callErr != nil {
		return exitFail
	}
	return exitOK
}

// readEnvFile reads and parses an env file ("-": standard input, unless it
// is a terminal), remembering every value so that none is ever printed.
func (c *cli) readEnvFile(ctx context.Context, path string) ([]envEntry, error) {
	var r io.Reader = c.stdin
	if path == "-" {
		if c.term.IsTerminal(c.stdin) {
			return nil, errors.New("--from-env-file -: standard input is a terminal; pipe the file in or name it")
		}
	} else {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("--from-env-file: %w", withoutPath(err))
		}
		defer f.Close()
		r = f
	}
	data, err := readLimitedContext(ctx, r, maxEnvFileBytes)
	if err != nil {
		return nil, fmt.Errorf("--from-env-file %s: %w", path, err)
	}
	entries, err := parseEnvFile(data)
	for _, e := range entries {
		c.remember(e.value)
	}
	if err != nil {
		return nil, fmt.Errorf("--from-env-file %s: %w", path, err)
	}
	return entries, nil
}

// chunks splits reqs into batches the broker takes: at most maxBatchItems
// items and about maxBatchBytes each.
func chunks(reqs []*secretbrokerv1.PutSecretRequest) [][]*secretbrokerv1.PutSecretRequest {
	var (
		out  [][]*secretbrokerv1.PutSecretRequest
		cur  []*secretbrokerv1.PutSecretRequest
		size int
	)
	for _, r := range reqs {
		n := proto.Size(r) + 4 // the field's tag and length
		if len(cur) > 0 && (len(cur) == maxBatchItems || size+n > maxBatchBytes) {
			out = append(out, cur)
			cur, size = nil, 0
		}
		cur = append(cur, r)
		size += n
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// itemDetail is a failed item's "CODE: message (retry after D)".
func itemDetail(r *secretbrokerv1.BatchPutSecretsResult) string {
	return r.GetCode().String() + ": " + itemMessage(r)
}

// itemMessage is a failed item's "message (retry after D)".
func itemMessage(r *secretbrokerv1.BatchPutSecretsResult) string {
	s := r.GetMessage()
	if d := r.GetRetryAfter(); d != nil {
		s += fmt.Sprintf(" (retry after %s)", d.AsDuration())
	}
	return s
}

// printBatch writes the results as a table or as JSON.
func (c *cli) printBatch(output string, results []*secretbrokerv1.BatchPutSecretsResult) error {
	if output == outputJSON {
		out := putManyJSON{Results: make([]protoJSON, 0, len(results))}
		for _, r := range results {
			r = proto.CloneOf(r)
			r.Message = c.scrub(r.GetMessage())
			out.Results = append(out.Results, protoJSON{r})
		}
		return writeJSON(c.stdout, out)
	}
	t := newTable(c.stdout, "SECRET", "RESULT", "DETAIL")
	for _, r := range results {
		switch {
		case r.GetCode() != code.Code_OK:
			t.row(r.GetName(), r.GetCode().String(), c.scrub(itemMessage(r)))
		default:
			t.row(r.GetName(), putOutcome(r.GetCreated(), r.GetUnchanged(), r.GetDrift()), "")
		}
	}
	return t.flush()
}
