package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
)

const (
	repoScope = "repos/octo-org/hello-world/actions"
	orgScope  = "orgs/octo-org/actions"
	envScope  = "repos/octo-org/hello-world/environments/prod%2Feu"
)

func wantCode(t *testing.T, r result, code int) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
}

func wantContains(t *testing.T, what, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			t.Errorf("%s does not contain %q:\n%s", what, sub, s)
		}
	}
}

// TestLifecycle puts, gets, lists and removes a secret in every kind of
// scope, with table output, against a real broker that needs the token.
func TestLifecycle(t *testing.T) {
	b := startBroker(t, brokerOpts{auth: true})
	env := b.env()
	for _, tc := range []struct {
		scope string
		flags []string
		vis   string
	}{
		{scope: repoScope, vis: "-"},
		{scope: envScope, vis: "-"},
		{scope: "repos/octo-org/hello-world/agents", vis: "-"},
		{scope: orgScope, flags: []string{"--visibility", "private"}, vis: "private"},
		{scope: "orgs/octo-org/agents", flags: []string{"--visibility", "all"}, vis: "all"},
	} {
		t.Run(tc.scope, func(t *testing.T) {
			name := tc.scope + "/secrets/DEPLOY_KEY"
			r := ctl(t, env, plantedValue+"\n", append([]string{"put", name}, tc.flags...)...)
			wantCode(t, r, exitOK)
			if r.stdout != "created "+name+"\n" {
				t.Errorf("put printed %q", r.stdout)
			}
			if got := b.open(t, tc.scope, "DEPLOY_KEY"); got != plantedValue {
				t.Errorf("the broker wrote %q, want %q (one newline stripped)", got, plantedValue)
			}

			// Flags after the name, as people type them.
			r = ctl(t, env, "second-"+plantedValue, "put", name, "--timeout", "10s")
			wantCode(t, r, exitOK)
			if r.stdout != "updated "+name+"\n" {
				t.Errorf("second put printed %q", r.stdout)
			}
			// The same value again: the broker skips the write, and says so.
			r = ctl(t, env, "second-"+plantedValue, "put", name)
			wantCode(t, r, exitOK)
			if r.stdout != "unchanged "+name+"\n" {
				t.Errorf("third put (same value) printed %q", r.stdout)
			}

			r = ctl(t, env, "", "get", name)
			wantCode(t, r, exitOK)
			wantContains(t, "get", r.stdout, "NAME", name, "SECRET", "DEPLOY_KEY", "CREATED", "UPDATED", "VISIBILITY")
			if !strings.Contains(r.stdout, "VISIBILITY  "+tc.vis) {
				t.Errorf("get shows no visibility %q:\n%s", tc.vis, r.stdout)
			}

			r = ctl(t, env, "", "ls", tc.scope)
			wantCode(t, r, exitOK)
			lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
			if len(lines) != 2 || !strings.HasPrefix(lines[0], "SECRET") || !strings.HasPrefix(lines[1], "DEPLOY_KEY ") {
				t.Errorf("ls printed:\n%s", r.stdout)
			}

			r = ctl(t, env, "", "rm", name)
			wantCode(t, r, exitOK)
			if r.stdout != "deleted "+name+"\n" {
				t.Errorf("rm printed %q", r.stdout)
			}
			r = ctl(t, env, "", "get", name)
			wantCode(t, r, exitFail)
			wantContains(t, "stderr", r.stderr, "get "+name+": NOT_FOUND")
			if r.stdout != "" {
				t.Errorf("a failed get printed %q on stdout", r.stdout)
			}
		})
	}
}

