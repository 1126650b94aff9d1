package deploy

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// dockerignorePattern compiles one .dockerignore pattern the way the
// docker builder reads it (github.com/moby/patternmatcher): relative to
// the context's root, "*" and "?" within one path segment, "**" across
// segments; a pattern that matches a directory excludes all under it.
func dockerignorePattern(p string) *regexp.Regexp {
	p = strings.TrimPrefix(filepath.ToSlash(filepath.Clean(p)), "/")
	var re strings.Builder
	re.WriteString("^")
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case strings.HasPrefix(p[i:], "**/"):
			re.WriteString("(?:.*/)?")
			i += 2
		case strings.HasPrefix(p[i:], "**"):
			re.WriteString(".*")
			i++
		case c == '*':
			re.WriteString("[^/]*")
		case c == '?':
			re.WriteString("[^/]")
		default:
			re.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	re.WriteString("(?:/.*)?$")
	return regexp.MustCompile(re.String())
}

// dockerignored reports whether the .dockerignore patterns exclude the
// file at path (relative to the build context, the repository's root):
// the last pattern that matches decides ("!" re-includes).
func dockerignored(patterns []string, path string) bool {
	ignored := false
	for _, p := range patterns {
		neg := strings.HasPrefix(p, "!")
		if dockerignorePattern(strings.TrimPrefix(p, "!")).MatchString(path) {
			ignored = !neg
		}
	}
	return ignored
}

func TestDockerignored(t *testing.T) {
	patterns := []string{".git", "deploy", "*.test", "/secretbroker", "**/.env", "**/*.pem", "!keep/**/*.pem"}
	tests := []struct {
		path string
		want bool
	}{
		{".git/config", true},
		{"deploy/Dockerfile", true},
		{"cmd/secretbroker/main.go", false},
		{"x.test", true},
		{"cmd/x.test", false}, // no "**/": the root only, as docker reads it
		{"secretbroker", true},
		{"cmd/secretbroker", false},
		{".env", true},
		{"a/b/.env", true},
		{"app.private-key.pem", true},
		{"a/server.pem", true},
		{"keep/a/server.pem", false},
		{"gen/openapi/secretbroker.swagger.json", false},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			if got := dockerignored(patterns, tt.path); got != tt.want {
				t.Errorf("dockerignored(%q) = %v, want %v", tt.path, got, tt.want)
			}
		})
	}
}

// secretSource matches a file docs/DEPLOY.md has the operator make a
// Secret from (--from-file=KEY=./FILE) or hand grpcurl as a client key.
var secretSource = regexp.MustCompile(`--from-file=[^=\s]+=\./(\S+)|-key (\S+)`)

// TestBuildContextKeepsOutSecretFiles checks that the image's build
// context (.dockerignore) leaves out the files docs/DEPLOY.md has the
// operator write or download for the Secrets (the GitHub App's key, the
// TLS key, the HMAC keys, the Redis URL and password, ...): its install
// runs from the repository's root, where docker build then sends every
// file not ignored to the builder, and COPY . . puts it in the build
// stage's layer.
func TestBuildContextKeepsOutSecretFiles(t *testing.T) {
	ignore, err := os.ReadFile(filepath.Join("..", ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	var patterns []string
	for line := range strings.SplitSeq(string(ignore), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			patterns = append(patterns, line)
		}
	}
	doc, err := os.ReadFile(filepath.Join("..", "docs", "DEPLOY.md"))
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	// A command continued over lines ("\" at a line's end) is one line.
	for line := range strings.SplitSeq(strings.ReplaceAll(string(doc), "\\\n", " "), "\n") {
		if !strings.Contains(line, "create secret") && !strings.Contains(line, "grpcurl") {
			continue
		}
		for _, m := range secretSource.FindAllStringSubmatch(line, -1) {
			f := m[1] + m[2]
			if !slices.Contains(files, f) {
				files = append(files, f)
			}
		}
	}
	if !slices.Contains(files, "audit-hmac-key") || !slices.Contains(files, "server.key") {
		t.Fatalf("docs/DEPLOY.md's Secrets come from %q; the test expected audit-hmac-key and server.key among them", files)
	}
	for _, f := range files {
		if !dockerignored(patterns, f) {
			t.Errorf("%s (docs/DEPLOY.md makes a Secret of it, in the current directory) would be in the image's build context: add a pattern for it to .dockerignore", f)
		}
	}
}
