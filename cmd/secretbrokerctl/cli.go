package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/secretbroker/secretbroker/cmd/internal/flagerr"
)

// cli is one run of the command: its standard streams, environment and
// terminal, and the values it must never print (the secrets it read and
// the token), which scrub removes from anything the broker sends back.
type cli struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	term           terminal
	// now is the clock progress is shown by (rate, ETA, line spacing).
	now func() time.Time
	// dial, when set, makes the connections (tests: an in-memory listener).
	dial func(ctx context.Context, addr string) (net.Conn, error)
	// proxy names the HTTP CONNECT proxy to the broker, or none, as
	// grpc-go picks it when it dials itself (no dial): its
	// http.ProxyFromEnvironment (HTTPS_PROXY, NO_PROXY). probeTLS goes
	// the same way.
	proxy func(*http.Request) (*url.URL, error)
	// maxAttempts bounds the attempts of a retried call (retry.go):
	// retryMaxAttempts; 1 in the tests that run on the wall clock.
	maxAttempts int

	secrets []string
	// plaintext: the connection made speaks plaintext gRPC (describe's
	// hint when the broker answers it as a TLS server would).
	plaintext bool
	// addr is the broker's address the connection was made to (probeTLS).
	addr string

	// mu guards running, which the goroutine watching for a second
	// interrupt reads (setRunning).
	mu      sync.Mutex
	running string
}

func newCLI(stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string, term terminal) *cli {
	return &cli{stdin: stdin, stdout: stdout, stderr: stderr, getenv: getenv, term: term, now: time.Now, proxy: http.ProxyFromEnvironment, maxAttempts: retryMaxAttempts}
}

// errorf writes "secretbrokerctl: MESSAGE" to standard error, scrubbed.
func (c *cli) errorf(format string, a ...any) {
	fmt.Fprintln(c.stderr, c.scrub(progName+": "+fmt.Sprintf(format, a...)))
}

// usageErr writes err as a usage error and returns exitUsage.
func (c *cli) usageErr(cmd string, err error) int {
	c.errorf("%s: %v", cmd, err)
	return exitUsage
}

// minScrubLen is the shortest secret scrub replaces: shorter ones would
// mangle every message they happen to occur in.
const minScrubLen = 4

// redacted replaces a secret in a message.
const redacted = "[redacted]"

// remember adds a secret scrub must remove, as it is and as Go's %q
// would escape it inside quotes (a value with a line break, say).
func (c *cli) remember(secret string) {
	if len(secret) < minScrubLen {
		return
	}
	c.secrets = append(c.secrets, secret)
	if q := strconv.Quote(secret); q[1:len(q)-1] != secret {
		c.secrets = append(c.secrets, q[1:len(q)-1])
	}
}

// scrub returns s with every secret the run read replaced by [redacted]:
// the broker never echoes a value or a token, and should one ever, this
// client still does not print it. Every byte of every occurrence of every
// secret is covered, and each run of covered bytes becomes one
// [redacted]: a secret that holds another, or overlaps it, is hidden
// whole, whatever order they were remembered in (replacing the short one
// first would leave the rest of the long one readable).
func (c *cli) scrub(s string) string {
	var covered []bool
	for _, v := range c.secrets {
		for i := 0; i < len(s); {
			j := strings.Index(s[i:], v)
			if j < 0 {
				break
			}
			if covered == nil {
				covered = make([]bool, len(s))
			}
			for k := i + j; k < i+j+len(v); k++ {
				covered[k] = true
			}
			i += j + 1 // overlapping occurrences too
		}
	}
	if covered == nil {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case !covered[i]:
			b.WriteByte(s[i])
		case i == 0 || !covered[i-1]:
			b.WriteString(redacted)
		}
	}
	return b.String()
}

// Output formats.
const (
	outputTable = "table"
	outputJSON  = "json"
)

// defaultAddr is the broker's address without --addr or SECRETBROKER_ADDR:
// the gRPC listener of "secretbroker --dev".
const defaultAddr = "127.0.0.1:9090"

// defaultTimeout bounds each call unless --timeout says otherwise.
const defaultTimeout = 30 * time.Second

