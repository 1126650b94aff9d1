package main

import (
	"strings"
	"testing"
)

// TestFlagErrorsNeverEchoTheArgument: a secret typed where a flag, a
// flag's value or the command should be (a token pasted at the wrong
// place) is refused without being repeated on stdout or stderr; a known
// flag is still named, an unknown one by its position.
func TestFlagErrorsNeverEchoTheArgument(t *testing.T) {
	const secret = "ghp_PLANTEDmisplacedToken0123456789abcd"
	const name = "repos/octo-org/hello-world/actions/secrets/X"
	env := map[string]string{"SECRETBROKER_ADDR": "127.0.0.1:1"}
	tests := []struct {
		name string
		args []string
		want []string // substrings of stderr
	}{
		{name: "a secret as a flag", args: []string{"get", "-" + secret, name}, want: []string{"not defined", "2nd argument", "usage:"}},
		{name: "a secret as a flag with a value", args: []string{"get", name, "--" + secret + "=x"}, want: []string{"not defined", "3rd argument"}},
		{name: "a secret as a flag after flags and a name", args: []string{"ls", "--timeout", "5s", "repos/octo-org/hello-world", "-o", "json", "--" + secret}, want: []string{"not defined", "7th argument"}},
		{name: "a secret as a flag with three dashes", args: []string{"get", "---" + secret}, want: []string{"bad flag syntax", "2nd argument"}},
		{name: "a secret as a flag's value", args: []string{"get", name, "--timeout=" + secret}, want: []string{"--timeout", "not a valid value"}},
		{name: "a secret as a boolean flag's value", args: []string{"get", name, "--tls=" + secret}, want: []string{"--tls", "not a valid value"}},
		{name: "a known flag without its value", args: []string{"get", name, "--addr"}, want: []string{"needs an argument", "--addr"}},
		{name: "a secret as the command", args: []string{secret, name}, want: []string{"unknown command", "1st argument"}},
		// A flag's value refused after parsing is not shown either.
		{name: "a secret as --addr", args: []string{"get", name, "--addr", secret}, want: []string{"--addr", "host:port"}},
		{name: "a secret as --addr with a port", args: []string{"get", name, "--addr", "%" + secret + ":1"}, want: []string{"--addr"}},
		{name: "a secret as --output", args: []string{"ls", "-o", secret, "repos/octo-org/hello-world"}, want: []string{"--output", "table or json"}},
		{name: "a secret as --visibility", args: []string{"put", "--visibility", secret, "orgs/octo-org/actions/secrets/X"}, want: []string{"--visibility"}},
		{name: "a secret in --repos", args: []string{"put", "--repos", secret + ",,1", "orgs/octo-org/actions/secrets/X"}, want: []string{"--repos has an empty entry"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ctl(t, env, "", tt.args...)
			wantCode(t, r, exitUsage)
			for _, w := range tt.want {
				wantContains(t, "stderr", r.stderr, w)
			}
			for _, p := range []string{secret, "PLANTED"} {
				if strings.Contains(r.all(), p) {
					t.Errorf("the output holds %q:\nstdout:\n%s\nstderr:\n%s", p, r.stdout, r.stderr)
				}
			}
		})
	}
}
