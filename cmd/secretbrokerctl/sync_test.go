package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/service"
	"github.com/secretbroker/secretbroker/upstream/emulator"
)

// planRows parses a plan table into secret → action, checking its header.
func planRows(t *testing.T, stdout string) map[string]string {
	t.Helper()
	rows := map[string]string{}
	lines := strings.Split(stdout, "\n")
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "SECRET") || !strings.Contains(lines[0], "ACTION") {
		t.Fatalf("no plan table:\n%s", stdout)
	}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) < 2 || strings.Contains(l, "written,") || strings.HasPrefix(l, "sync ") {
			continue
		}
		rows[f[0]] = f[1]
	}
	return rows
}

func wantPlan(t *testing.T, stdout string, want map[string]string) {
	t.Helper()
	got := planRows(t, stdout)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("plan: %s is %q, want %q\n%s", k, got[k], v, stdout)
		}
	}
	if len(got) != len(want) {
		t.Errorf("plan has %d rows, want %d:\n%s", len(got), len(want), stdout)
	}
}

// TestSyncEndToEnd syncs a repository scope three times against a real
// broker: everything created, then everything unchanged (no PUT), then one
// value changed (one PUT); a dry run before each shows the plan and
// writes nothing. The planted value is in the file and never printed
// (ctl checks every output).
func TestSyncEndToEnd(t *testing.T) {
	b := startBroker(t, brokerOpts{auth: true})
	env := b.env()
	file := writeFile(t, "app.env", []byte("ALPHA="+plantedValue+"\nBETA=beta-value-1\nGAMMA=gamma-value-1\n"))
	puts := func() int { return b.emu.Count(emulator.RoutePutRepoSecret) }

	r := ctl(t, env, "", "sync", "--from-env-file", file, "--dry-run", repoScope)
	wantCode(t, r, exitOK)
	wantPlan(t, r.stdout, map[string]string{"ALPHA": "create", "BETA": "create", "GAMMA": "create"})
	if n := puts(); n != 0 {
		t.Fatalf("a dry run sent %d PUTs", n)
	}
	if _, err := b.emu.Open(repoScope, "ALPHA"); err == nil {
		t.Fatal("a dry run created ALPHA")
	}

	r = ctl(t, env, "", "sync", "--from-env-file", file, repoScope)
	wantCode(t, r, exitOK)
	wantPlan(t, r.stdout, map[string]string{"ALPHA": "create", "BETA": "create", "GAMMA": "create"})
	wantContains(t, "stdout", r.stdout, "3 written, 0 deleted, 0 unchanged, 0 failed")
	if n := puts(); n != 3 {
		t.Errorf("the first sync sent %d PUTs, want 3", n)
	}
	if got := b.open(t, repoScope, "ALPHA"); got != plantedValue {
		t.Errorf("ALPHA holds %q", got)
	}

	r = ctl(t, env, "", "sync", "--from-env-file", file, repoScope)
	wantCode(t, r, exitOK)
	wantPlan(t, r.stdout, map[string]string{"ALPHA": "unchanged", "BETA": "unchanged", "GAMMA": "unchanged"})
	wantContains(t, "stdout", r.stdout, "0 written, 0 deleted, 3 unchanged, 0 failed")
	if n := puts(); n != 3 {
		t.Errorf("an unchanged sync sent %d PUTs more", n-3)
	}

	changed := writeFile(t, "app2.env", []byte("ALPHA="+plantedValue+"\nBETA=beta-value-2\nGAMMA=gamma-value-1\n"))
	r = ctl(t, env, "", "sync", "--from-env-file", changed, "--dry-run", repoScope)
	wantCode(t, r, exitOK)
	wantPlan(t, r.stdout, map[string]string{"ALPHA": "unchanged", "BETA": "update", "GAMMA": "unchanged"})
	if n := puts(); n != 3 {
		t.Errorf("a dry run sent %d PUTs", n-3)
	}
	r = ctl(t, env, "", "sync", "--from-env-file", changed, repoScope)
	wantCode(t, r, exitOK)
	wantContains(t, "stdout", r.stdout, "1 written, 0 deleted, 2 unchanged, 0 failed")
	if n := puts(); n != 4 {
		t.Errorf("a one-change sync sent %d PUTs, want 1", n-3)
	}
	if got := b.open(t, repoScope, "BETA"); got != "beta-value-2" {
		t.Errorf("BETA holds %q", got)
	}
	if strings.Contains(r.stdout, "\r") || strings.Contains(r.all(), "[y/N]") {
		t.Errorf("a non-terminal run drew a bar or prompted:\n%s", r.all())
	}

	// JSON: one document, the plan and the results, no value.
	r = ctl(t, env, "", "sync", "--from-env-file", changed, "-o", "json", repoScope)
	wantCode(t, r, exitOK)
	var out struct {
		DryRun  bool                `json:"dry_run"`
		Plan    []map[string]any    `json:"plan"`
		Results []map[string]any    `json:"results"`
		Summary map[string]int      `json:"summary"`
		Extra   map[string]struct{} `json:"-"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("sync -o json printed no JSON document: %v\n%s", err, r.stdout)
	}
	if len(out.Plan) != 3 || len(out.Results) != 3 || out.Summary["unchanged"] != 3 {
		t.Errorf("sync -o json: %s", r.stdout)
	}
}

// TestSyncPrune shows that --prune deletes only what the same owner wrote
// and the file no longer lists: another owner's secret and one a person
// wrote survive; without --yes on a non-terminal it is refused (exit 2)
// before anything is sent; on a terminal it asks, and "n" writes nothing.
func TestSyncPrune(t *testing.T) {
	b := startBroker(t, brokerOpts{auth: true})
	env := b.env()
	both := writeFile(t, "both.env", []byte("KEEP="+plantedValue+"\nDROP=drop-value-1\n"))
	keepOnly := writeFile(t, "keep.env", []byte("KEEP="+plantedValue+"\n"))
	other := writeFile(t, "other.env", []byte("OTHER=other-value-1\n"))

	wantCode(t, ctl(t, env, "", "sync", "--from-env-file", both, "--owner", "team-a", repoScope), exitOK)
	wantCode(t, ctl(t, env, "", "sync", "--from-env-file", other, "--owner", "team-b", repoScope), exitOK)
	wantCode(t, ctl(t, env, "by-hand-value\n", "put", repoScope+"/secrets/BY_HAND"), exitOK)

	// Refused on a non-terminal without --yes: nothing is sent.
	before := b.emu.TotalRequests()
	r := ctl(t, env, "", "sync", "--from-env-file", keepOnly, "--owner", "team-a", "--prune", repoScope)
	wantCode(t, r, exitUsage)
	wantContains(t, "stderr", r.stderr, "--yes")
	if strings.Contains(r.all(), "[y/N]") {
		t.Errorf("a non-terminal run prompted:\n%s", r.all())
	}
	if n := b.emu.TotalRequests() - before; n != 0 {
		t.Errorf("a refused prune sent %d requests to GitHub", n)
	}

	// A dry run needs no --yes and shows what would go.
	r = ctl(t, env, "", "sync", "--from-env-file", keepOnly, "--owner", "team-a", "--prune", "--dry-run", repoScope)
	wantCode(t, r, exitOK)
	wantPlan(t, r.stdout, map[string]string{"KEEP": "unchanged", "DROP": "delete", "OTHER": "foreign", "BY_HAND": "foreign"})
	wantContains(t, "plan", r.stdout, "team-b")

	// On a terminal, "n" declines: exit 1, nothing deleted.
	term := &fakeTerminal{}
	r = ctlWith(t, env, strings.NewReader("n\n"), term, "sync", "--from-env-file", keepOnly, "--owner", "team-a", "--prune", repoScope)
	wantCode(t, r, exitFail)
	wantContains(t, "stderr", r.stderr, "Delete 1 secret(s) from "+repoScope+" (DROP)? [y/N]", "not confirmed")
	if b.open(t, repoScope, "DROP") != "drop-value-1" {
		t.Error("DROP changed after a declined prune")
	}

	// On a terminal, "y" deletes.
	r = ctlWith(t, env, strings.NewReader("y\n"), &fakeTerminal{}, "sync", "--from-env-file", keepOnly, "--owner", "team-a", "--prune", repoScope)
	wantCode(t, r, exitOK)
	wantContains(t, "stdout", r.stdout, "0 written, 1 deleted, 1 unchanged, 0 failed; 2 foreign left alone")

	// --yes on a non-terminal: nothing left to delete; the others survive.
	r = ctl(t, env, "", "sync", "--from-env-file", keepOnly, "--owner", "team-a", "--prune", "--yes", repoScope)
	wantCode(t, r, exitOK)
	wantPlan(t, r.stdout, map[string]string{"KEEP": "unchanged", "OTHER": "foreign", "BY_HAND": "foreign"})
	if _, err := b.emu.Open(repoScope, "DROP"); err == nil {
		t.Error("DROP survived the prune")
	}
	for name, want := range map[string]string{"OTHER": "other-value-1", "BY_HAND": "by-hand-value", "KEEP": plantedValue} {
		if got := b.open(t, repoScope, name); got != want {
			t.Errorf("%s holds %q after the prune, want %q", name, got, want)
		}
	}
}

// TestSyncConflict shows a name another owner wrote: the dry run exits 1
// naming it (it cannot be carried out without --force); the sync writes
// the rest and exits 1 naming it; --force takes it over.
func TestSyncConflict(t *testing.T) {
	b := startBroker(t, brokerOpts{auth: true})
	env := b.env()
	wantCode(t, ctl(t, env, "", "sync", "--owner", "team-b", "--from-env-file", writeFile(t, "b.env", []byte("SHARED=b-value\n")), repoScope), exitOK)
	file := writeFile(t, "a.env", []byte("SHARED="+plantedValue+"\nMINE=mine-value\n"))

	r := ctl(t, env, "", "sync", "--owner", "team-a", "--from-env-file", file, "--dry-run", repoScope)
	wantCode(t, r, exitFail)
	wantPlan(t, r.stdout, map[string]string{"SHARED": "conflict", "MINE": "create"})
	wantContains(t, "stderr", r.stderr, "1 of 2 plan items cannot be carried out", repoScope+"/secrets/SHARED (conflict): FAILED_PRECONDITION")

	r = ctl(t, env, "", "sync", "--owner", "team-a", "--from-env-file", file, repoScope)
	wantCode(t, r, exitFail)
	wantContains(t, "stdout", r.stdout, "1 written, 0 deleted, 0 unchanged, 1 failed")
	wantContains(t, "stderr", r.stderr, "1 of 2 items failed", repoScope+"/secrets/SHARED (conflict): FAILED_PRECONDITION")
	if b.open(t, repoScope, "SHARED") != "b-value" {
		t.Error("a conflict without --force overwrote SHARED")
	}

	r = ctl(t, env, "", "sync", "--owner", "team-a", "--force", "--from-env-file", file, repoScope)
	wantCode(t, r, exitOK)
	if b.open(t, repoScope, "SHARED") != plantedValue {
		t.Error("--force did not take SHARED over")
	}
}

// TestSyncFailedItem: GitHub refuses one write; the sync exits 1 and names
// the item, with its code, on stderr.
func TestSyncFailedItem(t *testing.T) {
	b := startBroker(t, brokerOpts{auth: true})
	env := b.env()
	wantCode(t, ctl(t, env, "", "sync", "--from-env-file", writeFile(t, "1.env", []byte("ONE=one-1\nTWO=two-1\n")), repoScope), exitOK)
	b.emu.InjectFault(emulator.Fault{Route: emulator.RoutePutRepoSecret, Status: http.StatusUnprocessableEntity, Body: `{"message":"Validation Failed"}`})
	r := ctl(t, env, "", "sync", "--from-env-file", writeFile(t, "2.env", []byte("ONE=one-1\nTWO="+plantedValue+"\n")), repoScope)
	wantCode(t, r, exitFail)
	wantContains(t, "stdout", r.stdout, "0 written, 0 deleted, 1 unchanged, 1 failed")
	if !regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(repoScope+"/secrets/TWO") + ` \(update\): [A-Z_]+: `).MatchString(r.stderr) {
		t.Errorf("stderr does not name the failed item:\n%s", r.stderr)
	}
	if strings.Contains(r.stderr, "ONE") {
		t.Errorf("stderr names an item that did not fail:\n%s", r.stderr)
	}
}

// TestSyncUsage: the command line's mistakes exit 2 before anything is
// sent.
func TestSyncUsage(t *testing.T) {
	b := startBroker(t, brokerOpts{auth: true})
	env := b.env()
	file := writeFile(t, "ok.env", []byte("A=a-value\n"))
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no file", []string{"sync", repoScope}, "--from-env-file is required"},
		{"no parent", []string{"sync", "--from-env-file", file}, "want PARENT"},
		{"repo names", []string{"sync", "--from-env-file", file, "--repos", "hello-world", orgScope}, "repository ids only"},
		{"bad visibility", []string{"sync", "--from-env-file", file, "--visibility", "public", orgScope}, "--visibility"},
		{"missing file", []string{"sync", "--from-env-file", file + ".nope", repoScope}, "--from-env-file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := b.emu.TotalRequests()
			r := ctl(t, env, "", tc.args...)
			wantCode(t, r, exitUsage)
			wantContains(t, "stderr", r.stderr, tc.want)
			if n := b.emu.TotalRequests() - before; n != 0 {
				t.Errorf("%d requests sent", n)
			}
		})
	}
}

// TestDrift changes a secret behind the broker's back (the emulator's
// Touch) and shows drift report it, as a table and as JSON, with
// --exit-code 3; before that there is no drift and --exit-code exits 0.
func TestDrift(t *testing.T) {
	b := startBroker(t, brokerOpts{auth: true})
	env := b.env()
	wantCode(t, ctl(t, env, "", "sync", "--owner", "team-a", "--from-env-file", writeFile(t, "a.env", []byte("ALPHA="+plantedValue+"\nBETA=beta-1\n")), repoScope), exitOK)

	r := ctl(t, env, "", "drift", "--exit-code", repoScope)
	wantCode(t, r, exitOK)
	if r.stdout != "no drift in "+repoScope+"\n" {
		t.Errorf("drift printed %q", r.stdout)
	}

	touched := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	if err := b.emu.Touch(repoScope, "ALPHA", touched); err != nil {
		t.Fatal(err)
	}
	r = ctl(t, env, "", "drift", repoScope)
	wantCode(t, r, exitOK)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 2 {
		t.Fatalf("drift printed:\n%s", r.stdout)
	}
	wantContains(t, "header", lines[0], "SECRET", "STATE", "RECORDED_UPDATED", "GITHUB_UPDATED", "OWNER")
	f := strings.Fields(lines[1])
	if len(f) != 5 || f[0] != "ALPHA" || f[1] != "drifted" || f[3] != touched.Format(time.RFC3339) || f[4] != "team-a" || f[2] == "-" || f[2] == f[3] {
		t.Errorf("drift row %q", lines[1])
	}

	r = ctl(t, env, "", "drift", "--exit-code", repoScope)
	wantCode(t, r, exitDrift)

	r = ctl(t, env, "", "drift", "-o", "json", repoScope)
	wantCode(t, r, exitOK)
	var out struct {
		Parent string `json:"parent"`
		Drift  struct {
			Drifted []struct {
				Secret struct {
					Name string `json:"name"`
				} `json:"secret"`
				Owner string `json:"owner"`
			} `json:"drifted"`
			Unmanaged []any    `json:"unmanaged"`
			Missing   []string `json:"missing"`
		} `json:"drift"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("drift -o json: %v\n%s", err, r.stdout)
	}
	if out.Parent != repoScope || len(out.Drift.Drifted) != 1 || out.Drift.Drifted[0].Secret.Name != repoScope+"/secrets/ALPHA" ||
		out.Drift.Drifted[0].Owner != "team-a" || len(out.Drift.Unmanaged) != 0 || len(out.Drift.Missing) != 0 {
		t.Errorf("drift -o json: %s", r.stdout)
	}

	// The next sync writes ALPHA again (drifted) and the drift is gone.
	r = ctl(t, env, "", "sync", "--owner", "team-a", "--from-env-file", writeFile(t, "a2.env", []byte("ALPHA="+plantedValue+"\nBETA=beta-1\n")), repoScope)
	wantCode(t, r, exitOK)
	wantPlan(t, r.stdout, map[string]string{"ALPHA": "drifted", "BETA": "unchanged"})
	wantCode(t, ctl(t, env, "", "drift", "--exit-code", repoScope), exitOK)
}