// TestPutValueSources shows where put reads its value and what it does to
// it: one trailing newline off piped stdin unless --trim-newline=false; a
// file byte for byte; never an argument.
func TestPutValueSources(t *testing.T) {
	b := startBroker(t, brokerOpts{auth: true})
	env := b.env()
	file := writeFile(t, "value.txt", []byte(plantedValue+"\n"))
	crlfFile := writeFile(t, "crlf.txt", []byte(plantedValue+"\r\n"))
	empty := writeFile(t, "empty.txt", nil)
	binary := writeFile(t, "binary.bin", []byte{0xff, 0xfe, 0x00})
	name := repoScope + "/secrets/SOURCE"

	for _, tc := range []struct {
		name   string
		stdin  string
		args   []string
		code   int
		want   string // the value written, when code is 0
		stderr string // in stderr, when code is not 0
	}{
		{name: "stdin no newline", stdin: plantedValue, want: plantedValue},
		{name: "stdin one newline stripped", stdin: plantedValue + "\n", want: plantedValue},
		{name: "stdin CRLF stripped", stdin: plantedValue + "\r\n", want: plantedValue},
		{name: "stdin only one of two newlines", stdin: plantedValue + "\n\n", want: plantedValue + "\n"},
		{name: "stdin multi-line kept", stdin: "a\n" + plantedValue + "\n", want: "a\n" + plantedValue},
		{name: "stdin kept with --trim-newline=false", stdin: plantedValue + "\n", args: []string{"--trim-newline=false"}, want: plantedValue + "\n"},
		{name: "file byte for byte", args: []string{"--from-file", file}, want: plantedValue + "\n"},
		{name: "file CRLF kept", args: []string{"--from-file", crlfFile}, want: plantedValue + "\r\n"},
		{name: "file dash is stdin", stdin: plantedValue + "\n", args: []string{"--from-file", "-"}, want: plantedValue},
		{name: "file ignores stdin", stdin: "not this", args: []string{"--from-file", file}, want: plantedValue + "\n"},
		{name: "empty stdin", stdin: "", code: exitUsage, stderr: "the value from standard input is empty"},
		{name: "only a newline", stdin: "\n", code: exitUsage, stderr: "is empty"},
		{name: "empty file", args: []string{"--from-file", empty}, code: exitUsage, stderr: "empty.txt is empty"},
		{name: "missing file", args: []string{"--from-file", empty + ".missing"}, code: exitUsage, stderr: "--from-file"},
		{name: "not UTF-8", args: []string{"--from-file", binary}, code: exitUsage, stderr: "not UTF-8"},
		{name: "value as an argument", args: []string{plantedValue}, code: exitUsage, stderr: "never an argument), got 2 argument(s)"},
		{name: "too large", stdin: strings.Repeat("x", maxValueRead+1), code: exitUsage, stderr: "larger than 1024 KiB"},
		{name: "over GitHub's 48 KB", stdin: strings.Repeat("x", 49*1024), code: exitFail, stderr: "INVALID_ARGUMENT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := ctl(t, env, tc.stdin, append([]string{"put", name}, tc.args...)...)
			wantCode(t, r, tc.code)
			if tc.code != exitOK {
				wantContains(t, "stderr", r.stderr, tc.stderr)
				return
			}
			if got := b.open(t, repoScope, "SOURCE"); got != tc.want {
				t.Errorf("wrote %q, want %q", got, tc.want)
			}
			if strings.Contains(r.stderr, "Value for") {
				t.Errorf("put prompted although stdin is not a terminal: %q", r.stderr)
			}
		})
	}
}

