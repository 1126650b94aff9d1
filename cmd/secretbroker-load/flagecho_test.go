package main

import (
	"io"
	"testing"

	"github.com/secretbroker/secretbroker/cmd/internal/flagerr/flagerrtest"
)

// TestFlagErrorsNeverEchoTheArgument: a secret typed where a flag, a
// flag's value or a scenario should be is refused without being repeated
// in the error (which main prints) or in the usage written to stderr; a
// known flag is still named, an unknown one by its position.
func TestFlagErrorsNeverEchoTheArgument(t *testing.T) {
	const secret = "ghp_PLANTEDmisplacedToken0123456789abcd"
	flagerrtest.Refused(t, func(args []string, stderr io.Writer) error {
		_, err := parseFlags(args, stderr)
		return err
	}, secret, []flagerrtest.Case{
		{Name: "a secret as a flag", Args: []string{"-" + secret}, Want: []string{"not defined", "1st argument"}},
		{Name: "a secret as a flag with a value", Args: []string{"--duration=1s", "--" + secret + "=x"}, Want: []string{"not defined", "2nd argument"}},
		{Name: "a secret as a flag before --", Args: []string{"--" + secret, "--", "--dev"}, Want: []string{"not defined", "1st argument"}},
		{Name: "a secret as a flag with three dashes", Args: []string{"---" + secret}, Want: []string{"bad flag syntax", "1st argument"}},
		{Name: "a secret as a flag's value", Args: []string{"--duration", secret}, Want: []string{"--duration", "not a valid value"}},
		{Name: "a known flag without its value", Args: []string{"--duration"}, Want: []string{"needs an argument", "--duration"}},
		{Name: "a stray argument", Args: []string{"--duration=1s", secret}, Want: []string{"unexpected arguments", "2nd argument"}},
		{Name: "a secret as the scenario", Args: []string{"--scenario=" + secret}, Want: []string{"--scenario"}},
	})
}