// syncSpy is the real service that keeps every sync run's request (not
// the dry runs), and may fail the plan (planErr) or change the scope
// right after planning (afterPlan), as another client could.
type syncSpy struct {
	*service.Server

	mu        sync.Mutex
	planErr   bool
	afterPlan func(context.Context, *service.Server)
	runs      []*secretbrokerv1.SyncSecretsRequest
}

// set changes the spy's behaviour for the calls to come.
func (s *syncSpy) set(planErr bool, afterPlan func(context.Context, *service.Server)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.planErr, s.afterPlan = planErr, afterPlan
}

func (s *syncSpy) SyncSecrets(ctx context.Context, req *secretbrokerv1.SyncSecretsRequest) (*secretbrokerv1.SyncSecretsResponse, error) {
	s.mu.Lock()
	planErr, afterPlan := s.planErr, s.afterPlan
	s.mu.Unlock()
	if req.GetDryRun() {
		if planErr {
			// A broken broker quoting a value.
			return nil, status.Errorf(codes.Unavailable, "planning %q failed", req.GetSecrets()["KEEP"])
		}
		resp, err := s.Server.SyncSecrets(ctx, req)
		if afterPlan != nil {
			afterPlan(ctx, s.Server)
		}
		return resp, err
	}
	s.mu.Lock()
	s.runs = append(s.runs, proto.CloneOf(req))
	s.mu.Unlock()
	return s.Server.SyncSecrets(ctx, req)
}