// TestPutFromTerminal reads the value without echo after a prompt on
// stderr when stdin is a terminal, and never reads a terminal for an env
// file.
func TestPutFromTerminal(t *testing.T) {
	b := startBroker(t, brokerOpts{auth: true})
	name := repoScope + "/secrets/TYPED"
	term := &fakeTerminal{line: plantedValue}
	r := ctlWith(t, b.env(), strings.NewReader("stdin is not read"), term, "put", name)
	wantCode(t, r, exitOK)
	if term.reads != 1 {
		t.Errorf("ReadPassword called %d times, want 1", term.reads)
	}
	wantContains(t, "stderr", r.stderr, "Value for "+name+" (typing is hidden")
	if got := b.open(t, repoScope, "TYPED"); got != plantedValue {
		t.Errorf("wrote %q", got)
	}

	// A file wins over the terminal, which is then neither read nor prompted.
	term = &fakeTerminal{line: "typed"}
	file := writeFile(t, "v", []byte(plantedValue))
	r = ctlWith(t, b.env(), strings.NewReader(""), term, "put", name, "--from-file", file)
	wantCode(t, r, exitOK)
	if term.reads != 0 || strings.Contains(r.stderr, "Value for") {
		t.Errorf("put read the terminal (%d reads) with --from-file; stderr %q", term.reads, r.stderr)
	}

	r = ctlWith(t, b.env(), strings.NewReader(""), &fakeTerminal{line: "A=b"}, "put-many", "--from-env-file", "-", repoScope)
	wantCode(t, r, exitUsage)
	wantContains(t, "stderr", r.stderr, "standard input is a terminal")

	// Several lines pasted at the prompt: refused, nothing is sent, exit 2.
	before := b.emu.TotalRequests()
	r = ctlWith(t, b.env(), strings.NewReader(""), &fakeTerminal{err: errMoreThanALine}, "put", name)
	wantCode(t, r, exitUsage)
	wantContains(t, "stderr", r.stderr, "put: value from standard input: more than one line came at the prompt")
	if n := b.emu.TotalRequests() - before; n != 0 {
		t.Errorf("a refused prompt sent %d requests", n)
	}

	// Interrupted at the prompt: nothing is sent, exit 1.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	before = b.emu.TotalRequests()
	r = ctlCtx(ctx, t, b.env(), strings.NewReader(""), &fakeTerminal{block: true}, "put", name)
	wantCode(t, r, exitFail)
	wantContains(t, "stderr", r.stderr, "put "+name+": value from standard input: context canceled")
	if n := b.emu.TotalRequests() - before; n != 0 {
		t.Errorf("an interrupted put sent %d requests", n)
	}
}

// TestOSTerminal: pipes, buffers and files are not terminals, and are
// never read as one.
func TestOSTerminal(t *testing.T) {
	f, err := os.Open(writeFile(t, "f", []byte("x")))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, v := range []any{strings.NewReader("x"), f, nil, &strings.Builder{}} {
		if (osTerminal{}).IsTerminal(v) {
			t.Errorf("%T is a terminal", v)
		}
	}
	if _, err := (osTerminal{}).ReadPassword(t.Context(), strings.NewReader("x")); err == nil {
		t.Error("ReadPassword read a strings.Reader")
	}
	if _, err := (osTerminal{}).ReadPassword(t.Context(), f); err == nil {
		t.Error("ReadPassword read a regular file")
	}
}

