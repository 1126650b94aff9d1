package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestFlagErrorsNeverEchoTheArgument: a secret typed where a flag, a
// flag's value or a scenario should be is refused without being repeated
// in the error (which main prints) or in the usage written to stderr; a
// known flag is still named, an unknown one by its position.
func TestFlagErrorsNeverEchoTheArgument(t *testing.T) {
	const secret = "ghp_PLANTEDmisplacedToken0123456789abcd"
	tests := []struct {
		name string
		args []string
		want []string // substrings of the error
	}{
		{name: "a secret as a flag", args: []string{"-" + secret}, want: []string{"not defined", "1st argument"}},
		{name: "a secret as a flag with a value", args: []string{"--duration=1s", "--" + secret + "=x"}, want: []string{"not defined", "2nd argument"}},
		{name: "a secret as a flag before --", args: []string{"--" + secret, "--", "--dev"}, want: []string{"not defined", "1st argument"}},
		{name: "a secret as a flag with three dashes", args: []string{"---" + secret}, want: []string{"bad flag syntax", "1st argument"}},
		{name: "a secret as a flag's value", args: []string{"--duration", secret}, want: []string{"--duration", "not a valid value"}},
		{name: "a known flag without its value", args: []string{"--duration"}, want: []string{"needs an argument", "--duration"}},
		{name: "a stray argument", args: []string{"--duration=1s", secret}, want: []string{"unexpected arguments", "2nd argument"}},
		{name: "a secret as the scenario", args: []string{"--scenario=" + secret}, want: []string{"--scenario"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			_, err := parseFlags(tt.args, &stderr)
			if err == nil {
				t.Fatal("parseFlags: no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			for _, p := range []string{secret, "PLANTED"} {
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