func startSyncSpy(t *testing.T, spy *syncSpy) *broker {
	t.Helper()
	return startBroker(t, brokerOpts{auth: true, wrap: func(s *service.Server) secretbrokerv1.SecretServiceServer {
		spy.Server = s
		return spy
	}})
}

// seedOwned has team-a write KEEP (the planted value), DROP_A and DROP_B.
func seedOwned(t *testing.T, b *broker) {
	t.Helper()
	file := writeFile(t, "seed.env", []byte("KEEP="+plantedValue+"\nDROP_A=drop-a\nDROP_B=drop-b\n"))
	wantCode(t, ctl(t, b.env(), "", "sync", "--from-env-file", file, "--owner", "team-a", repoScope), exitOK)
}

// TestSyncPruneSendsConfirmedDeletes: a pruning sync sends, as
// expected_deletes, exactly the deletes of the plan it showed (and asked
// about), with --yes too, and an empty list when the plan deletes
// nothing; a sync without --prune sends none.
func TestSyncPruneSendsConfirmedDeletes(t *testing.T) {
	for _, tc := range []struct {
		name  string
		file  string
		args  []string
		term  terminal
		stdin string
		want  []string // nil: no expected_deletes
	}{
		{name: "--yes", file: "KEEP=" + plantedValue + "\n", args: []string{"--prune", "--yes"}, term: noTerminal{}, want: []string{"DROP_A", "DROP_B"}},
		{name: "confirmed on a terminal", file: "KEEP=" + plantedValue + "\n", args: []string{"--prune"}, term: &fakeTerminal{}, stdin: "y\n", want: []string{"DROP_A", "DROP_B"}},
		{name: "nothing to delete", file: "KEEP=" + plantedValue + "\nDROP_A=drop-a\nDROP_B=drop-b\n", args: []string{"--prune", "--yes"}, term: noTerminal{}, want: []string{}},
		{name: "without --prune", file: "KEEP=" + plantedValue + "\n", term: noTerminal{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spy := &syncSpy{}
			b := startSyncSpy(t, spy)
			seedOwned(t, b)
			args := append([]string{"sync", "--from-env-file", writeFile(t, "a.env", []byte(tc.file)), "--owner", "team-a", repoScope}, tc.args...)
			r := ctlWith(t, b.env(), strings.NewReader(tc.stdin), tc.term, args...)
			wantCode(t, r, exitOK)
			spy.mu.Lock()
			defer spy.mu.Unlock()
			last := spy.runs[len(spy.runs)-1]
			ed := last.GetExpectedDeletes()
			switch {
			case tc.want == nil && ed != nil:
				t.Errorf("expected_deletes %v sent without --prune", ed.GetSecretNames())
			case tc.want != nil && ed == nil:
				t.Errorf("no expected_deletes sent; want %v", tc.want)
			case tc.want != nil && !slices.Equal(ed.GetSecretNames(), tc.want):
				t.Errorf("expected_deletes %v, want %v", ed.GetSecretNames(), tc.want)
			}
		})
	}
}

