package service

import (
	"context"
	"encoding/json"
	"errors"

	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc/codes"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/service/audit"
	"github.com/secretbroker/secretbroker/service/state"
	"github.com/secretbroker/secretbroker/upstream"
	"github.com/secretbroker/secretbroker/upstream/emulator"
)

// secretGets is how many GETs of one secret the emulator served.
func secretGets(h *harness) int {
	return h.emu.Count(emulator.RouteGetOrgSecret) + h.emu.Count(emulator.RouteGetRepoSecret) +
		h.emu.Count(emulator.RouteGetEnvSecret)
}

// lists is how many secret list pages the emulator served.
func lists(h *harness) int {
	return h.emu.Count(emulator.RouteListOrgSecrets) + h.emu.Count(emulator.RouteListRepoSecrets) +
		h.emu.Count(emulator.RouteListEnvSecrets)
}

// behindBack moves a secret's updated_at at the emulator an hour ahead, as
// a write by someone else would.
func behindBack(t *testing.T, h *harness, secret string) {
	t.Helper()
	scope, name, _ := strings.Cut(secret, "/secrets/")
	if err := h.emu.Touch(scope, name, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
}

func orgPut(name, value, visibility string, ids ...int64) *secretbrokerv1.PutSecretRequest {
	r := plain(name, value)
	r.Visibility, r.SelectedRepositoryIds = visibility, ids
	return r
}

// TestPutSkipsUnchanged: a second PutSecret of the same value (and
// settings) sends no PUT: one GET of the secret instead. A changed value,
// changed settings or force write.
func TestPutSkipsUnchanged(t *testing.T) {
	type step struct {
		req           *secretbrokerv1.PutSecretRequest
		wantUnchanged bool
	}
	const (
		repoSecret = repoScope + "/secrets/SKIP"
		envSecret  = stagingEnv + "/secrets/SKIP"
		orgSecret  = orgScope + "/secrets/SKIP"
	)
	forced := plain(repoSecret, plantedSecret)
	forced.Force = true
	tests := []struct {
		name  string
		steps []step
	}{
		{"repository secret", []step{
			{plain(repoSecret, plantedSecret), false},
			{plain(repoSecret, plantedSecret), true},
			{plain(repoSecret, plantedSecret), true},
			{plain(repoSecret, plantedSecret+"-changed"), false},
			{plain(repoSecret, plantedSecret+"-changed"), true},
		}},
		{"force writes", []step{
			{plain(repoSecret, plantedSecret), false},
			{forced, false},
			{plain(repoSecret, plantedSecret), true},
		}},
		{"environment secret", []step{
			{plain(envSecret, plantedSecret), false},
			{plain(envSecret, plantedSecret), true},
		}},
		{"organization secret: settings count", []step{
			{orgPut(orgSecret, plantedSecret, "private"), false},
			{orgPut(orgSecret, plantedSecret, "private"), true},
			{plain(orgSecret, plantedSecret), true}, // keeps the current settings
			{orgPut(orgSecret, plantedSecret, "all"), false},
			{orgPut(orgSecret, plantedSecret, "selected", 1296269), false},
			{orgPut(orgSecret, plantedSecret, "selected", 1296269), true},
			{orgPut(orgSecret, plantedSecret, "selected", 1296269, 1296270), false},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, harnessOpts{})
				for i, st := range tt.steps {
					h.emu.ResetCounts()
					resp, err := h.broker.PutSecret(t.Context(), st.req)
					if err != nil {
						t.Fatalf("step %d: %v", i, err)
					}
					if resp.GetUnchanged() != st.wantUnchanged || resp.GetDrift() {
						t.Fatalf("step %d: unchanged %v drift %v, want unchanged %v", i, resp.GetUnchanged(), resp.GetDrift(), st.wantUnchanged)
					}
					if resp.GetKeyId() == "" {
						t.Errorf("step %d: no key_id", i)
					}
					wantPuts := 1
					if !st.wantUnchanged && secretGets(h) != 0 {
						// The write's answer bounds updated_at: no GET
						// reads it back.
						t.Errorf("step %d: %d GETs of the secret, want none", i, secretGets(h))
					}
					if st.wantUnchanged {
						wantPuts = 0
						// A selection is read too: its changes do not
						// move updated_at.
						wantReqs := 1
						if st.req.GetVisibility() == "selected" {
							wantReqs = 2
						}
						if got := h.emu.TotalRequests(); got != wantReqs || secretGets(h) != 1 {
							t.Errorf("step %d: %d requests (%d GETs of the secret), want one GET and %d in all", i, got, secretGets(h), wantReqs)
						}
					}
					if got := puts(h); got != wantPuts {
						t.Errorf("step %d: %d PUTs, want %d", i, got, wantPuts)
					}
					wantStored(t, h, st.req.GetName(), st.req.GetValue())
				}
			})
		})
	}
}

