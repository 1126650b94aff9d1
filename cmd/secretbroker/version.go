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
	return formatVersion(bi, ok, buildStamp{version: stampedVersion, revision: stampedRevision})
}

// stampedVersion and stampedRevision are what the image build stamps in
// with the linker (deploy/Dockerfile: -ldflags "-X main.stampedVersion=...
// -X main.stampedRevision=..."), whose build context has no .git for the
// toolchain to read the revision from. They are empty in any other build,
// and nothing assigns them at run time.
var stampedVersion, stampedRevision string

// buildStamp is a version and a revision stamped in at link time.
type buildStamp struct {
	version, revision string
}

// formatVersion is buildVersion for the given build information; ok false
// means there is none. The stamp fills in what the build information
// lacks: the version when the module has none ("(devel)"), the revision
// when the toolchain recorded none. Without either, the version is
// "(devel)" with the running Go version.
func formatVersion(bi *debug.BuildInfo, ok bool, stamp buildStamp) string {
	version, goVersion := "", ""
	var fields []string
	revision := false
	if ok && bi != nil {
		version, goVersion = bi.Main.Version, bi.GoVersion
		for _, key := range []string{"vcs.revision", "vcs.modified"} {
			i := slices.IndexFunc(bi.Settings, func(s debug.BuildSetting) bool { return s.Key == key })
			if i >= 0 && bi.Settings[i].Value != "" {
				fields = append(fields, strings.TrimPrefix(key, "vcs.")+"="+bi.Settings[i].Value)
				revision = revision || key == "vcs.revision"
			}
		}
	}
	if !revision && stamp.revision != "" {
		fields = append([]string{"revision=" + stamp.revision}, fields...)
	}
	if (version == "" || version == "(devel)") && stamp.version != "" {
		version = stamp.version
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
