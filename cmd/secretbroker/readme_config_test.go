package main

import (
	"flag"
	"io"
	"os"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// readmeFlagRow is one row of README's configuration table.
type readmeFlagRow struct {
	flags, envs []string // in the order the row gives them
	defaults    string   // the default column as written
	meaning     string
}

// readmeFlagTable returns the rows of README's configuration table (the
// one under "## Configuration" whose first column names flags).
func readmeFlagTable(t *testing.T) []readmeFlagRow {
	t.Helper()
	raw, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(raw), "\n## Configuration\n")
	if !ok {
		t.Fatal(`README.md has no "## Configuration" section`)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	quoted := regexp.MustCompile("`([^`]*)`")
	var rows []readmeFlagRow
	for line := range strings.Lines(section) {
		if !strings.HasPrefix(line, "| `--") {
			continue
		}
		cells := strings.Split(strings.Trim(strings.TrimSpace(line), "|"), " | ")
		if len(cells) != 4 {
			t.Fatalf("README configuration row with %d cells, want 4: %s", len(cells), line)
		}
		var r readmeFlagRow
		for _, m := range quoted.FindAllStringSubmatch(cells[0], -1) {
			r.flags = append(r.flags, strings.TrimPrefix(m[1], "--"))
		}
		for _, m := range quoted.FindAllStringSubmatch(cells[1], -1) {
			r.envs = append(r.envs, m[1])
		}
		r.defaults, r.meaning = strings.TrimSpace(cells[2]), strings.TrimSpace(cells[3])
		rows = append(rows, r)
	}
	if len(rows) == 0 {
		t.Fatal("README's configuration table has no rows")
	}
	return rows
}

// zeroMeaning finds a flag usage's or a README entry's word on what 0 does:
// "0 turns it off", "0 for ever", "0 (the default) leaves ...", "; 0 refuses".
var zeroMeaning = regexp.MustCompile("(?:^|[ ;(,])`?0`?(?: turns| for ever| keeps| refuses| sends| \\(|, or|`? \\(off\\))")

// usageBound finds a flag usage's bounds on its value: "at least 5",
// "1 to 100".
var usageBound = regexp.MustCompile(`\bat least (\d+)\b|\b(\d+) to (\d+)\b`)

// readmeBound returns what README's row must say for a usageBound match:
// the same range, or the same least value ("at least 32", "32 or more",
// "32+").
func readmeBound(m []string) *regexp.Regexp {
	if m[1] != "" {
		return regexp.MustCompile(`\bat least ` + m[1] + `\b|\b` + m[1] + ` or more\b|\b` + m[1] + `\+`)
	}
	return regexp.MustCompile(`\b` + m[2] + ` to ` + m[3] + `\b`)
}

// TestREADMEConfigurationTable checks README's configuration table against
// the flags: every flag in one row and no other, its environment variable,
// its default, that the row says what 0 does whenever --help does (and,
// for a row of one flag, only then), and the bounds --help gives.
func TestREADMEConfigurationTable(t *testing.T) {
	fs := newFlagSet(&Config{}, io.Discard)
	seen := map[string]bool{}
	for _, r := range readmeFlagTable(t) {
		if len(r.flags) != len(r.envs) {
			t.Errorf("README row %q names %d flags and %d variables", r.flags, len(r.flags), len(r.envs))
			continue
		}
		defaults := readmeDefaults(r)
		for i, name := range r.flags {
			f := fs.Lookup(name)
			if f == nil {
				t.Errorf("README lists --%s, which is not a flag", name)
				continue
			}
			if seen[name] {
				t.Errorf("README lists --%s twice", name)
			}
			seen[name] = true
			if want := envName(name); r.envs[i] != want {
				t.Errorf("README gives --%s the variable %s, want %s", name, r.envs[i], want)
			}
			if len(defaults) != len(r.flags) {
				t.Errorf("README row %q: %d defaults (%q) for %d flags", r.flags, len(defaults), r.defaults, len(r.flags))
				continue
			}
			if !sameDefault(f, defaults[i]) {
				t.Errorf("README gives --%s the default %q, the flag %q", name, defaults[i], f.DefValue)
			}
			if zeroMeaning.MatchString(f.Usage) && !zeroMeaning.MatchString(r.meaning) && !zeroMeaning.MatchString(r.defaults) {
				t.Errorf("--%s's usage says what 0 does (%q), README's row does not: %s", name, f.Usage, r.meaning)
			}
			// A row of several flags (--caller-rps, --caller-burst) says
			// what 0 does for one of them.
			if len(r.flags) == 1 && !zeroMeaning.MatchString(f.Usage) && zeroMeaning.MatchString(r.meaning) {
				t.Errorf("README says what 0 does for --%s, its usage does not: %q", name, f.Usage)
			}
			for _, m := range usageBound.FindAllStringSubmatch(f.Usage, -1) {
				if !readmeBound(m).MatchString(r.meaning) {
					t.Errorf("--%s's usage bounds it (%q), README's row does not: %s", name, m[0], r.meaning)
				}
			}
		}
	}
	fs.VisitAll(func(f *flag.Flag) {
		if !seen[f.Name] {
			t.Errorf("README's configuration table does not list --%s", f.Name)
		}
	})
}

// readmeDefaults splits a row's default column into one default per flag:
// "`50`, `100`" is two, "(none)" is (none) for each flag of the row, a
// code span followed by words ("`0` (off)", "`33554432` (32 MiB)") is the
// code span, and words alone ("16 per CPU") are kept as they are.
func readmeDefaults(r readmeFlagRow) []string {
	d := r.defaults
	if strings.HasPrefix(d, "(none") {
		out := make([]string, len(r.flags))
		for i := range out {
			out[i] = "(none)"
		}
		return out
	}
	if !strings.HasPrefix(d, "`") {
		return []string{d}
	}
	var out []string
	for part := range strings.SplitSeq(d, ", ") {
		v, _, _ := strings.Cut(strings.TrimPrefix(part, "`"), "`")
		out = append(out, v)
	}
	return out
}

// sameDefault reports whether README's default for f, as readmeDefaults
// gives it, is f's default.
func sameDefault(f *flag.Flag, readme string) bool {
	switch readme {
	case "(none)":
		return f.DefValue == "" || f.DefValue == "0"
	case "16 per CPU", "16 per CPU (`GOMAXPROCS`)":
		return f.DefValue == strconv.Itoa(16*runtime.GOMAXPROCS(0))
	case "by `--upstream-url`":
		return f.Name == "upstream-api-version-actions" && f.DefValue == ""
	}
	if d, err := time.ParseDuration(f.DefValue); err == nil {
		rd, err := time.ParseDuration(readme)
		return err == nil && rd == d
	}
	return strings.EqualFold(readme, f.DefValue)
}