// TestPutRecordsUpdatedAt: a PutSecret records the range of updated_at its
// answer bounds, which holds the updated_at GitHub then reports; the first
// PutSecret found unchanged pins the record to that exact updated_at. An
// answer without a Date costs one GET that reads updated_at back.
func TestPutRecordsUpdatedAt(t *testing.T) {
	const secret = repoScope + "/secrets/RANGE"
	tests := []struct {
		name      string
		wrap      func(Upstream) Upstream
		wantGets  int
		wantRange bool
	}{
		{"answer with a Date", nil, 0, true},
		{"answer without a Date", func(up Upstream) Upstream { return noDate{up} }, 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, harnessOpts{wrap: tt.wrap})
				if _, err := h.broker.PutSecret(t.Context(), plain(secret, plantedSecret)); err != nil {
					t.Fatal(err)
				}
				if got := secretGets(h); got != tt.wantGets {
					t.Errorf("%d GETs of the secret after the write, want %d", got, tt.wantGets)
				}
				scope, name, _ := strings.Cut(secret, "/secrets/")
				sec, err := h.client.GetSecret(t.Context(), mustScope(t, scope), name)
				if err != nil {
					t.Fatal(err)
				}
				rec, err := h.server.state.store.GetRecord(t.Context(), secret)
				if err != nil {
					t.Fatal(err)
				}
				if got := !rec.UpdatedAtLatest.IsZero(); got != tt.wantRange {
					t.Errorf("record %v..%v: a range %v, want %v", rec.UpdatedAt, rec.UpdatedAtLatest, got, tt.wantRange)
				}
				if !rec.UpdatedMatches(sec.UpdatedAt) {
					t.Fatalf("record %v..%v does not hold GitHub's updated_at %v", rec.UpdatedAt, rec.UpdatedAtLatest, sec.UpdatedAt)
				}
				resp, err := h.broker.PutSecret(t.Context(), plain(secret, plantedSecret))
				if err != nil || !resp.GetUnchanged() {
					t.Fatalf("second put: %v, %v; want unchanged", resp, err)
				}
				rec, err = h.server.state.store.GetRecord(t.Context(), secret)
				if err != nil {
					t.Fatal(err)
				}
				if !rec.UpdatedAt.Equal(sec.UpdatedAt) || !rec.UpdatedAtLatest.IsZero() {
					t.Errorf("after an unchanged put the record holds %v..%v, want exactly %v", rec.UpdatedAt, rec.UpdatedAtLatest, sec.UpdatedAt)
				}
			})
		})
	}
}

// noDate is an upstream whose write answers carry no Date header.
type noDate struct{ Upstream }

func (n noDate) PutSecretFunc(ctx context.Context, s upstream.Scope, name string, body func() (upstream.PutSecretBody, error)) (upstream.Written, error) {
	w, err := n.Upstream.PutSecretFunc(ctx, s, name, body)
	return upstream.Written{Created: w.Created}, err
}

