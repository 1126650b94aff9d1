package flagerr

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// planted is a value that looks like a secret; no error may show it.
const planted = "ghp_PLANTED0123456789abcdefABCDEF"

// refusing is a flag.Value that takes only "ok" and "fine", and whose
// error quotes what it refuses (as many Values' errors do).
type refusing struct{ s string }

func (r *refusing) String() string {
	if r == nil {
		return ""
	}
	return r.s
}

func (r *refusing) Set(v string) error {
	if v != "ok" && v != "fine" {
		return fmt.Errorf("refused %q", v)
	}
	r.s = v
	return nil
}

// newFlagSet returns a flag set with a flag of each kind, its output
// going to out, and the log of the values its func flags were given.
// Two calls return identical flag sets.
//
//	-v bool, -n int, -timeout duration, -name string,
//	-token a Value that refuses all but "ok" and "fine",
//	-strict a bool func flag that takes only "yes" and "no" (so -strict alone is refused),
//	-each a func flag that refuses "".
func newFlagSet(out *bytes.Buffer) (*flag.FlagSet, *[]string) {
	return newFlagSetHandling(out, flag.ContinueOnError)
}

// newFlagSetHandling is newFlagSet with the flag set's ErrorHandling h.
func newFlagSetHandling(out *bytes.Buffer, h flag.ErrorHandling) (*flag.FlagSet, *[]string) {
	fs := flag.NewFlagSet("prog", h)
	fs.SetOutput(out)
	fs.Usage = func() { fmt.Fprintln(fs.Output(), "Usage: prog [flags]") }
	var log []string
	fs.Bool("v", false, "verbose")
	fs.Int("n", 0, "a number")
	fs.Duration("timeout", time.Second, "a duration")
	fs.String("name", "", "a name")
	fs.Var(&refusing{}, "token", "a token")
	fs.BoolFunc("strict", "yes or no", func(s string) error {
		if s != "yes" && s != "no" {
			return fmt.Errorf("want yes or no, not %q", s)
		}
		log = append(log, "strict="+s)
		return nil
	})
	fs.Func("each", "anything but empty", func(s string) error {
		if s == "" {
			return errors.New("empty")
		}
		log = append(log, "each="+s)
		return nil
	})
	return fs, &log
}

// Message texts, for the table.
const (
	unknownFmt = "flag provided but not defined: the %s argument is not one of prog's flags (not shown, as it may be a secret); prog --help lists them"
	syntaxFmt  = "bad flag syntax: the %s argument is neither -flag, -flag=value nor a flag's value (not shown, as it may be a secret)"
	invalidFmt = "--%s: not a valid value (not shown, as it may be a secret)"
)