// TestPutOrgSelection sends --visibility and --repos (names and ids) as
// the API takes them.
func TestPutOrgSelection(t *testing.T) {
	b := startBroker(t, brokerOpts{auth: true})
	env := b.env()
	name := orgScope + "/secrets/SHARED"
	docs, hello := b.repoID(t, "docs"), b.repoID(t, "hello-world")

	r := ctl(t, env, plantedValue, "put", name, "--repos", fmt.Sprintf("hello-world, %d", docs))
	wantCode(t, r, exitOK)
	ids, err := b.emu.SelectedRepositoryIDs(orgScope, "SHARED")
	if err != nil {
		t.Fatal(err)
	}
	want := []int64{hello, docs}
	slices.Sort(want)
	if !slices.Equal(ids, want) {
		t.Errorf("selected %v, want %v", ids, want)
	}
	r = ctl(t, env, "", "get", name, "-o", "json")
	wantCode(t, r, exitOK)
	var s map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		t.Fatalf("get -o json: %v\n%s", err, r.stdout)
	}
	if s["visibility"] != "selected" || s["selected_repositories_url"] == "" {
		t.Errorf("get: %v", s)
	}

	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{name: "repos with another visibility", args: []string{"--visibility", "all", "--repos", "docs"}, code: exitUsage, stderr: "--repos needs --visibility selected"},
		{name: "unknown visibility", args: []string{"--visibility", "public"}, code: exitUsage, stderr: `--visibility: want all, private or selected`},
		{name: "empty repo entry", args: []string{"--repos", "docs,,x"}, code: exitUsage, stderr: "empty entry"},
		{name: "unknown repository name", args: []string{"--repos", "no-such-repo"}, code: exitFail, stderr: "INVALID_ARGUMENT"},
		{name: "org flags on a repository secret", args: []string{"--visibility", "all", repoScope + "/secrets/X"}, code: exitUsage, stderr: "want NAME (the value comes from standard input or --from-file, never an argument), got 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := ctl(t, env, plantedValue, append([]string{"put", name}, tc.args...)...)
			wantCode(t, r, tc.code)
			wantContains(t, "stderr", r.stderr, tc.stderr)
		})
	}
	r = ctl(t, env, plantedValue, "put", repoScope+"/secrets/X", "--visibility", "all")
	wantCode(t, r, exitFail)
	wantContains(t, "stderr", r.stderr, "INVALID_ARGUMENT", "visibility")
}

// TestPutKeepValue: put --keep-value reads no value and changes an
// existing organization secret's visibility and selection only; GitHub
// keeps the value.
func TestPutKeepValue(t *testing.T) {
	b := startBroker(t, brokerOpts{auth: true})
	env := b.env()
	name := orgScope + "/secrets/KEPT"
	wantCode(t, ctl(t, env, plantedValue, "put", name, "--visibility", "private"), exitOK)

	// Standard input holds something else: it is not read.
	r := ctl(t, env, "not-the-value", "put", name, "--keep-value", "--repos", "docs")
	wantCode(t, r, exitOK)
	wantContains(t, "stdout", r.stdout, "updated "+name)
	ids, err := b.emu.SelectedRepositoryIDs(orgScope, "KEPT")
	if err != nil || !slices.Equal(ids, []int64{b.repoID(t, "docs")}) {
		t.Errorf("selected %v (%v), want docs", ids, err)
	}
	if v, err := b.emu.Open(orgScope, "KEPT"); err != nil || string(v) != plantedValue {
		t.Errorf("the value changed (%v)", err)
	}
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"no visibility", []string{name, "--keep-value"}, exitUsage, "--keep-value needs --visibility or --repos"},
		{"from-file", []string{name, "--keep-value", "--visibility", "all", "--from-file", "-"}, exitUsage, "leave out --from-file"},
		{"does not exist", []string{orgScope + "/secrets/NEVER", "--keep-value", "--visibility", "all"}, exitFail, "NOT_FOUND"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := ctl(t, env, "", append([]string{"put"}, tc.args...)...)
			wantCode(t, r, tc.code)
			wantContains(t, "stderr", r.stderr, tc.stderr)
		})
	}
}

