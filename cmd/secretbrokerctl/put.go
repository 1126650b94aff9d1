package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
)

// orgFlags are the organization-secret flags of put and put-many.
type orgFlags struct {
	visibility string
	repos      string
}

// apply sets the visibility and selection on req. --repos without
// --visibility means "selected"; each repository is an id when it is all
// digits, else a name in the secret's organization, as the API reads it.
func (o orgFlags) apply(req *secretbrokerv1.PutSecretRequest) error {
	switch o.visibility {
	case "", "all", "private", "selected":
	default:
		return errors.New("--visibility: want all, private or selected (the value is not shown, as it may be a secret)")
	}
	req.Visibility = o.visibility
	if strings.TrimSpace(o.repos) == "" {
		if o.repos != "" {
			return errors.New("--repos is empty")
		}
		return nil
	}
	if o.visibility == "" {
		req.Visibility = "selected"
	} else if o.visibility != "selected" {
		return fmt.Errorf("--repos needs --visibility selected, not %s", o.visibility)
	}
	ids, names, err := splitRepos(o.repos)
	if err != nil {
		return err
	}
	req.SelectedRepositoryIds, req.SelectedRepositories = ids, names
	return nil
}

// splitRepos splits a comma-separated list of repositories into ids (all
// digits) and names.
func splitRepos(list string) (ids []int64, names []string, err error) {
	for _, r := range strings.Split(list, ",") {
		r = strings.TrimSpace(r)
		if r == "" {
			return nil, nil, errors.New("--repos has an empty entry")
		}
		if id, ok := repoID(r); ok {
			ids = append(ids, id)
		} else {
			names = append(names, r)
		}
	}
	return ids, names, nil
}

// repoID returns r as an id when it is all digits (and fits an int64).
func repoID(r string) (int64, bool) {
	var id int64
	for i := 0; i < len(r); i++ {
		if r[i] < '0' || r[i] > '9' {
			return 0, false
		}
		if id > (1<<63-1-int64(r[i]-'0'))/10 {
			return 0, false
		}
		id = id*10 + int64(r[i]-'0')
	}
	return id, true
}

func putCommand() command {
	return command{
		name:    "put",
		args:    "NAME",
		summary: "create or update a secret; the value comes from stdin or --from-file",
		run:     runPut,
	}
}

// runPut writes one secret. The value is read from --from-file, or from
// standard input: without echo after a prompt when it is a terminal,
// otherwise all of it (less one trailing line ending unless
// --trim-newline=false), never with a prompt. With --keep-value no value
// is read: the put changes an existing organization secret's visibility
// and selection only.
func runPut(ctx context.Context, c *cli, args []string) int {
	var (
		opts      common
		src       valueSource
		org       orgFlags
		keepValue bool
	)
	fs := c.flags("put", &opts, defaultTimeout)
	fs.StringVar(&src.fromFile, "from-file", "", "read the value from this file, byte for byte (\"-\": standard input)")
	fs.BoolVar(&src.trimNewline, "trim-newline", true, "strip one trailing newline (\\n or \\r\\n) from a value piped on standard input")
	fs.StringVar(&org.visibility, "visibility", "", "organization secrets: all, private or selected (required when creating one)")
	fs.StringVar(&org.repos, "repos", "", "organization secrets: repositories that may use it, names or ids, comma separated (implies --visibility selected)")
	fs.BoolVar(&keepValue, "keep-value", false, "organization secrets: change only --visibility and --repos of an existing secret, keeping its value (no value is read; where GitHub allows it)")
	pos, exit := c.parseOrExit(fs, &opts, args, "NAME (the value comes from standard input or --from-file, never an argument)", 1)
	if exit >= 0 {
		return exit
	}
	name := pos[0]
	req := &secretbrokerv1.PutSecretRequest{Name: name}
	if err := org.apply(req); err != nil {
		return c.usageErr("put", err)
	}
	switch {
	case keepValue && src.fromFile != "":
		return c.usageErr("put", fmt.Errorf("--keep-value reads no value: leave out --from-file"))
	case keepValue && req.GetVisibility() == "":
		return c.usageErr("put", fmt.Errorf("--keep-value needs --visibility or --repos: there is nothing else to change"))
	}
	client, closeConn, err := c.connect(&opts)
	if err != nil {
		return c.usageErr("put", err)
	}
	defer closeConn()
	if !keepValue {
		v, err := c.readValue(ctx, name, src)
		if err != nil {
			if ctx.Err() != nil { // interrupted while reading
				c.errorf("put %s: %v", name, err)
				return exitFail
			}
			return c.usageErr("put", err)
		}
		req.Payload = &secretbrokerv1.PutSecretRequest_Value{Value: v}
	}

	cctx, cancel := context.WithTimeout(ctx, opts.timeout)
	defer cancel()
	// A put of the same value may run twice: the second finds it written.
	resp, err := client.PutSecret(cctx, req, retry(retryRepeatable))
	if err != nil {
		return c.callFailed("put", name, err)
	}
	if opts.output == outputJSON {
		err = writeJSON(c.stdout, protoJSON{resp})
	} else {
		_, err = fmt.Fprintf(c.stdout, "%s %s\n", putOutcome(resp.GetCreated(), resp.GetUnchanged(), resp.GetDrift()), resp.GetName())
	}
	if err != nil {
		return c.outputFailed("put", err)
	}
	return exitOK
}

// putOutcome is what a successful put did, in a word: "created",
// "updated", "unchanged" (the broker skipped the write: GitHub still holds
// the value it last wrote) or "drifted" (changed behind the broker's back,
// written again).
func putOutcome(created, unchanged, drift bool) string {
	switch {
	case unchanged:
		return "unchanged"
	case created:
		return "created"
	case drift:
		return "drifted"
	}
	return "updated"
}
