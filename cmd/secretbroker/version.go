package main

// The broker's version, from the build information the Go toolchain
// stamps into the binary.

import (
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
)

// buildVersion describes the running binary in one line, from its build
// information: the main module's version ("(devel)" when it has none), then
// revision=<vcs.revision> and modified=<vcs.modified> when the build
// recorded them, then the Go version. For example
//
//	v1.4.0 revision=66f5906e0c… modified=false go1.26.8
//
// It is never empty.
func buildVersion() string {
	bi, ok := debug.ReadBuildInfo()
	return formatVersion(bi, ok)
}

// formatVersion is buildVersion for the given build information; ok false
// means there is none, and the version is "(devel)" with the running Go
// version.
func formatVersion(bi *debug.BuildInfo, ok bool) string {
	version, goVersion := "", ""
	var fields []string
	if ok && bi != nil {
		version, goVersion = bi.Main.Version, bi.GoVersion
		for _, key := range []string{"vcs.revision", "vcs.modified"} {
			i := slices.IndexFunc(bi.Settings, func(s debug.BuildSetting) bool { return s.Key == key })
			if i >= 0 && bi.Settings[i].Value != "" {
				fields = append(fields, strings.TrimPrefix(key, "vcs.")+"="+bi.Settings[i].Value)
			}
		}
	}
	if version == "" {
		version = "(devel)"
	}
	if goVersion == "" {
		goVersion = runtime.Version()
	}
	return strings.Join(slices.Concat([]string{version}, fields, []string{goVersion}), " ")
}

// wantsVersion reports whether args, the command-line arguments, ask for
// the version: -version or --version (or =true), before any "--".
func wantsVersion(args []string) bool {
	for _, arg := range args {
		switch arg {
		case "--":
			return false
		case "-version", "--version", "-version=true", "--version=true":
			return true
		}
	}
	return false
}