// TestListAllPages follows every page: 150 secrets are two pages of 100.
func TestListAllPages(t *testing.T) {
	b := startBroker(t, brokerOpts{auth: true})
	env := b.env()
	var file strings.Builder
	for i := range 150 {
		fmt.Fprintf(&file, "S%03d=%s-%d\n", i, plantedValue, i)
	}
	r := ctl(t, env, file.String(), "put-many", "--from-env-file", "-", repoScope)
	wantCode(t, r, exitOK)

	r = ctl(t, env, "", "ls", repoScope, "--output", "json")
	wantCode(t, r, exitOK)
	var out struct {
		Parent  string `json:"parent"`
		Secrets []struct {
			Name     string `json:"name"`
			SecretID string `json:"secret_id"`
		} `json:"secrets"`
		TotalCount int `json:"total_count"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("ls -o json: %v\n%s", err, r.stdout)
	}
	if out.Parent != repoScope || out.TotalCount != 150 || len(out.Secrets) != 150 {
		t.Fatalf("ls: parent %q, total_count %d, %d secrets; want 150", out.Parent, out.TotalCount, len(out.Secrets))
	}
	seen := map[string]bool{}
	for _, s := range out.Secrets {
		seen[s.SecretID] = true
	}
	if len(seen) != 150 || !seen["S000"] || !seen["S149"] {
		t.Errorf("ls listed %d distinct secrets", len(seen))
	}

	r = ctl(t, env, "", "ls", repoScope)
	wantCode(t, r, exitOK)
	if n := strings.Count(r.stdout, "\n"); n != 151 {
		t.Errorf("ls table has %d lines, want a header and 150 rows", n)
	}

	r = ctl(t, env, "", "ls", "repos/octo-org/docs/actions")
	wantCode(t, r, exitOK)
	wantContains(t, "stderr", r.stderr, "no secrets in repos/octo-org/docs/actions")
}

// TestPutMany writes an env file in one batch; an item that fails makes
// the exit code 1 and is named on stderr, and the others are written.
func TestPutMany(t *testing.T) {
	b := startBroker(t, brokerOpts{auth: true})
	env := b.env()
	file := writeFile(t, ".env", []byte("# deploy\nexport A="+plantedValue+"-a\n1BAD="+plantedValue+"-bad\nC = \""+plantedValue+" c\"\n"))

	r := ctl(t, env, "", "put-many", "--from-env-file", file, repoScope)
	wantCode(t, r, exitFail)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 4 {
		t.Fatalf("table:\n%s", r.stdout)
	}
	wantContains(t, "header", lines[0], "SECRET", "RESULT", "DETAIL")
	wantContains(t, "row A", lines[1], repoScope+"/secrets/A", "created")
	wantContains(t, "row 1BAD", lines[2], repoScope+"/secrets/1BAD", "INVALID_ARGUMENT")
	wantContains(t, "row C", lines[3], repoScope+"/secrets/C", "created")
	wantContains(t, "stderr", r.stderr, "put-many: 1 of 3 items failed", repoScope+"/secrets/1BAD: INVALID_ARGUMENT")
	if strings.Contains(r.stderr, "secrets/A:") || strings.Contains(r.stderr, "secrets/C:") {
		t.Errorf("stderr names items that succeeded:\n%s", r.stderr)
	}
	if got := b.open(t, repoScope, "A"); got != plantedValue+"-a" {
		t.Errorf("A = %q", got)
	}
	if got := b.open(t, repoScope, "C"); got != plantedValue+" c" {
		t.Errorf("C = %q", got)
	}

	// All good now, as JSON: exit 0, one result per item, "updated".
	file = writeFile(t, "ok.env", []byte("A="+plantedValue+"-a2\nC="+plantedValue+"-c2\nD="+plantedValue+"-d\n"))
	r = ctl(t, env, "", "put-many", "--from-env-file", file, repoScope, "-o", "json")
	wantCode(t, r, exitOK)
	var out struct {
		Results []struct {
			Name    string `json:"name"`
			Code    string `json:"code"`
			Message string `json:"message"`
			Created bool   `json:"created"`
		} `json:"results"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("put-many -o json: %v\n%s", err, r.stdout)
	}
	if len(out.Results) != 3 {
		t.Fatalf("results: %+v", out.Results)
	}
	for i, want := range []struct {
		name    string
		created bool
	}{{"A", false}, {"C", false}, {"D", true}} {
		got := out.Results[i]
		if got.Name != repoScope+"/secrets/"+want.name || got.Code != "OK" || got.Created != want.created {
			t.Errorf("result %d = %+v, want %s OK created=%v", i, got, want.name, want.created)
		}
	}
	if r.stderr != "" {
		t.Errorf("a clean batch wrote to stderr: %q", r.stderr)
	}

	// Org scope with a visibility for every item.
	r = ctl(t, env, "K="+plantedValue+"\n", "put-many", "--from-env-file", "-", "--visibility", "private", orgScope)
	wantCode(t, r, exitOK)
	r = ctl(t, env, "", "get", orgScope+"/secrets/K", "-o", "json")
	wantContains(t, "get", r.stdout, `"visibility": "private"`)

	// Usage errors send nothing.
	for _, tc := range []struct {
		name   string
		stdin  string
		args   []string
		stderr string
	}{
		{name: "no file flag", args: []string{repoScope}, stderr: "--from-env-file is required"},
		{name: "no parent", args: []string{"--from-env-file", file}, stderr: "want PARENT, got 0"},
		{name: "empty file", stdin: "# nothing\n\n", args: []string{"--from-env-file", "-", repoScope}, stderr: "holds no KEY=VALUE line"},
		{name: "bad line", stdin: "A=1\n" + plantedValue + "\n", args: []string{"--from-env-file", "-", repoScope}, stderr: `line 2: no "="`},
		{name: "duplicate", stdin: "A=1\na=2\n", args: []string{"--from-env-file", "-", repoScope}, stderr: "line 2: a: the same secret as line 1"},
		{name: "missing file", args: []string{"--from-env-file", file + ".missing", repoScope}, stderr: "--from-env-file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := b.emu.TotalRequests()
			r := ctl(t, env, tc.stdin, append([]string{"put-many"}, tc.args...)...)
			wantCode(t, r, exitUsage)
			wantContains(t, "stderr", r.stderr, tc.stderr)
			if n := b.emu.TotalRequests() - before; n != 0 {
				t.Errorf("a usage error sent %d requests to GitHub", n)
			}
		})
	}
}