func TestParseErrors(t *testing.T) {
	form := func(f *flag.Flag) string { return ": want the form of -" + f.Name }
	tests := []struct {
		name    string
		args    []string
		first   int
		form    func(*flag.Flag) string
		want    string // the error's text; "" for no error
		help    bool   // the error is flag.ErrHelp
		rest    []string
		values  map[string]string // flag values after a successful parse
		funcLog []string
	}{
		// Unknown flags: named by position, never by name.
		{name: "unknown -x", args: []string{"-x"}, want: fmt.Sprintf(unknownFmt, "1st")},
		{name: "unknown --x", args: []string{"-v", "--x"}, want: fmt.Sprintf(unknownFmt, "2nd")},
		{name: "unknown -x=v", args: []string{"-x=" + planted}, want: fmt.Sprintf(unknownFmt, "1st")},
		{name: "unknown secret as a name", args: []string{"-n", "3", "--" + planted}, want: fmt.Sprintf(unknownFmt, "3rd")},
		{name: "unknown secret name and value", args: []string{"-" + planted + "=" + planted}, want: fmt.Sprintf(unknownFmt, "1st")},
		{name: "unknown after a flag's value", args: []string{"-name", "-x", "-y"}, want: fmt.Sprintf(unknownFmt, "3rd")},
		{name: "unknown before -h", args: []string{"-x", "-h"}, want: fmt.Sprintf(unknownFmt, "1st")},
		{name: "single dash is positional", args: []string{"-", "-x"}, rest: []string{"-", "-x"}},
		// Bad syntax: named by position.
		{name: "bad syntax ---x", args: []string{"---x"}, want: fmt.Sprintf(syntaxFmt, "1st")},
		{name: "bad syntax -=x", args: []string{"-v", "-=x"}, want: fmt.Sprintf(syntaxFmt, "2nd")},
		{name: "bad syntax --=x", args: []string{"--=" + planted}, want: fmt.Sprintf(syntaxFmt, "1st")},
		{name: "bad syntax secret", args: []string{"-n", "1", "---" + planted}, want: fmt.Sprintf(syntaxFmt, "3rd")},
		// Missing values: the flag is ours, named.
		{name: "missing int", args: []string{"-n"}, want: "flag needs an argument: --n"},
		{name: "missing string", args: []string{"-v", "--name"}, want: "flag needs an argument: --name"},
		{name: "missing Value", args: []string{"-token"}, want: "flag needs an argument: --token"},
		// Values that are not valid: the flag named, the value never.
		{name: "bool", args: []string{"-v=" + planted}, want: fmt.Sprintf(invalidFmt, "v")},
		{name: "bool maybe", args: []string{"--v=maybe"}, want: fmt.Sprintf(invalidFmt, "v")},
		{name: "bool func alone", args: []string{"-strict"}, want: fmt.Sprintf(invalidFmt, "strict")},
		{name: "bool func value", args: []string{"-strict=" + planted}, want: fmt.Sprintf(invalidFmt, "strict")},
		{name: "int", args: []string{"-n", planted}, want: fmt.Sprintf(invalidFmt, "n")},
		{name: "int after =", args: []string{"-n=12x"}, want: fmt.Sprintf(invalidFmt, "n")},
		{name: "int with form", args: []string{"-n", planted}, form: form, want: fmt.Sprintf(invalidFmt, "n") + ": want the form of -n"},
		{name: "duration", args: []string{"-timeout", planted}, want: fmt.Sprintf(invalidFmt, "timeout")},
		{name: "duration with form", args: []string{"--timeout=5parsecs"}, form: form, want: fmt.Sprintf(invalidFmt, "timeout") + ": want the form of -timeout"},
		{name: "Value refuses", args: []string{"-token", planted}, want: fmt.Sprintf(invalidFmt, "token")},
		{name: "Value refuses after =", args: []string{"-token=" + planted}, want: fmt.Sprintf(invalidFmt, "token")},
		{name: "func refuses empty", args: []string{"-each="}, want: fmt.Sprintf(invalidFmt, "each")},
		{name: "value quoting quotes", args: []string{"-n", `"` + planted + `" for flag -name: x`}, want: fmt.Sprintf(invalidFmt, "n")},
		// Help.
		{name: "-h", args: []string{"-h"}, help: true},
		{name: "-help", args: []string{"-help"}, help: true},
		{name: "--h", args: []string{"--h"}, help: true},
		{name: "--help", args: []string{"-v", "--help", "-x"}, help: true},
		{name: "-help=value", args: []string{"-help=" + planted}, help: true},
		{name: "-h as a value", args: []string{"-name", "-h"}, rest: []string{}, values: map[string]string{"name": "-h"}},
		{name: "-h after --", args: []string{"--", "-h"}, rest: []string{"-h"}},
		{name: "-h positional", args: []string{"a", "-h"}, rest: []string{"a", "-h"}},
		// "--" and positional arguments end the flags.
		{name: "none", args: nil, rest: []string{}},
		{name: "--", args: []string{"-v", "--", "-x", planted}, rest: []string{"-x", planted}, values: map[string]string{"v": "true"}},
		{name: "positional", args: []string{"-n=4", "pos", "-x", "---y"}, rest: []string{"pos", "-x", "---y"}, values: map[string]string{"n": "4"}},
		{name: "all kinds", args: []string{"-v", "-n", "-3", "--timeout=2m", "-name", planted, "-token=ok", "-strict=no", "-each", "a", "-each=b", "x"},
			rest:    []string{"x"},
			values:  map[string]string{"v": "true", "n": "-3", "timeout": "2m0s", "name": planted, "token": "ok"},
			funcLog: []string{"strict=no", "each=a", "each=b"}},
		// first > 1: a subcommand's flags.
		{name: "first 3 unknown", args: []string{"-v", "-x"}, first: 3, want: fmt.Sprintf(unknownFmt, "4th")},
		{name: "first 2 bad syntax", args: []string{"---x"}, first: 2, want: fmt.Sprintf(syntaxFmt, "2nd")},
		{name: "first 9 unknown", args: []string{"-n", "1", "-x"}, first: 9, want: fmt.Sprintf(unknownFmt, "11th")},
		{name: "first 20 bad syntax", args: []string{"-v", "-=" + planted}, first: 20, want: fmt.Sprintf(syntaxFmt, "21st")},
		{name: "first 2 missing", args: []string{"-n"}, first: 2, want: "flag needs an argument: --n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			fs, log := newFlagSet(&out)
			first := tt.first
			if first == 0 {
				first = 1
			}
			err := Parse(fs, tt.args, first, tt.form)
			switch {
			case tt.help:
				if !errors.Is(err, flag.ErrHelp) {
					t.Fatalf("Parse(%q) = %v, want flag.ErrHelp", tt.args, err)
				}
			case tt.want != "":
				if err == nil || err.Error() != tt.want {
					t.Fatalf("Parse(%q) = %v, want\n%s", tt.args, err, tt.want)
				}
				if errors.Is(err, flag.ErrHelp) {
					t.Errorf("Parse(%q) is flag.ErrHelp", tt.args)
				}
			default:
				if err != nil {
					t.Fatalf("Parse(%q) = %v, want no error", tt.args, err)
				}
				if got := fs.Args(); !slices.Equal(got, tt.rest) && len(got)+len(tt.rest) > 0 {
					t.Errorf("Args() = %q, want %q", got, tt.rest)
				}
				for name, want := range tt.values {
					if got := fs.Lookup(name).Value.String(); got != want {
						t.Errorf("-%s = %q, want %q", name, got, want)
					}
				}
				if !slices.Equal(*log, tt.funcLog) {
					t.Errorf("func flags got %q, want %q", *log, tt.funcLog)
				}
			}
			if err != nil && strings.Contains(err.Error(), "PLANTED") {
				t.Errorf("error shows the planted secret: %v", err)
			}
			if out.Len() != 0 {
				t.Errorf("Parse wrote to fs.Output(): %q", out.String())
			}
			if fs.Output() != &out {
				t.Errorf("fs.Output() is not restored")
			}
		})
	}
}