// TestPutDrift: a secret changed behind the broker's back is written again,
// with drift reported in the response and the audit trail, and counted.
func TestPutDrift(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var trail syncBuffer
		h := newHarness(t, harnessOpts{audit: audit.NewWriter(&trail, nil)})
		const secret = repoScope + "/secrets/DRIFTY"
		if _, err := h.broker.PutSecret(t.Context(), plain(secret, plantedSecret)); err != nil {
			t.Fatal(err)
		}
		behindBack(t, h, secret)
		h.emu.ResetCounts()
		resp, err := h.broker.PutSecret(t.Context(), plain(secret, plantedSecret))
		if err != nil {
			t.Fatal(err)
		}
		if !resp.GetDrift() || resp.GetUnchanged() {
			t.Fatalf("drift %v unchanged %v, want a drift written again", resp.GetDrift(), resp.GetUnchanged())
		}
		if puts(h) != 1 {
			t.Errorf("%d PUTs, want 1", puts(h))
		}
		// Written again, the secret is the broker's once more: unchanged.
		resp, err = h.broker.PutSecret(t.Context(), plain(secret, plantedSecret))
		if err != nil || !resp.GetUnchanged() || resp.GetDrift() {
			t.Fatalf("after the rewrite: %v, %v; want unchanged", resp, err)
		}

		out := trail.String()
		if strings.Contains(out, plantedSecret) {
			t.Fatalf("the audit trail holds the value:\n%s", out)
		}
		var drifts, unchanged int
		for line := range strings.Lines(strings.TrimSpace(out)) {
			var r audit.Record
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				t.Fatal(err)
			}
			if r.Drift {
				drifts++
			}
			if r.Unchanged {
				unchanged++
			}
		}
		if drifts != 1 || unchanged != 1 {
			t.Errorf("audit: %d drift and %d unchanged records, want 1 and 1:\n%s", drifts, unchanged, out)
		}
		if !strings.Contains(h.logs.String(), "behind the broker's back") {
			t.Error("the drift was not logged")
		}
	})
}

// TestLostRecordWrites: without a record (state lost) the broker writes;
// a deleted secret's record is removed.
func TestLostRecordWrites(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st, err := state.NewMemory(state.Options{})
		if err != nil {
			t.Fatal(err)
		}
		h := newHarness(t, harnessOpts{state: st})
		const secret = repoScope + "/secrets/LOST"
		for range 2 {
			if _, err := h.broker.PutSecret(t.Context(), plain(secret, plantedSecret)); err != nil {
				t.Fatal(err)
			}
		}
		rec, err := st.GetRecord(t.Context(), secret)
		if err != nil {
			t.Fatal(err)
		}
		if rec.Owner != anonymousOwner || rec.KeyID == "" || rec.UpdatedAt.IsZero() || rec.ValueFingerprint.IsZero() || !rec.SettingsFingerprint.IsZero() {
			t.Errorf("record %+v", rec)
		}
		if err := st.DeleteRecord(t.Context(), secret); err != nil {
			t.Fatal(err)
		}
		h.emu.ResetCounts()
		resp, err := h.broker.PutSecret(t.Context(), plain(secret, plantedSecret))
		if err != nil || resp.GetUnchanged() || puts(h) != 1 {
			t.Fatalf("without a record: %v %v, %d PUTs; want a write", resp, err, puts(h))
		}
		if _, err := h.broker.DeleteSecret(t.Context(), &secretbrokerv1.DeleteSecretRequest{Name: secret}); err != nil {
			t.Fatal(err)
		}
		if _, err := st.GetRecord(t.Context(), secret); !errors.Is(err, state.ErrNotFound) {
			t.Errorf("record after DeleteSecret: %v, want ErrNotFound", err)
		}
	})
}

// TestOwnerIsCaller: a record's owner is the authenticated caller.
func TestOwnerIsCaller(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st, err := state.NewMemory(state.Options{})
		if err != nil {
			t.Fatal(err)
		}
		h := newHarness(t, harnessOpts{state: st, authz: mustPolicy(t)})
		const secret = orgScope + "/secrets/OWNED"
		if _, err := h.broker.PutSecret(as(t.Context(), "token:writer"), orgPut(secret, plantedSecret, "private")); err != nil {
			t.Fatal(err)
		}
		rec, err := st.GetRecord(t.Context(), secret)
		if err != nil || rec.Owner != "token:writer" || rec.SettingsFingerprint.IsZero() {
			t.Fatalf("record %+v, %v; want owner token:writer with settings", rec, err)
		}
	})
}