// TestJSONOutput checks the JSON of put, get and rm: the gateway's field
// names, every field present, and never a value.
func TestJSONOutput(t *testing.T) {
	b := startBroker(t, brokerOpts{auth: true})
	env := b.env()
	name := envScope + "/secrets/api_key"
	stored := envScope + "/secrets/API_KEY"

	decode := func(t *testing.T, r result) map[string]any {
		t.Helper()
		wantCode(t, r, exitOK)
		var m map[string]any
		if err := json.Unmarshal([]byte(r.stdout), &m); err != nil {
			t.Fatalf("not JSON: %v\n%s", err, r.stdout)
		}
		return m
	}
	put := decode(t, ctl(t, env, plantedValue, "put", name, "--output", "json"))
	if put["name"] != stored || put["created"] != true || put["key_id"] == "" {
		t.Errorf("put: %v", put)
	}
	get := decode(t, ctl(t, env, "", "get", name, "--output=json"))
	for _, k := range []string{"name", "secret_id", "created_at", "updated_at", "visibility", "selected_repositories_url"} {
		if _, ok := get[k]; !ok {
			t.Errorf("get has no %q: %v", k, get)
		}
	}
	if get["name"] != stored || get["secret_id"] != "API_KEY" || get["visibility"] != "" {
		t.Errorf("get: %v", get)
	}
	rm := decode(t, ctl(t, env, "", "rm", stored, "-o", "json"))
	if rm["name"] != stored || rm["deleted"] != true {
		t.Errorf("rm: %v", rm)
	}
}

