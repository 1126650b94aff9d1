package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestFlagErrorsNeverEchoTheArgument: a secret typed where a flag, a
// flag's value or nothing should be is refused without being repeated in
// the error (which main prints) or in the usage written to stderr; a
// known flag is still named, an unknown one by its position.
func TestFlagErrorsNeverEchoTheArgument(t *testing.T) {
	const secret = "ghp_PLANTEDmisplacedToken0123456789abcd"
	tests := []struct {
		name string
		args []string
		want []string // substrings of the error
	}{
		{name: "a secret as a flag", args: []string{"-" + secret}, want: []string{"not defined", "1st argument"}},
		{name: "a secret as a flag with a value", args: []string{"--replicas=1", "--" + secret + "=x"}, want: []string{"not defined", "2nd argument"}},
		{name: "a secret as a flag with three dashes", args: []string{"---" + secret}, want: []string{"bad flag syntax", "1st argument"}},
		{name: "a secret as a flag's value", args: []string{"--latency", secret}, want: []string{"--latency", "not a valid value"}},
		{name: "a stray argument", args: []string{"--replicas=1", secret}, want: []string{"unexpected arguments", "2nd argument"}},
		{name: "a stray argument after --", args: []string{"--", secret}, want: []string{"unexpected arguments", "2nd argument"}},
		{name: "a secret in --writes", args: []string{"--writes", "1," + secret}, want: []string{"--writes", "numbers from 1 to 1000"}},
		{name: "a secret in --scopes", args: []string{"--scopes", secret}, want: []string{"--scopes", "numbers from 1 to 100"}},
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
				if strings.Contains(err.Error(), p) || strings.Contains(stderr.String(), p) {
					t.Errorf("%q shown:\nerror: %v\nstderr:\n%s", p, err, stderr.String())
				}
			}
		})
	}
}
