package deploy

import (
	"bufio"
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// envSetting matches a setting line of a kustomize env file (or of an
// example of one), commented out or not: an operator uncomments a
// commented one to set it.
var envSetting = regexp.MustCompile(`^(?:#\s*)?(SECRETBROKER_[A-Z0-9_]+)=(.*)$`)

// trailingComment matches a "#" after white space in an env file value.
var trailingComment = regexp.MustCompile(`\s#`)

// envValueProblem says what is wrong with a value of a kustomize env file
// line, "" when nothing is. kustomize (configMapGenerator's envs) takes
// everything after the first "=" as the value, spaces and a "# ..." after
// it included: an env file has no trailing comments. The broker then
// refuses the value at start ("123456   # the App ID" is not a number; a
// URL ending in "   # ..." has a fragment) or, for a string setting,
// takes it as it is.
func envValueProblem(value string) string {
	switch {
	case value != strings.TrimSpace(value):
		return "has white space around it, which kustomize keeps in the value"
	case trailingComment.MatchString(value):
		return "has a trailing comment, which kustomize keeps in the value (an env file has comments on their own lines only)"
	}
	return ""
}

func TestEnvValueProblem(t *testing.T) {
	tests := []struct {
		value string
		bad   bool
	}{
		{"123456", false},
		{"https://github.example.com/api/v3", false},
		{"a#b", false}, // part of the value, as kustomize reads it
		{"", false},
		{"123456            # the App ID from step 2", true},
		{"2 # replicas", true},
		{"2\t# replicas", true},
		{" 2", true},
		{"2 ", true},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			if got := envValueProblem(tt.value) != ""; got != tt.bad {
				t.Errorf("envValueProblem(%q) reports a problem: %v, want %v", tt.value, got, tt.bad)
			}
		})
	}
}

// TestSettingsEnvValues checks every setting of the kustomize env files
// under deploy/ and of the settings.env examples in docs/DEPLOY.md (its
// fenced blocks with SECRETBROKER_*= lines, which an operator copies into
// the overlay's settings.env), commented-out ones included: each value is
// what kustomize would put in the ConfigMap, with no trailing comment or
// white space around it.
func TestSettingsEnvValues(t *testing.T) {
	type source struct {
		name  string
		lines []string
	}
	var sources []source
	err := filepath.WalkDir(".", func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".env") {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		sources = append(sources, source{"deploy/" + p, strings.Split(string(data), "\n")})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(sources) == 0 {
		t.Fatal("no .env files under deploy/")
	}
	doc, err := os.ReadFile(filepath.Join("..", "docs", "DEPLOY.md"))
	if err != nil {
		t.Fatal(err)
	}
	examples := 0
	for i, block := range fencedBlocks(doc) {
		if !slices.ContainsFunc(block, envSetting.MatchString) {
			continue
		}
		examples++
		sources = append(sources, source{"docs/DEPLOY.md, block " + strconv.Itoa(i+1), block})
	}
	if examples == 0 {
		t.Fatal("docs/DEPLOY.md has no settings.env example (a fenced block with SECRETBROKER_*= lines)")
	}
	for _, s := range sources {
		for n, line := range s.lines {
			m := envSetting.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			if p := envValueProblem(m[2]); p != "" {
				t.Errorf("%s, line %d: %s's value %q %s", s.name, n+1, m[1], m[2], p)
			}
		}
	}
}

// fencedBlocks returns the lines of each fenced code block (```) of a
// Markdown document.
func fencedBlocks(doc []byte) [][]string {
	var blocks [][]string
	var cur []string
	in := false
	sc := bufio.NewScanner(bytes.NewReader(doc))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			if in {
				blocks = append(blocks, cur)
				cur = nil
			}
			in = !in
			continue
		}
		if in {
			cur = append(cur, line)
		}
	}
	return blocks
}