func TestOrdinal(t *testing.T) {
	for n, want := range map[int]string{
		0: "0th", 1: "1st", 2: "2nd", 3: "3rd", 4: "4th", 10: "10th", 11: "11th", 12: "12th", 13: "13th",
		21: "21st", 22: "22nd", 23: "23rd", 101: "101st", 111: "111th", 112: "112th", 113: "113th", 1002: "1002nd",
	} {
		if got := Ordinal(n); got != want {
			t.Errorf("Ordinal(%d) = %q, want %q", n, got, want)
		}
	}
}

// TestParseCallsNoUsage: Parse prints nothing, even through a Usage that
// writes elsewhere than fs.Output() (a writer it captured); the caller
// prints the usage if it likes. fs.Usage is left as it was.
func TestParseCallsNoUsage(t *testing.T) {
	for _, args := range [][]string{{"-x"}, {"---x"}, {"-n"}, {"-n", planted}, {"-h"}} {
		var out, elsewhere bytes.Buffer
		fs, _ := newFlagSet(&out)
		fs.Usage = func() { fmt.Fprintln(&elsewhere, "Usage: prog [flags]") }
		if err := Parse(fs, args, 1, nil); err == nil {
			t.Fatalf("Parse(%q) = nil, want an error", args)
		}
		if out.Len()+elsewhere.Len() != 0 {
			t.Errorf("Parse(%q) printed %q to fs.Output() and %q through fs.Usage", args, out.String(), elsewhere.String())
		}
		fs.Usage()
		if elsewhere.Len() == 0 {
			t.Errorf("Parse(%q) did not restore fs.Usage", args)
		}
	}
}

// TestParsePanicOnError: with a flag.PanicOnError flag set, the flag
// package panics with its own error, which quotes the argument; Parse
// panics with its own error instead (flag.ErrHelp as it is).
func TestParsePanicOnError(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-v", "-" + planted}, fmt.Sprintf(unknownFmt, "2nd")},
		{[]string{"---" + planted}, fmt.Sprintf(syntaxFmt, "1st")},
		{[]string{"-n", planted}, fmt.Sprintf(invalidFmt, "n")},
		{[]string{"-h"}, flag.ErrHelp.Error()},
	}
	for _, tt := range tests {
		var out bytes.Buffer
		fs := flag.NewFlagSet("prog", flag.PanicOnError)
		fs.SetOutput(&out)
		fs.Bool("v", false, "verbose")
		fs.Int("n", 0, "a number")
		got := func() (r any) {
			defer func() { r = recover() }()
			err := Parse(fs, tt.args, 1, nil)
			t.Errorf("Parse(%q) returned %v, want a panic", tt.args, err)
			return nil
		}()
		err, ok := got.(error)
		if !ok || err.Error() != tt.want {
			t.Errorf("Parse(%q) panicked with %v, want\n%s", tt.args, got, tt.want)
		}
		if out.Len() != 0 {
			t.Errorf("Parse(%q) wrote to fs.Output(): %q", tt.args, out.String())
		}
	}
}
