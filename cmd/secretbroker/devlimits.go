package main

import (
	"errors"
	"fmt"

	"github.com/secretbroker/secretbroker/upstream"
	"github.com/secretbroker/secretbroker/upstream/emulator"
)

// onOff is a flag that reads "on" or "off"; its field holds whether it
// is off, so that the zero Config has it on.
type onOff struct{ off *bool }

// String is "on" or "off"; "" for the zero onOff, which the flag package
// makes to tell a default from a zero value, so that --help shows
// "(default on)".
func (f onOff) String() string {
	switch {
	case f.off == nil:
		return ""
	case *f.off:
		return "off"
	}
	return "on"
}

func (f onOff) Set(s string) error {
	switch s {
	case "on":
		*f.off = false
	case "off":
		*f.off = true
	default:
		return fmt.Errorf("must be on or off, got %q", s)
	}
	return nil
}

// devLimitsPacingFlags are the pacing flags --dev-limits=off changes
// unless they are given.
func devLimitsPacingFlags() []string {
	return []string{"upstream-max-in-flight", "upstream-write-interval", "upstream-points-per-minute",
		"upstream-cpu-time-per-minute", "upstream-writes-per-minute", "upstream-writes-per-hour"}
}

// applyDevLimits applies --dev-limits=off: the embedded emulator enforces
// none of GitHub's rate limits (devEmulatorLimits), and the broker's
// pacing toward it is off too, as against GitHub Enterprise Server with
// rate limits turned off: writes neither spaced nor serialized
// (--upstream-write-interval=0), no points budget
// (--upstream-points-per-minute=0), no CPU-time budget
// (--upstream-cpu-time-per-minute=0), no content budgets
// (--upstream-writes-per-minute=0, --upstream-writes-per-hour=0) and
// GitHub's most requests in flight (--upstream-max-in-flight=100), each
// unless given as a flag or in the
// environment. Without it, a --dev broker paces writes 1 s apart, and a
// load test measures that. The broker's own inbound limits are unchanged.
// given holds the flags given on the command line.
func (c *Config) applyDevLimits(given map[string]bool, lookupEnv func(string) (string, bool)) error {
	if !c.DevLimitsOff {
		return nil
	}
	if !c.Dev {
		return errors.New("--dev-limits=off applies to --dev only")
	}
	set := func(name string) bool {
		_, fromEnv := lookupEnv(envName(name))
		return given[name] || fromEnv
	}
	for _, name := range devLimitsPacingFlags() {
		if set(name) {
			continue
		}
		switch name {
		case "upstream-max-in-flight":
			c.UpstreamMaxInFlight = upstream.MaxInFlightLimit
		case "upstream-write-interval":
			c.UpstreamWriteInterval = 0
		case "upstream-points-per-minute":
			c.UpstreamPointsPerMinute = 0
		case "upstream-cpu-time-per-minute":
			c.UpstreamCPUTimePerMinute = 0
		case "upstream-writes-per-minute":
			c.UpstreamWritesPerMinute = 0
		case "upstream-writes-per-hour":
			c.UpstreamWritesPerHour = 0
		}
	}
	return nil
}

// devEmulatorLimits are the embedded emulator's rate limits: github.com's
// (emulator.GitHubLimits), so that --dev paces as production does, or none
// with --dev-limits=off.
func (c *Config) devEmulatorLimits() emulator.Limits {
	if c.DevLimitsOff {
		return emulator.Limits{}
	}
	return emulator.GitHubLimits()
}