// TestSyncPruneScopeChanged: between the plan and the run, another client
// has team-a write SNEAK, which the file does not list: the run would
// delete a secret nobody confirmed. The broker refuses it (ABORTED) and
// sync says the scope changed and to run it again, exit 1; nothing is
// written or deleted, SNEAK included. So with --yes, on a terminal, in
// JSON, and when the plan showed no delete at all.
func TestSyncPruneScopeChanged(t *testing.T) {
	for _, tc := range []struct {
		name   string
		file   string
		args   []string
		term   terminal
		stdin  string
		output string
	}{
		{name: "--yes", file: "KEEP=" + plantedValue + "\nNEW=new-value\n", args: []string{"--yes"}, term: noTerminal{}, output: outputTable},
		{name: "confirmed on a terminal", file: "KEEP=" + plantedValue + "\nNEW=new-value\n", term: &fakeTerminal{}, stdin: "y\n", output: outputTable},
		{name: "JSON", file: "KEEP=" + plantedValue + "\nNEW=new-value\n", args: []string{"--yes"}, term: noTerminal{}, output: outputJSON},
		{name: "no delete planned", file: "KEEP=" + plantedValue + "\nNEW=new-value\nDROP_A=drop-a\nDROP_B=drop-b\n", args: []string{"--yes"}, term: noTerminal{}, output: outputTable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spy := &syncSpy{}
			b := startSyncSpy(t, spy)
			seedOwned(t, b)
			spy.set(false, func(ctx context.Context, s *service.Server) {
				if _, err := s.SyncSecrets(ctx, &secretbrokerv1.SyncSecretsRequest{Parent: repoScope,
					Secrets: map[string]string{"SNEAK": "sneak-value"}, Owner: "team-a"}); err != nil {
					t.Errorf("write SNEAK: %v", err)
				}
			})
			args := append([]string{"sync", "--from-env-file", writeFile(t, "a.env", []byte(tc.file)), "--owner", "team-a",
				"--prune", "-o", tc.output, repoScope}, tc.args...)
			r := ctlWith(t, b.env(), strings.NewReader(tc.stdin), tc.term, args...)
			wantCode(t, r, exitFail)
			wantContains(t, "stderr", r.stderr, "the scope changed since the plan above was made", "ABORTED: ",
				"nothing was changed; run sync again to see the new plan")
			if tc.output == outputJSON {
				var doc struct {
					Parent string `json:"parent"`
					Plan   []any  `json:"plan"`
					Error  string `json:"error"`
				}
				if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
					t.Fatalf("not one JSON document: %v\n%s", err, r.stdout)
				}
				if doc.Parent != repoScope || len(doc.Plan) == 0 || !strings.HasPrefix(doc.Error, "ABORTED: ") {
					t.Errorf("JSON: %s", r.stdout)
				}
			}
			for name, want := range map[string]string{"SNEAK": "sneak-value", "DROP_A": "drop-a", "DROP_B": "drop-b", "KEEP": plantedValue} {
				if got, err := b.emu.Open(repoScope, name); err != nil || string(got) != want {
					t.Errorf("%s after an aborted sync: %q, %v; want %q", name, got, err, want)
				}
			}
			if _, err := b.emu.Open(repoScope, "NEW"); err == nil {
				t.Error("an aborted sync wrote NEW")
			}

			// Run again: the new plan shows SNEAK, and --yes deletes it.
			spy.set(false, nil)
			r = ctlWith(t, b.env(), strings.NewReader(tc.stdin), tc.term, args...)
			wantCode(t, r, exitOK)
			if _, err := b.emu.Open(repoScope, "SNEAK"); err == nil && !strings.Contains(tc.file, "SNEAK") {
				t.Error("SNEAK survived the confirmed prune")
			}
		})
	}
}

