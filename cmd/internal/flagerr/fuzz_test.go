package flagerr

import (
	"bytes"
	"errors"
	"flag"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// minLeak is the length from which an argument's string found in an
// error counts as repeated. Shorter strings are no secret (a token or a
// password is longer) and turn up by chance in any English text ("the",
// "a", "1st"), so a shorter rule would fail on the error's own words.
const minLeak = 4

// fixedWords returns the words of Parse's errors that are not taken from
// the arguments. An argument's string that is a substring of one of them
// (such as "flag", "argument", "secret") is found in an error for being
// those words, not for being repeated: it is not counted.
func fixedWords() []string {
	return []string{
		"bad flag syntax: the ",
		" argument is neither -flag, -flag=value nor a flag's value (not shown, as it may be a secret)",
		"flag provided but not defined: --",
		"flag provided but not defined: the ",
		" argument is not one of ",
		"'s flags (not shown, as it may be a secret); ",
		" --help lists them",
		"flag needs an argument: --",
		"flag needs an argument: the ",
		" argument (not shown, as it may be a secret)",
		": not a valid value (not shown, as it may be a secret)",
		fuzzForm,
		"the flags are not valid (the error is not shown, as it may quote a secret); ",
	}
}

const fuzzForm = ": want a value of its kind"

// ordinalRE finds the arguments an error names by position.
var ordinalRE = regexp.MustCompile(`the ([0-9]+)(st|nd|rd|th) argument`)

// FuzzParse checks Parse against the flag package and against the rule,
// for any arguments (args is the command line with its arguments
// separated by NUL, which no argument of a real command line holds;
// first is args[0]'s position, 1 to 5):
//
//   - Parse succeeds exactly when flag.FlagSet.Parse of an identical
//     flag set does, and then leaves the same flag values, the same
//     calls of the func flags and the same fs.Args(); it is flag.ErrHelp
//     exactly when that one is.
//   - Its error contains no argument's string, nor the name or value
//     parts of a -name=value argument, of minLeak bytes or more, except
//     a substring of one of the flag set's own flags ("--name"), of the
//     program's name or of the errors' fixed words.
//   - An argument named by position is within the command line, and is
//     one that starts with "-".
//   - flag.ErrHelp only when an argument is -h, -help, --h or --help
//     (with or without "=value") before any "--".
//   - Nothing is written to fs.Output().
//   - With flag.PanicOnError, Parse panics with the error it returns
//     with flag.ContinueOnError.
func FuzzParse(f *testing.F) {
	seeds := [][]string{
		{},
		{"-v"},
		{"-" + planted},
		{"--" + planted},
		{"-" + planted + "=" + planted},
		{"-x=" + planted},
		{"-name=" + planted},
		{"-name", planted},
		{"-n", planted},
		{"-n=" + planted},
		{"-v=" + planted},
		{"-timeout", planted},
		{"--timeout=" + planted},
		{"-token", planted},
		{"-token=" + planted},
		{"-strict=" + planted},
		{"-strict"},
		{"-each="},
		{"-each", planted},
		{"---" + planted},
		{"-=" + planted},
		{"--=" + planted},
		{"-v", "--", "-" + planted, planted},
		{planted, "-" + planted},
		{"-n", "1", "-timeout", "2s", "-name", planted, "-token", "ok", "-" + planted},
		{"-h"},
		{"-help=" + planted},
		{"-" + planted, "-h"},
		{"-name", "-h"},
		{"-n", `"` + planted + `" for flag -name: x`},
		{"-timeout", "5" + planted},
		{"-name"},
		{"-token"},
		{"-", planted},
	}
	for i, s := range seeds {
		f.Add(strings.Join(s, "\x00"), uint8(i))
	}
	f.Fuzz(func(t *testing.T, line string, firstByte uint8) {
		var args []string
		if line != "" {
			args = strings.Split(line, "\x00")
		}
		first := 1 + int(firstByte%5)

		var out, refOut bytes.Buffer
		fs, log := newFlagSet(&out)
		ref, refLog := newFlagSet(&refOut)
		err := Parse(fs, args, first, func(*flag.Flag) string { return fuzzForm })
		refErr := ref.Parse(slices.Clone(args))

		if out.Len() != 0 {
			t.Errorf("Parse wrote to fs.Output(): %q", out.String())
		}
		// The same with flag.PanicOnError: a panic with the same error.
		var panicOut bytes.Buffer
		pfs, _ := newFlagSetHandling(&panicOut, flag.PanicOnError)
		panicked := func() (r any) {
			defer func() { r = recover() }()
			_ = Parse(pfs, args, first, func(*flag.Flag) string { return fuzzForm })
			return nil
		}()
		if pe, ok := panicked.(error); (panicked == nil) != (err == nil) || panicked != nil && (!ok || pe.Error() != err.Error()) {
			t.Errorf("Parse(%q) = %v, with flag.PanicOnError panics with %v", args, err, panicked)
		}
		if panicOut.Len() != 0 {
			t.Errorf("Parse wrote to fs.Output() (flag.PanicOnError): %q", panicOut.String())
		}
		if (err == nil) != (refErr == nil) {
			t.Fatalf("Parse(%q) = %v, flag.FlagSet.Parse = %v", args, err, refErr)
		}
		if errors.Is(err, flag.ErrHelp) != errors.Is(refErr, flag.ErrHelp) {
			t.Fatalf("Parse(%q) = %v, flag.FlagSet.Parse = %v", args, err, refErr)
		}
		if err == nil {
			fs.VisitAll(func(fl *flag.Flag) {
				if got, want := fl.Value.String(), ref.Lookup(fl.Name).Value.String(); got != want {
					t.Errorf("Parse(%q): -%s = %q, flag.FlagSet.Parse: %q", args, fl.Name, got, want)
				}
			})
			if !slices.Equal(*log, *refLog) {
				t.Errorf("Parse(%q): func flags got %q, flag.FlagSet.Parse: %q", args, *log, *refLog)
			}
			if !slices.Equal(fs.Args(), ref.Args()) {
				t.Errorf("Parse(%q): Args() = %q, flag.FlagSet.Parse: %q", args, fs.Args(), ref.Args())
			}
			return
		}
		if errors.Is(err, flag.ErrHelp) {
			if !askedHelp(args) {
				t.Fatalf("Parse(%q) = flag.ErrHelp without -h or -help", args)
			}
			return
		}

		msg := err.Error()
		for _, a := range args {
			for _, s := range argStrings(a) {
				if strings.Contains(msg, s) && !excused(fs, s) {
					t.Fatalf("Parse(%q) error repeats %q: %s", args, s, msg)
				}
			}
		}
		for _, m := range ordinalRE.FindAllStringSubmatch(msg, -1) {
			n, convErr := strconv.Atoi(m[1])
			if convErr != nil || n < first || n >= first+len(args) {
				t.Fatalf("Parse(%q) from %d names the %s%s argument, not one of them: %s", args, first, m[1], m[2], msg)
			}
			if a := args[n-first]; !strings.HasPrefix(a, "-") {
				t.Fatalf("Parse(%q) from %d names the %s%s argument %q, not a flag: %s", args, first, m[1], m[2], a, msg)
			}
		}
	})
}

// argStrings returns the strings of a that an error must not repeat: a,
// and for a flag-like a its name and value parts.
func argStrings(a string) []string {
	strs := []string{a}
	if rest, ok := strings.CutPrefix(a, "-"); ok {
		rest = strings.TrimPrefix(rest, "-")
		strs = append(strs, rest)
		if name, value, ok := strings.Cut(rest, "="); ok {
			strs = append(strs, name, value)
		}
	}
	return strs
}

// excused reports whether s, found in an error, is not counted as
// repeated: it is shorter than minLeak, or a substring of one of fs's
// own flags as "--name", of fs's name or of the errors' fixed words.
func excused(fs *flag.FlagSet, s string) bool {
	if len(s) < minLeak || strings.Contains(fs.Name(), s) {
		return true
	}
	own := false
	fs.VisitAll(func(fl *flag.Flag) {
		own = own || strings.Contains("--"+fl.Name, s)
	})
	if own {
		return true
	}
	for _, w := range fixedWords() {
		if strings.Contains(w, s) {
			return true
		}
	}
	return false
}

// askedHelp reports whether one of args, before any "--", is -h, -help,
// --h or --help, with or without "=value".
func askedHelp(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		name, _, _ := strings.Cut(a, "=")
		switch name {
		case "-h", "-help", "--h", "--help":
			return true
		}
	}
	return false
}