// TestExitCodes: 0 on success, 1 when a call failed (with its code), 2 on
// usage errors, which send nothing.
func TestExitCodes(t *testing.T) {
	b := startBroker(t, brokerOpts{auth: true})
	name := repoScope + "/secrets/EXIT"
	if r := ctl(t, b.env(), plantedValue, "put", name); r.code != exitOK {
		t.Fatalf("put: %+v", r)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()

	withEnv := func(kv ...string) map[string]string {
		env := b.env()
		for i := 0; i < len(kv); i += 2 {
			env[kv[i]] = kv[i+1]
		}
		return env
	}
	for _, tc := range []struct {
		name   string
		env    map[string]string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{name: "no arguments", code: exitUsage, stderr: "usage: secretbrokerctl COMMAND"},
		{name: "help", args: []string{"help"}, code: exitOK, stdout: "put-many"},
		{name: "--help", args: []string{"--help"}, code: exitOK, stdout: "usage:"},
		{name: "command -h", args: []string{"get", "-h"}, code: exitOK, stderr: "-addr"},
		{name: "unknown command", args: []string{"frobnicate"}, code: exitUsage, stderr: "unknown command (the 1st argument, not shown"},
		{name: "unknown flag", args: []string{"get", "--nope", name}, code: exitUsage, stderr: "flag provided but not defined"},
		{name: "missing name", args: []string{"get"}, code: exitUsage, stderr: "want NAME, got 0"},
		{name: "two names", args: []string{"rm", name, name}, code: exitUsage, stderr: "want NAME, got 2"},
		{name: "empty name", args: []string{"get", " "}, code: exitUsage, stderr: "argument 1 is empty"},
		{name: "bad output", args: []string{"get", name, "-o", "yaml"}, code: exitUsage, stderr: `--output: want table or json`},
		{name: "zero timeout", args: []string{"get", name, "--timeout", "0s"}, code: exitUsage, stderr: "--timeout must be positive"},
		{name: "bad address", args: []string{"get", name, "--addr", "nohostport"}, code: exitUsage, stderr: "want host:port"},
		{name: "insecure with TLS", args: []string{"get", name, "--insecure", "--tls-ca-file", "ca.pem"}, code: exitUsage, stderr: "--insecure is plaintext"},
		{name: "cert without key", args: []string{"get", name, "--tls-cert-file", "c.pem"}, code: exitUsage, stderr: "go together"},
		{name: "missing CA file", args: []string{"get", name, "--tls-ca-file", "/no/such/ca.pem"}, code: exitUsage, stderr: "--tls-ca-file"},
		{name: "ok", args: []string{"get", name}, code: exitOK, stdout: "EXIT"},
		{name: "flag after --", args: []string{"get", "--", name}, code: exitOK, stdout: "EXIT"},
		{name: "not found", args: []string{"get", repoScope + "/secrets/NOPE"}, code: exitFail, stderr: "NOT_FOUND"},
		{name: "invalid name", args: []string{"rm", "repos/octo-org/hello-world/nope/secrets/X"}, code: exitFail, stderr: "INVALID_ARGUMENT"},
		{name: "no token", env: withEnv("SECRETBROKER_TOKEN", ""), args: []string{"get", name}, code: exitFail, stderr: "UNAUTHENTICATED"},
		{name: "wrong token", env: withEnv("SECRETBROKER_TOKEN", "sbtok-wrong"), args: []string{"ls", repoScope}, code: exitFail, stderr: "ls " + repoScope + ": UNAUTHENTICATED"},
		{name: "token with a space", env: withEnv("SECRETBROKER_TOKEN", "two words"), args: []string{"get", name}, code: exitUsage, stderr: "bearer token holds a character"},
		{name: "broker down", env: withEnv("SECRETBROKER_ADDR", closed), args: []string{"get", name}, code: exitFail, stderr: "UNAVAILABLE"},
		{name: "--addr wins over the environment", env: withEnv("SECRETBROKER_ADDR", closed), args: []string{"get", name, "--addr", b.addr}, code: exitOK, stdout: "EXIT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := tc.env
			if env == nil {
				env = b.env()
			}
			r := ctl(t, env, "", tc.args...)
			wantCode(t, r, tc.code)
			if tc.stdout != "" {
				wantContains(t, "stdout", r.stdout, tc.stdout)
			}
			if tc.stderr != "" {
				wantContains(t, "stderr", r.stderr, tc.stderr)
			}
			if tc.code == exitFail && r.stdout != "" {
				t.Errorf("a failed call printed on stdout: %q", r.stdout)
			}
		})
	}
}