// TestSyncJSONOnEveryPath: with -o json, sync writes one JSON document,
// with its error, however it fails: the plan's call fails (its message,
// quoting a value, scrubbed), the delete is not confirmed, the env file's
// read is interrupted.
func TestSyncJSONOnEveryPath(t *testing.T) {
	for _, tc := range []struct {
		name      string
		planErr   bool
		term      terminal
		stdin     io.Reader
		interrupt bool
		args      []string
		wantErr   string
	}{
		{name: "plan fails", planErr: true, term: noTerminal{}, stdin: strings.NewReader(""), args: []string{"--prune", "--yes"}, wantErr: `UNAVAILABLE: planning "[redacted]" failed`},
		{name: "not confirmed", term: &fakeTerminal{}, stdin: strings.NewReader("n\n"), args: []string{"--prune"}, wantErr: "not confirmed; nothing written"},
		{name: "read interrupted", term: noTerminal{}, interrupt: true, wantErr: "interrupted before the input ended"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spy := &syncSpy{}
			b := startSyncSpy(t, spy)
			seedOwned(t, b)
			spy.set(tc.planErr, nil)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			from := writeFile(t, "a.env", []byte("KEEP="+plantedValue+"\n"))
			stdin := tc.stdin
			if tc.interrupt {
				pr, pw := io.Pipe()
				defer pw.Close()
				stdin, from = pr, "-"
				cancel() // as the signal would
			}
			r := ctlCtx(ctx, t, b.env(), stdin, tc.term, append([]string{"sync", "--from-env-file", from, "--owner", "team-a", "-o", "json", repoScope}, tc.args...)...)
			wantCode(t, r, exitFail)
			var doc struct {
				Parent string `json:"parent"`
				Error  string `json:"error"`
			}
			if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
				t.Fatalf("not one JSON document: %v\n%s", err, r.stdout)
			}
			if doc.Parent != repoScope || !strings.Contains(doc.Error, tc.wantErr) {
				t.Errorf("JSON: %s\nwant the error %q", r.stdout, tc.wantErr)
			}
			spy.mu.Lock()
			defer spy.mu.Unlock()
			if len(spy.runs) != 1 { // the seed's
				t.Errorf("%d sync runs sent, want none", len(spy.runs)-1)
			}
			if b.open(t, repoScope, "DROP_A") != "drop-a" {
				t.Error("DROP_A changed")
			}
		})
	}
}

