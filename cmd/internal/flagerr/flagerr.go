// Package flagerr parses command-line flags with errors that do not
// repeat the arguments they refuse.
//
// Go's flag package quotes what it refuses: "flag provided but not
// defined: -ghp_...", `invalid value "ghp_..." for flag -timeout`, "bad
// flag syntax: ---ghp_...", and prints that with the usage. An argument
// typed where a flag or a flag's value should be may be a secret pasted
// by mistake (a token, a password), and a parse error goes to a
// terminal, a CI log or a log pipeline.
//
// The rule, applied by Parse: an error names a flag only when the name is
// one of the flag set's own flags (fs.Lookup finds it), which a pasted
// secret is not; any other argument is named by its position on the
// command line. A flag's value is never shown.
package flagerr

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Parse is fs.Parse(args) with the flag package's own messages (and the
// usage it prints with them, and for -h) silenced: nothing is printed
// and fs.Usage is not called, and the caller prints the usage if it
// likes. An error other than
// flag.ErrHelp is told again by the rule above, for the caller to print.
//
// first is the position of args[0] on the command line (1 for the first
// argument), for the errors that name an argument's position. form, if
// not nil, says what form a flag's value takes (such as ": want a
// duration"), appended to the error about a value that is not valid.
//
// fs is meant to be flag.ContinueOnError. With flag.PanicOnError, Parse
// panics with the error it would return (the flag package's own, which
// quotes the argument, is not let through); with flag.ExitOnError the
// flag package exits, and nothing is printed.
func Parse(fs *flag.FlagSet, args []string, first int, form func(*flag.Flag) string) error {
	err := parseQuietly(fs, args)
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		err = tell(fs, args, first, form, err)
	}
	if err != nil && fs.ErrorHandling() == flag.PanicOnError {
		panic(err)
	}
	return err
}

// parseQuietly is fs.Parse(args) with fs's output discarded and fs.Usage
// not called (both restored after). It returns the error a
// flag.PanicOnError flag set panics with.
func parseQuietly(fs *flag.FlagSet, args []string) (err error) {
	out, usage := fs.Output(), fs.Usage
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	defer func() {
		fs.SetOutput(out)
		fs.Usage = usage
		if fs.ErrorHandling() != flag.PanicOnError {
			return
		}
		if r := recover(); r != nil {
			e, ok := r.(error)
			if !ok {
				panic(r)
			}
			err = e
		}
	}()
	return fs.Parse(args)
}

// tell returns err, an error of fs.Parse(args) other than flag.ErrHelp,
// told again by the rule.
func tell(fs *flag.FlagSet, args []string, first int, form func(*flag.Flag) string, err error) error {
	// The flag package stops at the first error, having consumed the
	// arguments up to the one it refuses: that one, except for a bad
	// syntax, which it refuses before consuming it.
	consumed := len(args) - len(fs.Args())
	prog := fs.Name()
	msg := err.Error()
	if strings.HasPrefix(msg, "bad flag syntax: ") {
		return fmt.Errorf("bad flag syntax: the %s argument is neither -flag, -flag=value nor a flag's value (not shown, as it may be a secret)",
			Ordinal(first+consumed))
	}
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		if f := fs.Lookup(name); f != nil { // cannot be, but the rule is the rule
			return fmt.Errorf("flag provided but not defined: --%s", f.Name)
		}
		return fmt.Errorf("flag provided but not defined: the %s argument is not one of %s's flags (not shown, as it may be a secret); %s --help lists them",
			Ordinal(first+consumed-1), prog, prog)
	}
	if name, ok := strings.CutPrefix(msg, "flag needs an argument: -"); ok {
		if f := fs.Lookup(name); f != nil {
			return fmt.Errorf("flag needs an argument: --%s", f.Name)
		}
		return fmt.Errorf("flag needs an argument: the %s argument (not shown, as it may be a secret)", Ordinal(first+consumed-1))
	}
	if f := valueFlag(fs, msg); f != nil {
		wanted := ""
		if form != nil {
			wanted = form(f)
		}
		return fmt.Errorf("--%s: not a valid value (not shown, as it may be a secret)%s", f.Name, wanted)
	}
	// An error this package does not know (a newer flag package's): told
	// without any of its words, which may quote an argument.
	return fmt.Errorf("the flags are not valid (the error is not shown, as it may quote a secret); %s --help lists them", prog)
}

// valueFlag returns the flag named by msg, an error of the flag package
// about a flag's value: `invalid value "VALUE" for flag -NAME: ERROR`,
// `invalid boolean value "VALUE" for -NAME: ERROR` or `invalid boolean
// flag NAME: ERROR`. It returns nil for any other message, or a name
// that is not one of fs's flags.
func valueFlag(fs *flag.FlagSet, msg string) *flag.Flag {
	var name string
	if rest, ok := strings.CutPrefix(msg, "invalid boolean flag "); ok {
		name, _, _ = strings.Cut(rest, ":")
	} else {
		rest, ok := strings.CutPrefix(msg, "invalid value ")
		if !ok {
			rest, ok = strings.CutPrefix(msg, "invalid boolean value ")
		}
		if !ok {
			return nil
		}
		// The value is quoted with %q, which QuotedPrefix reads whole.
		quoted, err := strconv.QuotedPrefix(rest)
		if err != nil {
			return nil
		}
		rest = rest[len(quoted):]
		rest, ok = strings.CutPrefix(rest, " for flag -")
		if !ok {
			rest, ok = strings.CutPrefix(rest, " for -")
		}
		if !ok {
			return nil
		}
		name, _, _ = strings.Cut(rest, ":")
	}
	return fs.Lookup(name)
}

// Ordinal is n as "1st", "2nd", "3rd", "4th" and so on.
func Ordinal(n int) string {
	suffix := "th"
	switch {
	case n%100 >= 11 && n%100 <= 13:
	case n%10 == 1:
		suffix = "st"
	case n%10 == 2:
		suffix = "nd"
	case n%10 == 3:
		suffix = "rd"
	}
	return strconv.Itoa(n) + suffix
}
