package main

import (
	"io"
	"testing"

	"github.com/secretbroker/secretbroker/cmd/internal/flagerr/flagerrtest"
)

// TestFlagErrorsNeverEchoTheArgument: a secret typed where a flag, a
// flag's value or nothing should be is refused without being repeated in
// the error (which main prints) or in the usage written to stderr; a
// known flag is still named, an unknown one by its position.
func TestFlagErrorsNeverEchoTheArgument(t *testing.T) {
	const secret = "ghp_PLANTEDmisplacedToken0123456789abcd"
	flagerrtest.Refused(t, func(args []string, stderr io.Writer) error {
		_, err := parseFlags(args, stderr)
		return err
	}, secret, []flagerrtest.Case{
		{Name: "a secret as a flag", Args: []string{"-" + secret}, Want: []string{"not defined", "1st argument"}},
		{Name: "a secret as a flag with a value", Args: []string{"--replicas=1", "--" + secret + "=x"}, Want: []string{"not defined", "2nd argument"}},
		{Name: "a secret as a flag with three dashes", Args: []string{"---" + secret}, Want: []string{"bad flag syntax", "1st argument"}},
		{Name: "a secret as a flag's value", Args: []string{"--latency", secret}, Want: []string{"--latency", "not a valid value"}},
		{Name: "a stray argument", Args: []string{"--replicas=1", secret}, Want: []string{"unexpected arguments", "2nd argument"}},
		{Name: "a stray argument after --", Args: []string{"--", secret}, Want: []string{"unexpected arguments", "2nd argument"}},
		{Name: "a secret in --writes", Args: []string{"--writes", "1," + secret}, Want: []string{"--writes", "numbers from 1 to 1000"}},
		{Name: "a secret in --scopes", Args: []string{"--scopes", secret}, Want: []string{"--scopes", "numbers from 1 to 100"}},
	})
}