// TestSyncPruneEmptyFile: an empty env file with --prune goes through the
// broker's refusal of an unconfirmed pruning sync that lists nothing:
// the plan (a dry run) shows every secret of the owner as a delete, and
// the run, which sends those as expected_deletes, deletes them.
func TestSyncPruneEmptyFile(t *testing.T) {
	b := startBroker(t, brokerOpts{auth: true})
	env := b.env()
	both := writeFile(t, "both.env", []byte("ONE=one-value-1\nTWO=two-value-2\n"))
	empty := writeFile(t, "empty.env", nil)
	wantCode(t, ctl(t, env, "", "sync", "--from-env-file", both, "--owner", "team-a", repoScope), exitOK)

	r := ctl(t, env, "", "sync", "--from-env-file", empty, "--owner", "team-a", "--prune", "--dry-run", repoScope)
	wantCode(t, r, exitOK)
	wantPlan(t, r.stdout, map[string]string{"ONE": "delete", "TWO": "delete"})

	r = ctl(t, env, "", "sync", "--from-env-file", empty, "--owner", "team-a", "--prune", "--yes", repoScope)
	wantCode(t, r, exitOK)
	wantContains(t, "stdout", r.stdout, "0 written, 2 deleted, 0 unchanged, 0 failed")
	for _, n := range []string{"ONE", "TWO"} {
		if _, err := b.emu.Open(repoScope, n); err == nil {
			t.Errorf("%s survived the prune", n)
		}
	}
}

