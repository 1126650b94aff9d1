package deploy

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// dockerLdflags matches the -ldflags of the Dockerfile's go build.
var dockerLdflags = regexp.MustCompile(`go build [^\n]*-ldflags="([^"]*)"`)

// The image's binary says its version and revision although its build
// context has no .git: the broker built with the Dockerfile's own
// -ldflags, the build arguments filled in and no VCS stamping (as in the
// image build), prints them with --version. A flag naming a variable the
// broker does not have would leave them out silently.
func TestImageStampsVersion(t *testing.T) {
	goBin := goCommand(t)
	dockerfile, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	m := dockerLdflags.FindSubmatch(dockerfile)
	if m == nil {
		t.Fatal("the Dockerfile's go build has no -ldflags=\"...\"")
	}
	const version, revision = "v9.8.7", "0123456789abcdef0123456789abcdef01234567"
	flags := strings.NewReplacer("${VERSION}", version, "${REVISION}", revision).Replace(string(m[1]))
	if !strings.Contains(flags, version) || !strings.Contains(flags, revision) {
		t.Fatalf("the Dockerfile's -ldflags %q use neither ${VERSION} nor ${REVISION}", m[1])
	}
	bin := filepath.Join(t.TempDir(), "secretbroker")
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, goBin, "build", "-buildvcs=false", "-ldflags="+flags, "-o", bin, "./cmd/secretbroker")
	build.Dir = ".."
	var out bytes.Buffer
	build.Stdout, build.Stderr = &out, &out
	if err := build.Run(); err != nil {
		t.Fatalf("go build with the Dockerfile's -ldflags: %v\n%s", err, out.String())
	}
	got, err := exec.CommandContext(ctx, bin, "--version").Output()
	if err != nil {
		t.Fatalf("secretbroker --version: %v", err)
	}
	if want := "secretbroker " + version + " revision=" + revision + " go"; !strings.HasPrefix(string(got), want) {
		t.Errorf("secretbroker --version = %q, want it to start with %q", got, want)
	}
}

// dockerGo matches the Go version of the Dockerfile's build stage.
var dockerGo = regexp.MustCompile(`(?m)^FROM golang:([0-9][^\s]*) AS build$`)

// The image is built with the Go that go.mod names, to the patch release:
// a floating tag (golang:1.26) would build the image with whatever Go
// the registry has that day, not the one CI tested.
func TestImageGoVersion(t *testing.T) {
	dockerfile, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	m := dockerGo.FindSubmatch(dockerfile)
	if m == nil {
		t.Fatal("the Dockerfile has no \"FROM golang:<version> AS build\"")
	}
	mod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	goLine := regexp.MustCompile(`(?m)^go ([0-9.]+)$`).FindSubmatch(mod)
	if goLine == nil {
		t.Fatal("go.mod has no go line")
	}
	if got, want := string(m[1]), string(goLine[1]); got != want {
		t.Errorf("the Dockerfile builds with golang:%s, want golang:%s (go.mod's go line)", got, want)
	}
}