// TestTokenFile reads the token from --token-file, which wins over
// SECRETBROKER_TOKEN; the token never shows, even when it is refused.
func TestTokenFile(t *testing.T) {
	b := startBroker(t, brokerOpts{auth: true})
	good := writeFile(t, "token", []byte(plantedToken+"\n"))
	empty := writeFile(t, "empty", []byte(" \n"))
	wrongFile := writeFile(t, "wrong", []byte("sbtok-PLANTED-but-wrong-0123456789\n"))
	env := map[string]string{"SECRETBROKER_ADDR": b.addr, "SECRETBROKER_TOKEN": "sbtok-from-env-is-wrong"}

	r := ctl(t, env, plantedValue, "put", repoScope+"/secrets/TOK", "--token-file", good)
	wantCode(t, r, exitOK)

	r = ctl(t, env, "", "get", repoScope+"/secrets/TOK", "--token-file", empty)
	wantCode(t, r, exitUsage)
	wantContains(t, "stderr", r.stderr, "is empty")

	r = ctl(t, env, "", "get", repoScope+"/secrets/TOK", "--token-file", wrongFile)
	wantCode(t, r, exitFail)
	wantContains(t, "stderr", r.stderr, "UNAUTHENTICATED")
	if strings.Contains(r.all(), "sbtok-PLANTED-but-wrong") {
		t.Errorf("a refused token was printed: %q", r.all())
	}

	r = ctl(t, env, "", "get", repoScope+"/secrets/TOK", "--token-file", good+".missing")
	wantCode(t, r, exitUsage)
	wantContains(t, "stderr", r.stderr, "--token-file")
}

// TestInterruptWhileReadingStdin: Ctrl-C or SIGTERM (the command's context
// ending) stops a command still reading a value or an env file from a pipe
// whose writer never closes it; it says it was interrupted and sends
// nothing.
func TestInterruptWhileReadingStdin(t *testing.T) {
	env := map[string]string{"SECRETBROKER_ADDR": "127.0.0.1:1", "SECRETBROKER_TOKEN": plantedToken}
	for _, args := range [][]string{
		{"put", "repos/octo-org/hello-world/actions/secrets/WAITING"},
		{"put-many", "repos/octo-org/hello-world/actions", "--from-env-file", "-"},
		{"sync", "repos/octo-org/hello-world/actions", "--from-env-file", "-"},
	} {
		t.Run(args[0], func(t *testing.T) {
			stdin, w := io.Pipe()
			defer w.Close()
			ctx, cancel := context.WithCancel(t.Context())
			cancel() // as the signal would: the read must not hold the command
			r := ctlCtx(ctx, t, env, stdin, noTerminal{}, args...)
			// An interrupted read is a failure (1), not a usage error (2).
			if r.code != exitFail || !strings.Contains(r.stderr, "interrupted before the input ended") {
				t.Errorf("%v: exit %d, stderr %q; want exit 1 saying it was interrupted", args, r.code, r.stderr)
			}
		})
	}
}

func TestPutOutcome(t *testing.T) {
	for _, tt := range []struct {
		created, unchanged, drift bool
		want                      string
	}{
		{false, false, false, "updated"},
		{true, false, false, "created"},
		{false, true, false, "unchanged"},
		{false, false, true, "drifted"},
		{true, false, true, "created"}, // created: nothing was there to drift
	} {
		if got := putOutcome(tt.created, tt.unchanged, tt.drift); got != tt.want {
			t.Errorf("putOutcome(created %v, unchanged %v, drift %v) = %q, want %q", tt.created, tt.unchanged, tt.drift, got, tt.want)
		}
	}
}