// TestSyncJSONEveryField checks README's promise for sync -o json: one
// document with every field present, {"parent", "dry_run", "plan",
// "operation", "results", "summary", "error"}, for a dry run, a run and a
// sync that fails before it runs (a declined prune), so that a script can
// read .error or .results without first asking whether they are there.
func TestSyncJSONEveryField(t *testing.T) {
	b := startBroker(t, brokerOpts{auth: true})
	env := b.env()
	both := writeFile(t, "both.env", []byte("KEEP=keep-value-1\nDROP=drop-value-1\n"))
	keepOnly := writeFile(t, "keep.env", []byte("KEEP=keep-value-1\n"))
	wantCode(t, ctl(t, env, "", "sync", "--from-env-file", both, "--owner", "team-a", repoScope), exitOK)

	fields := []string{"parent", "dry_run", "plan", "operation", "results", "summary", "error"}
	for _, tc := range []struct {
		name      string
		term      terminal
		stdin     string
		args      []string
		wantCode  int
		wantError bool // error is a non-empty string, else ""
		wantRun   bool // operation, results and summary are set
	}{
		{name: "dry run", term: noTerminal{},
			args: []string{"--dry-run"}, wantCode: exitOK},
		{name: "run", term: noTerminal{},
			args: []string{}, wantCode: exitOK, wantRun: true},
		{name: "declined prune", term: &fakeTerminal{}, stdin: "n\n",
			args: []string{"--prune"}, wantCode: exitFail, wantError: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := slices.Concat([]string{"sync", "-o", "json", "--from-env-file", keepOnly, "--owner", "team-a"}, tc.args, []string{repoScope})
			r := ctlWith(t, env, strings.NewReader(tc.stdin), tc.term, args...)
			wantCode(t, r, tc.wantCode)
			var doc map[string]json.RawMessage
			if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
				t.Fatalf("no JSON document: %v\n%s", err, r.stdout)
			}
			for _, f := range fields {
				if _, ok := doc[f]; !ok {
					t.Errorf("field %q missing:\n%s", f, r.stdout)
				}
			}
			if len(doc) != len(fields) {
				t.Errorf("%d fields, want %d (%v):\n%s", len(doc), len(fields), fields, r.stdout)
			}
			var errMsg, op string
			var results []json.RawMessage
			_ = json.Unmarshal(doc["error"], &errMsg)
			_ = json.Unmarshal(doc["operation"], &op)
			if err := json.Unmarshal(doc["results"], &results); err != nil || results == nil {
				t.Errorf("results is %s, want a list", doc["results"])
			}
			if (errMsg != "") != tc.wantError {
				t.Errorf("error is %s, want it set: %v", doc["error"], tc.wantError)
			}
			if (op != "") != tc.wantRun || (string(doc["summary"]) != "null") != tc.wantRun || (len(results) > 0) != tc.wantRun {
				t.Errorf("operation %s, summary %s, %d results; want a run's: %v", doc["operation"], doc["summary"], len(results), tc.wantRun)
			}
		})
	}
}
