// Package flagerrtest owns the check the binaries' tests share that a
// command line with a secret typed where a flag, a flag's value or an
// argument should be is refused without the secret in the error or in
// what the parser wrote to stderr (the rule of package flagerr).
package flagerrtest

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

// Case is one refused command line.
type Case struct {
	Name string
	Args []string
	Want []string // substrings of the error
}

// Refused runs each case through parse, which must refuse it with an
// error holding every Want and, in neither that error nor what it wrote
// to stderr, planted or "PLANTED" (which planted should hold).
func Refused(t *testing.T, parse func(args []string, stderr io.Writer) error, planted string, cases []Case) {
	t.Helper()
	for _, tt := range cases {
		t.Run(tt.Name, func(t *testing.T) {
			var stderr bytes.Buffer
			err := parse(tt.Args, &stderr)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.Want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			for _, p := range []string{planted, "PLANTED"} {
				if strings.Contains(err.Error(), p) {
					t.Errorf("the error holds %q: %q", p, err)
				}
				if strings.Contains(stderr.String(), p) {
					t.Errorf("stderr holds %q: %.300q", p, stderr.String())
				}
			}
		})
	}
}
