// Command secretbrokerctl is the broker's client for people and scripts:
// it puts, gets, lists and deletes GitHub secrets through a secretbroker
// over gRPC, with the same credentials as any other caller (a bearer token
// from SECRETBROKER_TOKEN or --token-file, a client certificate).
//
//	secretbrokerctl put repos/octo-org/hello-world/actions/secrets/NPM_TOKEN < token.txt
//	secretbrokerctl get orgs/octo-org/actions/secrets/DEPLOY_TOKEN
//	secretbrokerctl ls repos/octo-org/hello-world/environments/prod%2Feu
//	secretbrokerctl rm repos/octo-org/hello-world/actions/secrets/NPM_TOKEN
//	secretbrokerctl put-many --from-env-file .env repos/octo-org/hello-world/actions
//	secretbrokerctl sync --from-env-file .env --prune --yes repos/octo-org/hello-world/actions
//	secretbrokerctl drift --exit-code repos/octo-org/hello-world/actions
//	secretbrokerctl ops; secretbrokerctl op operations/ID; secretbrokerctl cancel operations/ID
//
// A value is read from standard input or a file, never from an argument,
// and is never printed. Output is a table for people, or JSON with
// --output json. The exit code is 0 on success, 1 when a call or any item
// of a batch or sync failed (each named on standard error with its gRPC
// code), 2 when the command line or its inputs are wrong (nothing was
// sent), 3 from drift --exit-code when the scope drifted, and 130 when a
// second interrupt stops it at once (interrupt.go): the first one stops it
// gracefully, cancelling sync's operation.
//
// A call the broker sheds (RESOURCE_EXHAUSTED with a RetryInfo), cannot
// serve now (UNAVAILABLE) or cut while shutting down (ABORTED) is sent
// again, a few times, where that is safe (retry.go).
//
// sync prints the plan (a dry run), then runs the sync as a long-running
// operation and follows it (follow.go) with a progress bar redrawn in
// place when stdout is a terminal, plain lines otherwise (progress.go).
//
// This package owns the command line: one file per subcommand (put.go,
// get.go, ...), each returning a command that commands() lists; the
// connection (conn.go), the value and env-file readers (value.go,
// envfile.go) and the output (output.go) are shared by all of them.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Exit codes.
const (
	exitOK    = 0 // every call succeeded
	exitFail  = 1 // a call, or an item of a batch, failed
	exitUsage = 2 // the command line or its inputs are wrong; nothing was sent
	// exitDrift (3, drift.go) is drift --exit-code's answer when the scope drifted.
)

// progName prefixes every message on standard error.
const progName = "secretbrokerctl"

func main() {
	// Two places: a second interrupt must not be lost while the first is
	// being handled.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	os.Exit(run(sigs, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv, os.Exit))
}

// run runs the command line args (without the program's name) and returns
// the exit code; sigs delivers the interrupts, and a second one ends the
// process through exit (runSignals). getenv reads the environment
// (SECRETBROKER_ADDR, SECRETBROKER_TOKEN). A terminal on stdin is detected
// through its file descriptor (an *os.File).
func run(sigs <-chan os.Signal, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string, exit func(int)) int {
	return newCLI(stdin, stdout, stderr, getenv, osTerminal{}).runSignals(args, sigs, exit)
}

// command is one subcommand. Adding one (sync, drift) is a new file with a
// function returning its command, and one line in commands().
type command struct {
	name    string // what is typed: "put"
	args    string // its positional arguments, for the usage line: "NAME"
	summary string // one line for the list of commands
	// run parses the subcommand's own arguments (after its name) and runs
	// it, returning the exit code.
	run func(ctx context.Context, c *cli, args []string) int
}

// commands lists the subcommands in the order the usage shows them.
func commands() []command {
	return []command{
		putCommand(),
		putManyCommand(),
		getCommand(),
		lsCommand(),
		rmCommand(),
		syncCommand(),
		driftCommand(),
		opsCommand(),
		opCommand(),
		cancelCommand(),
	}
}

// main dispatches args to a subcommand.
func (c *cli) main(ctx context.Context, args []string) int {
	if len(args) == 0 {
		c.usage(c.stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		c.usage(c.stdout)
		return exitOK
	}
	for _, cmd := range commands() {
		if cmd.name == args[0] {
			return cmd.run(ctx, c, args[1:])
		}
	}
	// Not the argument: a secret pasted where the command should be would
	// be printed (flagerr's rule, for commands).
	c.errorf("unknown command (the 1st argument, not shown, as it may be a secret; run %s help for the commands)", progName)
	return exitUsage
}

// usage writes the list of subcommands to w.
func (c *cli) usage(w io.Writer) {
	fmt.Fprintf(w, "usage: %s COMMAND [flags] ARGS\n\ncommands:\n", progName)
	for _, cmd := range commands() {
		fmt.Fprintf(w, "  %-9s %-28s %s\n", cmd.name, cmd.args, cmd.summary)
	}
	fmt.Fprintf(w, "\nRun %s COMMAND -h for a command's flags. Exit codes: 0 success, 1 a call or item failed, 2 usage, 3 drift found (drift --exit-code).\n", progName)
}
