package main

import (
	"bytes"
	"encoding/json"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"
)

func TestFormatVersion(t *testing.T) {
	rev := "66f5906e0c2b7a1d9f3e4c5b6a7d8e9f0a1b2c3d"
	tests := []struct {
		name  string
		bi    *debug.BuildInfo
		ok    bool
		stamp buildStamp
		want  string
	}{
		{"no build info", nil, false, buildStamp{}, "(devel) " + runtime.Version()},
		{"no build info, ok", nil, true, buildStamp{}, "(devel) " + runtime.Version()},
		{"devel, no vcs", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}}, true,
			buildStamp{}, "(devel) go1.26.8"},
		{"empty versions", &debug.BuildInfo{}, true, buildStamp{}, "(devel) " + runtime.Version()},
		{"release with vcs", &debug.BuildInfo{
			GoVersion: "go1.26.8",
			Main:      debug.Module{Path: "github.com/secretbroker/secretbroker", Version: "v1.4.0"},
			Settings: []debug.BuildSetting{
				{Key: "-trimpath", Value: "true"},
				{Key: "vcs", Value: "git"},
				{Key: "vcs.modified", Value: "false"},
				{Key: "vcs.revision", Value: rev},
				{Key: "vcs.time", Value: "2026-11-27T18:00:00Z"},
			},
		}, true, buildStamp{}, "v1.4.0 revision=" + rev + " modified=false go1.26.8"},
		{"modified tree, pseudo-version", &debug.BuildInfo{
			GoVersion: "go1.26.8",
			Main:      debug.Module{Version: "v0.0.0-20261127180000-66f5906e0c2b+dirty"},
			Settings: []debug.BuildSetting{
				{Key: "vcs.revision", Value: rev},
				{Key: "vcs.modified", Value: "true"},
			},
		}, true, buildStamp{}, "v0.0.0-20261127180000-66f5906e0c2b+dirty revision=" + rev + " modified=true go1.26.8"},
		{"revision only", &debug.BuildInfo{
			GoVersion: "go1.26.8",
			Settings:  []debug.BuildSetting{{Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: ""}},
		}, true, buildStamp{}, "(devel) revision=" + rev + " go1.26.8"},
		// The image build: no .git in its context, so the linker stamps
		// the version and revision in.
		{"stamped, no vcs", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}}, true,
			buildStamp{version: "v1.2.3", revision: rev}, "v1.2.3 revision=" + rev + " go1.26.8"},
		{"stamped revision only", &debug.BuildInfo{GoVersion: "go1.26.8"}, true,
			buildStamp{revision: rev}, "(devel) revision=" + rev + " go1.26.8"},
		{"stamped, no build info", nil, false, buildStamp{version: "v1.2.3"}, "v1.2.3 " + runtime.Version()},
		// What the toolchain recorded wins over a stamp.
		{"vcs and a stamp", &debug.BuildInfo{
			GoVersion: "go1.26.8",
			Main:      debug.Module{Version: "v1.4.0"},
			Settings:  []debug.BuildSetting{{Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: "false"}},
		}, true, buildStamp{version: "v9.9.9", revision: "0000000"}, "v1.4.0 revision=" + rev + " modified=false go1.26.8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := formatVersion(tt.bi, tt.ok, tt.stamp); got != tt.want {
				t.Errorf("formatVersion = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestBuildVersion(t *testing.T) {
	v := buildVersion()
	fields := strings.Fields(v)
	if len(fields) < 2 {
		t.Fatalf("buildVersion() = %q, want at least a version and a Go version", v)
	}
	if strings.ContainsAny(v, "\n\r") {
		t.Errorf("buildVersion() = %q spans lines", v)
	}
	if last := fields[len(fields)-1]; !strings.HasPrefix(last, "go") {
		t.Errorf("buildVersion() = %q, want it to end with the Go version", v)
	}
}

func TestWantsVersion(t *testing.T) {
	tests := []struct {
		args []string
		want bool
	}{
		{nil, false},
		{[]string{"--version"}, true},
		{[]string{"-version"}, true},
		{[]string{"--version=true"}, true},
		{[]string{"--dev", "--grpc-addr=127.0.0.1:0", "--version"}, true},
		{[]string{"--dev"}, false},
		{[]string{"--version=false"}, false},
		{[]string{"--versions"}, false},
		{[]string{"--", "--version"}, false},
	}
	for _, tt := range tests {
		if got := wantsVersion(tt.args); got != tt.want {
			t.Errorf("wantsVersion(%q) = %v, want %v", tt.args, got, tt.want)
		}
	}
}

func TestRealMainVersion(t *testing.T) {
	for _, args := range [][]string{
		{"--version"},
		{"-version"},
		// Handled before the configuration is read: a flag that would
		// fail validation does not matter.
		{"--grpc-addr=not an address", "--no-such-flag", "--version"},
	} {
		var stdout, stderr bytes.Buffer
		if err := realMain(t.Context(), args, &stdout, &stderr); err != nil {
			t.Fatalf("realMain(%q) = %v, want nil", args, err)
		}
		if want := "secretbroker " + buildVersion() + "\n"; stdout.String() != want {
			t.Errorf("realMain(%q) printed %q, want %q", args, stdout.String(), want)
		}
		if stderr.Len() != 0 {
			t.Errorf("realMain(%q) wrote %q to stderr, want nothing", args, stderr.String())
		}
	}
}

// TestServingLogVersion checks that the start-up log line carries the
// version.
func TestServingLogVersion(t *testing.T) {
	b := startBroker(t, devConfig(t))
	if !b.logs.waitFor(`"secretbroker serving"`, 1, 30*time.Second) {
		t.Fatalf("no start-up log line in:\n%s", b.logs)
	}
	for line := range strings.Lines(b.logs.String()) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if rec["msg"] != "secretbroker serving" {
			continue
		}
		if got, want := rec["version"], buildVersion(); got != want {
			t.Errorf("start-up log line has version %v, want %q", got, want)
		}
		return
	}
	t.Fatal("no start-up log line")
}