// TestBatchUnchangedCostsListPages: re-sending a batch of unchanged values
// over k scopes costs one list request per 100 secrets of each scope and
// nothing else; a changed value, a secret changed behind the broker's back
// and a forced item are written.
func TestBatchUnchangedCostsListPages(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, harnessOpts{})
		req := batchOf(repoScope, "R", 120) // two list pages
		req.Requests = append(req.Requests, batchOf(stagingEnv, "E", 30).Requests...)
		org := batchOf(orgScope, "O", 30)
		for _, r := range org.Requests {
			r.Visibility = "private"
		}
		req.Requests = append(req.Requests, org.Requests...)
		resp, err := h.broker.BatchPutSecrets(t.Context(), req)
		if err != nil {
			t.Fatal(err)
		}
		wantAllWritten(t, h, req, resp)

		h.emu.ResetCounts()
		resp, err = h.broker.BatchPutSecrets(t.Context(), req)
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range resp.GetResults() {
			if r.GetCode() != code.Code_OK || !r.GetUnchanged() || r.GetDrift() || r.GetKeyId() == "" {
				t.Fatalf("item %d: %+v, want unchanged", i, r)
			}
		}
		if got := h.emu.TotalRequests(); got != 4 || lists(h) != 4 {
			t.Errorf("%d requests (%d list pages) for 180 unchanged secrets over 3 scopes, want 4 list pages", got, lists(h))
		}

		// One changed value, one changed behind the broker's back, one
		// forced.
		req.Requests[0].Payload = &secretbrokerv1.PutSecretRequest_Value{Value: plantedSecret + "-new"}
		behindBack(t, h, req.Requests[1].GetName())
		req.Requests[2].Force = true
		h.emu.ResetCounts()
		resp, err = h.broker.BatchPutSecrets(t.Context(), req)
		if err != nil {
			t.Fatal(err)
		}
		wantAllWritten(t, h, req, resp)
		for i, r := range resp.GetResults() {
			written := i < 3
			if r.GetUnchanged() == written || r.GetDrift() != (i == 1) {
				t.Errorf("item %d: unchanged %v drift %v", i, r.GetUnchanged(), r.GetDrift())
			}
		}
		// 4 list pages to judge, 3 PUTs, 2 list pages to read back.
		if puts(h) != 3 || lists(h) != 6 || h.emu.TotalRequests() != 9 {
			t.Errorf("%d PUTs, %d list pages, %d requests; want 3, 6, 9", puts(h), lists(h), h.emu.TotalRequests())
		}
		// The read back makes them unchanged next time.
		req.Requests[2].Force = false
		h.emu.ResetCounts()
		if resp, err = h.broker.BatchPutSecrets(t.Context(), req); err != nil {
			t.Fatal(err)
		}
		for i, r := range resp.GetResults() {
			if !r.GetUnchanged() {
				t.Errorf("item %d written again: %+v", i, r)
			}
		}
		if puts(h) != 0 {
			t.Errorf("%d PUTs, want 0", puts(h))
		}
	})
}

// TestStateSurvivesRestart: with the file store, a broker started again
// still knows what it wrote.
func TestStateSurvivesRestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		st, err := state.OpenBolt(dir, state.Options{})
		if err != nil {
			t.Fatal(err)
		}
		h := newHarness(t, harnessOpts{state: st})
		const secret = repoScope + "/secrets/KEPT"
		if _, err := h.broker.PutSecret(t.Context(), plain(secret, plantedSecret)); err != nil {
			t.Fatal(err)
		}
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
		raw, err := os.ReadFile(filepath.Join(dir, state.BoltFileName))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(raw), plantedSecret) {
			t.Fatal("the state file holds the value")
		}

		st2, err := state.OpenBolt(dir, state.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st2.Close() })
		again := newHarnessWith(t, h.client, h.logs, Options{State: st2})
		h.emu.ResetCounts()
		resp, err := again.broker.PutSecret(t.Context(), plain(secret, plantedSecret))
		if err != nil || !resp.GetUnchanged() || puts(h) != 0 {
			t.Fatalf("after a restart: %v %v, %d PUTs; want unchanged", resp, err, puts(h))
		}
	})
}