// common are the flags every subcommand takes: the connection and the
// output format.
type common struct {
	addr      string
	tokenFile string
	caFile    string
	certFile  string
	keyFile   string
	tls       bool
	insecure  bool
	timeout   time.Duration
	output    string
}

// flags returns a flag set for the subcommand name, with the common flags
// bound to opts; the default timeout is timeout.
func (c *cli) flags(name string, opts *common, timeout time.Duration) *flag.FlagSet {
	fs := flag.NewFlagSet(progName+" "+name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	fs.Usage = func() {
		for _, cmd := range commands() {
			if cmd.name == name {
				fmt.Fprintf(fs.Output(), "usage: %s %s [flags] %s\n\n%s.\n\nflags:\n", progName, name, cmd.args, cmd.summary)
			}
		}
		fs.PrintDefaults()
	}
	addr := c.getenv("SECRETBROKER_ADDR")
	if addr == "" {
		addr = defaultAddr
	}
	fs.StringVar(&opts.addr, "addr", addr, "the broker's gRPC address, host:port (env SECRETBROKER_ADDR)")
	fs.StringVar(&opts.tokenFile, "token-file", "", "file holding the bearer token; default: env SECRETBROKER_TOKEN")
	fs.StringVar(&opts.caFile, "tls-ca-file", "", "CA bundle (PEM) the broker's certificate must chain to; implies TLS")
	fs.StringVar(&opts.certFile, "tls-cert-file", "", "client certificate (PEM) for mTLS; implies TLS; needs --tls-key-file")
	fs.StringVar(&opts.keyFile, "tls-key-file", "", "client certificate's key (PEM)")
	fs.BoolVar(&opts.tls, "tls", false, "use TLS with the system's roots (the default for a non-loopback address)")
	fs.BoolVar(&opts.insecure, "insecure", false, "plaintext even to a non-loopback address (without it, plaintext is used for loopback only)")
	fs.DurationVar(&opts.timeout, "timeout", timeout, "deadline of each call, its retries included")
	fs.StringVar(&opts.output, "output", outputTable, "output format: table or json")
	fs.StringVar(&opts.output, "o", outputTable, "shorthand for --output")
	return fs
}

// parse parses args with fs, flags and positional arguments in any order
// ("--" ends the flags), and checks the common flags and that there are
// exactly nargs positional arguments, named by argNames for the error.
func parse(fs *flag.FlagSet, opts *common, args []string, argNames string, nargs int) ([]string, error) {
	var pos []string
	// first is the position of args[0] on the command line, after the
	// program's name and the subcommand's: flagerr names an argument that
	// is not a known flag by its position, never by itself.
	first := 2
	for {
		if err := flagerr.Parse(fs, args, first, nil); err != nil {
			if !errors.Is(err, flag.ErrHelp) {
				fmt.Fprintln(fs.Output(), err)
			}
			fs.Usage()
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, flagError{err}
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		pos = append(pos, rest[0])
		first += len(args) - len(rest) + 1
		args = rest[1:]
	}
	if opts.output != outputTable && opts.output != outputJSON {
		return nil, errors.New("--output: want table or json (the value is not shown, as it may be a secret)")
	}
	if opts.timeout <= 0 {
		return nil, errors.New("--timeout must be positive")
	}
	if len(pos) != nargs {
		return nil, fmt.Errorf("want %s, got %d argument(s)", argNames, len(pos))
	}
	for i, p := range pos {
		if strings.TrimSpace(p) == "" {
			return nil, fmt.Errorf("argument %d is empty", i+1)
		}
	}
	return pos, nil
}

// parseOrExit parses args (see parse) and returns the positional arguments
// and -1, or the exit code to return: 0 for -h, 2 for a usage error.
func (c *cli) parseOrExit(fs *flag.FlagSet, opts *common, args []string, argNames string, nargs int) ([]string, int) {
	pos, err := parse(fs, opts, args, argNames, nargs)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return nil, exitOK
	case err != nil:
		// The flag package has already printed its own errors.
		if !isFlagError(err) {
			c.errorf("%s: %v", strings.TrimPrefix(fs.Name(), progName+" "), err)
		}
		return nil, exitUsage
	}
	return pos, -1
}

// flagError marks errors parse has printed already, with the usage.
type flagError struct{ error }

func isFlagError(err error) bool {
	var fe flagError
	return errors.As(err, &fe)
}
