package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"unicode/utf8"

	"golang.org/x/term"
)

// maxValueRead bounds what is read for one value: well above GitHub's
// 48 KB, which the broker enforces with INVALID_ARGUMENT, so that a wrong
// file or an endless pipe fails at once instead of filling memory.
const maxValueRead = 1 << 20

// readLimited reads r to its end, failing when it holds more than limit
// bytes.
func readLimited(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("larger than %d KiB", limit>>10)
	}
	return b, nil
}

// readLimitedContext is readLimited that gives up when ctx ends (Ctrl-C,
// SIGTERM): a read from a pipe whose writer never closes it would
// otherwise hold the process, which catches both signals. The read goes on
// in its goroutine until the process exits.
func readLimitedContext(ctx context.Context, r io.Reader, limit int64) ([]byte, error) {
	type result struct {
		b   []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		b, err := readLimited(r, limit)
		done <- result{b, err}
	}()
	select {
	case res := <-done:
		return res.b, res.err
	case <-ctx.Done():
		return nil, fmt.Errorf("interrupted before the input ended: %w", context.Cause(ctx))
	}
}

// terminal is what the commands need of the process's terminal.
type terminal interface {
	// IsTerminal reports whether f, a standard stream, is a terminal:
	// stdin before reading a value or prompting, stdout before drawing
	// anything but plain lines.
	IsTerminal(f any) bool
	// ReadPassword reads a line from the terminal r without echoing it,
	// without its line ending, and refuses it (errMoreThanALine) when more
	// than the line came. When ctx ends first it puts the terminal back as
	// it was and returns ctx's error.
	ReadPassword(ctx context.Context, r io.Reader) ([]byte, error)
}

// fder is an *os.File, or anything else with a file descriptor.
type fder interface{ Fd() uintptr }

// osTerminal is the process's terminal, through golang.org/x/term, and
// on Unix systems its modes set here (readHiddenLine).
type osTerminal struct {
	// hidden, when set, is called once echo is off (tests).
	hidden func()
}

func (osTerminal) IsTerminal(f any) bool {
	fd, ok := f.(fder)
	return ok && term.IsTerminal(int(fd.Fd()))
}

func (t osTerminal) ReadPassword(ctx context.Context, r io.Reader) ([]byte, error) {
	f, ok := r.(fder)
	if !ok {
		return nil, errors.New("standard input is not a terminal")
	}
	fd := int(f.Fd())
	state, err := term.GetState(fd)
	if err != nil {
		return nil, fmt.Errorf("terminal: %w", err)
	}
	type line struct {
		b   []byte
		err error
	}
	done := make(chan line, 1)
	go func() {
		b, err := readHiddenLine(fd, maxValueRead, t.hidden)
		done <- line{b, err}
	}()
	select {
	case l := <-done:
		return l.b, l.err
	case <-ctx.Done():
		// An interrupt must not leave the terminal without echo. The
		// read goes on until the process exits, which it is about to.
		_ = term.Restore(fd, state)
		return nil, ctx.Err()
	}
}

// valueSource says where put reads its value.
type valueSource struct {
	fromFile    string // "" for standard input; "-" is standard input too
	trimNewline bool   // strip one trailing "\n" or "\r\n" from piped stdin
}

// readValue reads a secret's value for name: from the file, verbatim; or
// from a terminal on stdin, without echo, after a prompt on stderr; or
// from piped stdin, less one trailing line ending when src.trimNewline.
// The value must be 1 byte or more of UTF-8. It is remembered, so that
// nothing this run prints can hold it.
func (c *cli) readValue(ctx context.Context, name string, src valueSource) (string, error) {
	var (
		b    []byte
		err  error
		from = "standard input"
	)
	switch {
	case src.fromFile != "" && src.fromFile != "-":
		from = src.fromFile
		var f *os.File
		if f, err = os.Open(src.fromFile); err != nil {
			return "", fmt.Errorf("--from-file: %w", withoutPath(err))
		}
		defer f.Close()
		b, err = readLimited(f, maxValueRead)
	case c.term.IsTerminal(c.stdin):
		fmt.Fprintf(c.stderr, "Value for %s (typing is hidden; Enter ends it): ", name)
		b, err = c.term.ReadPassword(ctx, c.stdin)
		fmt.Fprintln(c.stderr)
		if err == nil && len(b) > maxValueRead {
			err = fmt.Errorf("larger than %d KiB", maxValueRead>>10)
		}
	default:
		b, err = readLimitedContext(ctx, c.stdin, maxValueRead)
		if err == nil && src.trimNewline {
			b = trimOneNewline(b)
		}
	}
	if err != nil {
		return "", fmt.Errorf("value from %s: %w", from, err)
	}
	v := string(b)
	c.remember(v)
	switch {
	case len(v) == 0:
		return "", fmt.Errorf("the value from %s is empty", from)
	case !utf8.ValidString(v):
		return "", fmt.Errorf("the value from %s is not UTF-8 text; encode binary data (base64) first", from)
	}
	return v, nil
}

// trimOneNewline removes one trailing "\n", or "\r\n", from b.
func trimOneNewline(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
		if n := len(b); n > 0 && b[n-1] == '\r' {
			b = b[:n-1]
		}
	}
	return b
}

// withoutPath is err without the path an *fs.PathError names ("open: no
// such file or directory"): the path given for a file holding a value, a
// token or a key may be the secret itself, given by mistake
// ("--from-file $VALUE"), and must not be printed.
func withoutPath(err error) error {
	if pe, ok := errors.AsType[*fs.PathError](err); ok {
		return fmt.Errorf("%s: %w", pe.Op, pe.Err)
	}
	return err
}