// TestDetectDrift: drifted, unmanaged and missing secrets, for a caller
// who may read the scope; nothing for one who may not.
func TestDetectDrift(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st, err := state.NewMemory(state.Options{})
		if err != nil {
			t.Fatal(err)
		}
		h := newHarness(t, harnessOpts{state: st, authz: mustPolicy(t)})
		admin := as(t.Context(), "token:admin")
		for _, n := range []string{"A_SAME", "B_DRIFT", "C_GONE", "D_FOREIGN"} {
			if _, err := h.broker.PutSecret(admin, plain(repoScope+"/secrets/"+n, plantedSecret)); err != nil {
				t.Fatal(err)
			}
		}
		behindBack(t, h, repoScope+"/secrets/B_DRIFT")
		if err := h.client.DeleteSecret(t.Context(), mustScope(t, repoScope), "C_GONE"); err != nil {
			t.Fatal(err)
		}
		if err := st.DeleteRecord(t.Context(), repoScope+"/secrets/D_FOREIGN"); err != nil {
			t.Fatal(err)
		}
		h.emu.ResetCounts()
		resp, err := h.broker.DetectDrift(admin, &secretbrokerv1.DetectDriftRequest{Parent: repoScope})
		if err != nil {
			t.Fatal(err)
		}
		var drifted, unmanaged []string
		for _, d := range resp.GetDrifted() {
			drifted = append(drifted, d.GetSecret().GetName())
			if d.GetOwner() != "token:admin" || !d.GetRecordedUpdatedAt().AsTime().Before(d.GetSecret().GetUpdatedAt().AsTime()) {
				t.Errorf("drifted %v", d)
			}
		}
		for _, u := range resp.GetUnmanaged() {
			unmanaged = append(unmanaged, u.GetName())
		}
		if !slices.Equal(drifted, []string{repoScope + "/secrets/B_DRIFT"}) ||
			!slices.Equal(unmanaged, []string{repoScope + "/secrets/D_FOREIGN"}) ||
			!slices.Equal(resp.GetMissing(), []string{repoScope + "/secrets/C_GONE"}) {
			t.Errorf("drifted %v, unmanaged %v, missing %v", drifted, unmanaged, resp.GetMissing())
		}
		if got := h.emu.TotalRequests(); got != 1 {
			t.Errorf("%d requests, want one list page", got)
		}

		_, err = h.broker.DetectDrift(as(t.Context(), "token:staging"), &secretbrokerv1.DetectDriftRequest{Parent: repoScope})
		wantCode(t, err, codes.PermissionDenied)
		_, err = h.broker.DetectDrift(admin, &secretbrokerv1.DetectDriftRequest{Parent: "repos/octo-org"})
		wantCode(t, err, codes.InvalidArgument)
	})
}

func TestJudge(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	fp, err := state.NewFingerprinter([]byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	v, other := fp.Value([]byte(plantedSecret)), fp.Value([]byte("other"))
	set := fp.Settings(state.Settings{Visibility: "private"})
	rec := &state.Record{ValueFingerprint: v, SettingsFingerprint: set, UpdatedAt: t0}
	at := func(t time.Time) seen { return seen{known: true, exists: true, updatedAt: t} }
	tests := []struct {
		name  string
		rec   *state.Record
		pr    prints
		force bool
		now   seen
		want  verdict
	}{
		{"same", rec, prints{value: v, settings: set, comparable: true}, false, at(t0), verdict{unchanged: true}},
		{"settings kept", rec, prints{value: v, comparable: true}, false, at(t0), verdict{unchanged: true}},
		{"other value", rec, prints{value: other, settings: set, comparable: true}, false, at(t0), verdict{}},
		{"other settings", rec, prints{value: v, settings: fp.Settings(state.Settings{Visibility: "all"}), comparable: true}, false, at(t0), verdict{}},
		{"force", rec, prints{value: v, settings: set, comparable: true}, true, at(t0), verdict{}},
		{"not comparable", rec, prints{value: v, comparable: false}, false, at(t0), verdict{}},
		{"drift", rec, prints{value: v, settings: set, comparable: true}, false, at(t0.Add(time.Second)), verdict{drift: true, driftSeen: true}},
		{"drift with force", rec, prints{value: v, settings: set, comparable: true}, true, at(t0.Add(time.Second)), verdict{drift: true, driftSeen: true}},
		{"blind", rec, prints{value: v, settings: set, comparable: true, blind: true}, false, at(t0), verdict{}},
		{"blind drift", rec, prints{value: v, settings: set, comparable: true, blind: true}, false, at(t0.Add(time.Second)), verdict{driftSeen: true}}, // told to the operators only
		{"gone", rec, prints{value: v, settings: set, comparable: true}, false, seen{known: true}, verdict{}},
		{"unknown", rec, prints{value: v, settings: set, comparable: true}, false, seen{}, verdict{}},
		{"no record", nil, prints{value: v, comparable: true}, false, at(t0), verdict{}},
		{"not read back", &state.Record{ValueFingerprint: v}, prints{value: v, comparable: true}, false, at(t0), verdict{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := judge(tt.rec, tt.pr, true, tt.force, tt.now); got != tt.want {
				t.Errorf("judge = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func mustScope(t *testing.T, parent string) upstream.Scope {
	t.Helper()
	s, err := parseParent("parent", parent)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
