package service

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"testing/synctest"

	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc/codes"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/service/access"
	"github.com/secretbroker/secretbroker/service/audit"
	"github.com/secretbroker/secretbroker/upstream"
)

// testPolicy confines token:staging to the staging environment of
// hello-world, token:pay to the PAY_* secrets of hello-world's Actions
// scope and of the organization, token:writer to writing organization
// Actions secrets, and lets token:admin do everything.
const testPolicy = `
rules:
  - callers: ["token:staging"]
    verbs: [read, write, delete]
    resources: ["repos/octo-org/hello-world/environments/staging/secrets/*"]
  - callers: ["token:pay"]
    verbs: [read]
    resources: ["repos/octo-org/hello-world/actions/secrets/PAY_*", "orgs/octo-org/actions/secrets/PAY_*"]
  - callers: ["token:rotator"]
    verbs: [write]
    resources: ["repos/octo-org/hello-world/actions/secrets/DB_PASSWORD"]
  - callers: ["token:rotator"]
    verbs: [read]
    resources: ["repos/octo-org/hello-world/actions/secrets/PAY_*"]
  - callers: ["token:writer"]
    verbs: [read, write]
    resources: ["orgs/octo-org/actions/secrets/*"]
  - callers: ["token:admin"]
    verbs: [read, write, delete, manage_repositories]
    resources: ["**"]
`

func mustPolicy(t *testing.T) *access.Policy {
	t.Helper()
	p, err := access.Parse([]byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

const (
	stagingEnv = "repos/octo-org/hello-world/environments/staging"
	prodEnv    = "repos/octo-org/hello-world/environments/prod%2Feu"
	repoScope  = "repos/octo-org/hello-world/actions"
	orgScope   = "orgs/octo-org/actions"
)

// TestCallerConfinedToOneEnvironment: a caller allowed one environment can
// neither read, write nor delete in another, through any RPC or batch
// item, and a denied call sends nothing to GitHub.
func TestCallerConfinedToOneEnvironment(t *testing.T) {
	admin := as(context.Background(), "token:admin")
	staging := as(context.Background(), "token:staging")
	// setup builds a harness in which admin has written a prod
	// environment secret and an organization secret.
	setup := func(t *testing.T) *harness {
		h := newHarness(t, harnessOpts{authz: mustPolicy(t)})
		for _, name := range []string{prodEnv + "/secrets/DB", orgScope + "/secrets/ORG_DB"} {
			req := plain(name, plantedSecret)
			if strings.HasPrefix(name, "orgs/") {
				req.Visibility = "selected"
			}
			if _, err := h.broker.PutSecret(admin, req); err != nil {
				t.Fatal(err)
			}
		}
		h.emu.ResetCounts()
		return h
	}

	denied := []struct {
		rpc  string
		call func(*testing.T, *harness) error
	}{
		{"GetPublicKey", func(t *testing.T, h *harness) error {
			_, err := h.broker.GetPublicKey(staging, &secretbrokerv1.GetPublicKeyRequest{Parent: prodEnv})
			return err
		}},
		{"ListSecrets", func(t *testing.T, h *harness) error {
			_, err := h.broker.ListSecrets(staging, &secretbrokerv1.ListSecretsRequest{Parent: prodEnv})
			return err
		}},
		{"GetSecret", func(t *testing.T, h *harness) error {
			_, err := h.broker.GetSecret(staging, &secretbrokerv1.GetSecretRequest{Name: prodEnv + "/secrets/DB"})
			return err
		}},
		{"PutSecret", func(t *testing.T, h *harness) error {
			_, err := h.broker.PutSecret(staging, plain(prodEnv+"/secrets/DB", plantedSecret))
			return err
		}},
		{"DeleteSecret", func(t *testing.T, h *harness) error {
			_, err := h.broker.DeleteSecret(staging, &secretbrokerv1.DeleteSecretRequest{Name: prodEnv + "/secrets/DB"})
			return err
		}},
		{"ListSelectedRepositories", func(t *testing.T, h *harness) error {
			_, err := h.broker.ListSelectedRepositories(staging, &secretbrokerv1.ListSelectedRepositoriesRequest{Name: orgScope + "/secrets/ORG_DB"})
			return err
		}},
		{"SetSelectedRepositories", func(t *testing.T, h *harness) error {
			_, err := h.broker.SetSelectedRepositories(staging, &secretbrokerv1.SetSelectedRepositoriesRequest{
				Name: orgScope + "/secrets/ORG_DB", SelectedRepositoryIds: []int64{h.repoID(t, "docs")}})
			return err
		}},
		{"AddSelectedRepository", func(t *testing.T, h *harness) error {
			_, err := h.broker.AddSelectedRepository(staging, &secretbrokerv1.AddSelectedRepositoryRequest{
				Name: orgScope + "/secrets/ORG_DB", RepositoryId: h.repoID(t, "docs")})
			return err
		}},
		{"RemoveSelectedRepository", func(t *testing.T, h *harness) error {
			_, err := h.broker.RemoveSelectedRepository(staging, &secretbrokerv1.RemoveSelectedRepositoryRequest{
				Name: orgScope + "/secrets/ORG_DB", RepositoryId: h.repoID(t, "docs")})
			return err
		}},
		{"ListRepositoryOrganizationSecrets", func(t *testing.T, h *harness) error {
			_, err := h.broker.ListRepositoryOrganizationSecrets(staging, &secretbrokerv1.ListRepositoryOrganizationSecretsRequest{Parent: repoScope})
			return err
		}},
	}
	for _, tt := range denied {
		t.Run(tt.rpc, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := setup(t)
				err := tt.call(t, h)
				wantCode(t, err, codes.PermissionDenied)
				noLeak(t, err)
				if !strings.Contains(err.Error(), "may not") {
					t.Errorf("denial does not name the verb and resource: %v", err)
				}
				if n := h.emu.TotalRequests(); n != 0 {
					t.Fatalf("the denied call sent %d requests to GitHub, want 0", n)
				}
			})
		})
	}
	synctest.Test(t, func(t *testing.T) {
		h := setup(t)
		// Batches: the prod items fail, the staging items go.
		batch, err := h.broker.BatchPutSecrets(staging, &secretbrokerv1.BatchPutSecretsRequest{Requests: []*secretbrokerv1.PutSecretRequest{
			plain(stagingEnv+"/secrets/A", plantedSecret),
			plain(prodEnv+"/secrets/B", plantedSecret),
			plain(stagingEnv+"/secrets/C", plantedSecret),
		}})
		if err != nil {
			t.Fatal(err)
		}
		wantItemCodes(t, batchPutCodes(batch), code.Code_OK, code.Code_PERMISSION_DENIED, code.Code_OK)
		if puts(h) != 2 {
			t.Errorf("%d PUTs, want 2 (the allowed items only)", puts(h))
		}
		if _, err := h.emu.Open(prodEnv, "B"); err == nil {
			t.Error("the denied item was written")
		}
		del, err := h.broker.BatchDeleteSecrets(staging, &secretbrokerv1.BatchDeleteSecretsRequest{Names: []string{
			prodEnv + "/secrets/DB", stagingEnv + "/secrets/A",
		}})
		if err != nil {
			t.Fatal(err)
		}
		var delCodes []code.Code
		for _, r := range del.GetResults() {
			delCodes = append(delCodes, r.GetCode())
		}
		wantItemCodes(t, delCodes, code.Code_PERMISSION_DENIED, code.Code_OK)
		if _, err := h.emu.Open(prodEnv, "DB"); err != nil {
			t.Errorf("the denied delete removed the secret: %v", err)
		}

		// What is allowed works, GetPublicKey included.
		if _, err := h.broker.GetPublicKey(staging, &secretbrokerv1.GetPublicKeyRequest{Parent: stagingEnv}); err != nil {
			t.Fatal(err)
		}
		if _, err := h.broker.GetSecret(staging, &secretbrokerv1.GetSecretRequest{Name: stagingEnv + "/secrets/C"}); err != nil {
			t.Fatal(err)
		}
	})
}

func wantItemCodes(t *testing.T, got []code.Code, want ...code.Code) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("codes %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("codes %v, want %v", got, want)
		}
	}
}

func batchPutCodes(r *secretbrokerv1.BatchPutSecretsResponse) []code.Code {
	var out []code.Code
	for _, it := range r.GetResults() {
		out = append(out, it.GetCode())
	}
	return out
}

func TestUnauthenticatedCallRefused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, harnessOpts{authz: mustPolicy(t)})
		_, err := h.broker.GetSecret(context.Background(), &secretbrokerv1.GetSecretRequest{Name: repoScope + "/secrets/X"})
		wantCode(t, err, codes.Unauthenticated)
		if n := h.emu.TotalRequests(); n != 0 {
			t.Fatalf("%d requests went upstream", n)
		}
	})
}

// TestListsFilteredByPolicy: list results and total_count hold only what
// the caller may read, page by page.
func TestListsFilteredByPolicy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, harnessOpts{authz: mustPolicy(t)})
		admin := as(context.Background(), "token:admin")
		pay := as(context.Background(), "token:pay")
		for _, n := range []string{"PAY_A", "OTHER", "PAY_B", "PAY_C"} {
			if _, err := h.broker.PutSecret(admin, plain(repoScope+"/secrets/"+n, plantedSecret)); err != nil {
				t.Fatal(err)
			}
			req := plain(orgScope+"/secrets/"+n, plantedSecret)
			req.Visibility = "all"
			if _, err := h.broker.PutSecret(admin, req); err != nil {
				t.Fatal(err)
			}
		}

		var names []string
		token := ""
		for range 5 {
			resp, err := h.broker.ListSecrets(pay, &secretbrokerv1.ListSecretsRequest{Parent: repoScope, PageSize: 2, PageToken: token})
			if err != nil {
				t.Fatal(err)
			}
			if resp.GetTotalCount() != 3 {
				t.Fatalf("total_count = %d, want 3 (PAY_A, PAY_B, PAY_C)", resp.GetTotalCount())
			}
			for _, s := range resp.GetSecrets() {
				names = append(names, s.GetSecretId())
			}
			if token = resp.GetNextPageToken(); token == "" {
				break
			}
		}
		if strings.Join(names, ",") != "PAY_A,PAY_B,PAY_C" {
			t.Fatalf("pages hold %v, want PAY_A, PAY_B, PAY_C", names)
		}

		orgList, err := h.broker.ListRepositoryOrganizationSecrets(pay, &secretbrokerv1.ListRepositoryOrganizationSecretsRequest{Parent: repoScope})
		if err != nil {
			t.Fatal(err)
		}
		if orgList.GetTotalCount() != 3 || len(orgList.GetSecrets()) != 3 {
			t.Fatalf("organization secrets: %d of total %d, want 3 of 3", len(orgList.GetSecrets()), orgList.GetTotalCount())
		}
		for _, s := range orgList.GetSecrets() {
			if !strings.HasPrefix(s.GetName(), orgScope+"/secrets/PAY_") {
				t.Errorf("unreadable organization secret listed: %s", s.GetName())
			}
		}

		// A caller who may read everything gets GitHub's pages as they are.
		all, err := h.broker.ListSecrets(admin, &secretbrokerv1.ListSecretsRequest{Parent: repoScope})
		if err != nil {
			t.Fatal(err)
		}
		if all.GetTotalCount() != 4 {
			t.Fatalf("admin sees total_count %d, want 4", all.GetTotalCount())
		}
	})
}

// TestChangingAccessNeedsManageRepositories: write creates an organization
// secret with any visibility and updates its value, but changing an
// existing secret's visibility or selection needs manage_repositories.
func TestChangingAccessNeedsManageRepositories(t *testing.T) {
	writer := as(context.Background(), "token:writer")
	admin := as(context.Background(), "token:admin")
	name := orgScope + "/secrets/DEPLOY"
	// setup builds a harness in which writer has created the secret,
	// selected for docs.
	setup := func(t *testing.T) *harness {
		h := newHarness(t, harnessOpts{authz: mustPolicy(t)})
		create := plain(name, plantedSecret)
		create.Visibility, create.SelectedRepositoryIds = "selected", []int64{h.repoID(t, "docs")}
		if _, err := h.broker.PutSecret(writer, create); err != nil {
			t.Fatalf("creating with a selection: %v", err)
		}
		return h
	}
	// wantOnlyDocs checks that the selection is still docs alone.
	wantOnlyDocs := func(t *testing.T, h *harness) {
		t.Helper()
		ids, err := h.emu.SelectedRepositoryIDs(orgScope, "DEPLOY")
		if err != nil || len(ids) != 1 || ids[0] != h.repoID(t, "docs") {
			t.Fatalf("selection is %v (%v), want only docs", ids, err)
		}
	}
	tests := []struct {
		name       string
		visibility string
		repos      []string // the selection sent, by name
		want       codes.Code
	}{
		{"value only", "", nil, codes.OK},
		{"same visibility", "selected", nil, codes.OK},
		{"same selection", "selected", []string{"docs"}, codes.OK},
		{"another selection", "selected", []string{"docs", "secret-sauce"}, codes.PermissionDenied},
		{"another visibility", "all", nil, codes.PermissionDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := setup(t)
				req := plain(name, plantedSecret)
				req.Visibility = tt.visibility
				for _, r := range tt.repos {
					req.SelectedRepositoryIds = append(req.SelectedRepositoryIds, h.repoID(t, r))
				}
				_, err := h.broker.PutSecret(writer, req)
				wantCode(t, err, tt.want)
				wantOnlyDocs(t, h)
			})
		})
	}
	synctest.Test(t, func(t *testing.T) {
		h := setup(t)
		sauce := h.repoID(t, "secret-sauce")
		_, err := h.broker.AddSelectedRepository(writer, &secretbrokerv1.AddSelectedRepositoryRequest{Name: name, RepositoryId: sauce})
		wantCode(t, err, codes.PermissionDenied)
		wantOnlyDocs(t, h)
		if _, err := h.broker.AddSelectedRepository(admin, &secretbrokerv1.AddSelectedRepositoryRequest{Name: name, RepositoryId: sauce}); err != nil {
			t.Fatal(err)
		}
	})
}

// failingWriter is an audit destination that cannot be written.
type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

// TestAuditFailsClosed: when the audit trail cannot be written, every
// mutating call fails with UNAVAILABLE and sends nothing upstream, not even
// a key fetch; reads are still served.
func TestAuditFailsClosed(t *testing.T) {
	ctx := context.Background()
	setup := func(t *testing.T) *harness {
		return newHarness(t, harnessOpts{audit: audit.NewWriter(failingWriter{}, nil)})
	}
	mutations := []struct {
		rpc  string
		call func(*harness) error
	}{
		{"PutSecret", func(h *harness) error {
			_, err := h.broker.PutSecret(ctx, plain(repoScope+"/secrets/X", plantedSecret))
			return err
		}},
		{"DeleteSecret", func(h *harness) error {
			_, err := h.broker.DeleteSecret(ctx, &secretbrokerv1.DeleteSecretRequest{Name: repoScope + "/secrets/X"})
			return err
		}},
		{"SetSelectedRepositories", func(h *harness) error {
			_, err := h.broker.SetSelectedRepositories(ctx, &secretbrokerv1.SetSelectedRepositoriesRequest{Name: orgScope + "/secrets/X"})
			return err
		}},
		{"AddSelectedRepository", func(h *harness) error {
			_, err := h.broker.AddSelectedRepository(ctx, &secretbrokerv1.AddSelectedRepositoryRequest{Name: orgScope + "/secrets/X", RepositoryId: 1})
			return err
		}},
		{"RemoveSelectedRepository", func(h *harness) error {
			_, err := h.broker.RemoveSelectedRepository(ctx, &secretbrokerv1.RemoveSelectedRepositoryRequest{Name: orgScope + "/secrets/X", RepositoryId: 1})
			return err
		}},
	}
	for _, tt := range mutations {
		t.Run(tt.rpc, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := setup(t)
				wantCode(t, tt.call(h), codes.Unavailable)
				if n := h.emu.TotalRequests(); n != 0 {
					t.Fatalf("%d requests went upstream with the audit trail down, want 0", n)
				}
			})
		})
	}
	synctest.Test(t, func(t *testing.T) {
		h := setup(t)
		batch, err := h.broker.BatchPutSecrets(ctx, batchOf(repoScope, "B", 3))
		if err != nil {
			t.Fatal(err)
		}
		wantItemCodes(t, batchPutCodes(batch), code.Code_UNAVAILABLE, code.Code_UNAVAILABLE, code.Code_UNAVAILABLE)
		del, err := h.broker.BatchDeleteSecrets(ctx, &secretbrokerv1.BatchDeleteSecretsRequest{Names: []string{repoScope + "/secrets/B0"}})
		if err != nil {
			t.Fatal(err)
		}
		if del.GetResults()[0].GetCode() != code.Code_UNAVAILABLE {
			t.Fatalf("batch delete item: %v", del.GetResults()[0].GetCode())
		}
		if n := h.emu.TotalRequests(); n != 0 {
			t.Fatalf("%d requests went upstream with the audit trail down, want 0", n)
		}
		if _, err := h.broker.GetPublicKey(ctx, &secretbrokerv1.GetPublicKeyRequest{Parent: repoScope}); err != nil {
			t.Fatalf("reads must still be served: %v", err)
		}
		if _, err := h.broker.ListSecrets(ctx, &secretbrokerv1.ListSecretsRequest{Parent: repoScope}); err != nil {
			t.Fatalf("reads must still be served: %v", err)
		}
	})
}

// TestAuditRecords: each change has an intent and an outcome record, each
// batch item its own, each denial one; a plaintext value appears only as
// its HMAC under the trail's key.
func TestAuditRecords(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var trail syncBuffer
		key := []byte("audit-key-0123456789abcdef0123456789")
		h := newHarness(t, harnessOpts{authz: mustPolicy(t), audit: audit.NewWriter(&trail, key)})
		staging := as(context.Background(), "token:staging")

		if _, err := h.broker.PutSecret(staging, plain(stagingEnv+"/secrets/ONE", plantedSecret+"-one")); err != nil {
			t.Fatal(err)
		}
		if _, err := h.broker.BatchPutSecrets(staging, &secretbrokerv1.BatchPutSecretsRequest{Requests: []*secretbrokerv1.PutSecretRequest{
			plain(prodEnv+"/secrets/TWO", plantedSecret+"-two"),
			plain(stagingEnv+"/secrets/THREE", plantedSecret+"-three"),
		}}); err != nil {
			t.Fatal(err)
		}
		if _, err := h.broker.DeleteSecret(staging, &secretbrokerv1.DeleteSecretRequest{Name: stagingEnv + "/secrets/ONE"}); err != nil {
			t.Fatal(err)
		}
		_, err := h.broker.GetSecret(staging, &secretbrokerv1.GetSecretRequest{Name: prodEnv + "/secrets/TWO"})
		wantCode(t, err, codes.PermissionDenied)

		out := trail.String()
		if strings.Contains(out, plantedSecret) {
			t.Fatalf("the audit trail holds a plaintext value:\n%s", out)
		}
		type rec struct {
			Phase, Caller, RPC, Resource, Outcome, ValueHMAC string
			Item                                             *int
			UpstreamStatus                                   int
		}
		var got []rec
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			var m map[string]any
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Fatalf("not a JSON line: %q", line)
			}
			if _, ok := m["time"]; !ok {
				t.Errorf("record without time: %s", line)
			}
			var r rec
			r.Phase, _ = m["phase"].(string)
			r.Caller, _ = m["caller"].(string)
			r.RPC, _ = m["rpc"].(string)
			r.Resource, _ = m["resource"].(string)
			r.Outcome, _ = m["outcome"].(string)
			r.ValueHMAC, _ = m["value_hmac"].(string)
			if f, ok := m["upstream_status"].(float64); ok {
				r.UpstreamStatus = int(f)
			}
			if f, ok := m["item"].(float64); ok {
				i := int(f)
				r.Item = &i
			}
			got = append(got, r)
		}
		mac := func(v string) string {
			m := hmac.New(sha256.New, key)
			m.Write([]byte(v))
			return hex.EncodeToString(m.Sum(nil))
		}
		item := func(i int) *int { return &i }
		want := []rec{
			{"intent", "token:staging", rpcPutSecret, stagingEnv + "/secrets/ONE", "", mac(plantedSecret + "-one"), nil, 0},
			{"outcome", "token:staging", rpcPutSecret, stagingEnv + "/secrets/ONE", "OK", "", nil, 201},
			{"outcome", "token:staging", rpcBatchPut, prodEnv + "/secrets/TWO", "PERMISSION_DENIED", "", item(0), 0},
			{"intent", "token:staging", rpcBatchPut, stagingEnv + "/secrets/THREE", "", mac(plantedSecret + "-three"), item(1), 0},
			{"outcome", "token:staging", rpcBatchPut, stagingEnv + "/secrets/THREE", "OK", "", item(1), 201},
			{"intent", "token:staging", rpcDeleteSecret, stagingEnv + "/secrets/ONE", "", "", nil, 0},
			{"outcome", "token:staging", rpcDeleteSecret, stagingEnv + "/secrets/ONE", "OK", "", nil, 204},
			{"outcome", "token:staging", rpcGetSecret, prodEnv + "/secrets/TWO", "PERMISSION_DENIED", "", nil, 0},
		}
		if len(got) != len(want) {
			t.Fatalf("%d records, want %d:\n%s", len(got), len(want), out)
		}
		for i := range want {
			g, w := got[i], want[i]
			sameItem := (g.Item == nil) == (w.Item == nil) && (g.Item == nil || *g.Item == *w.Item)
			if g.Phase != w.Phase || g.Caller != w.Caller || g.RPC != w.RPC || g.Resource != w.Resource ||
				g.Outcome != w.Outcome || g.ValueHMAC != w.ValueHMAC || g.UpstreamStatus != w.UpstreamStatus || !sameItem {
				t.Errorf("record %d:\n got %+v\nwant %+v", i, g, w)
			}
		}
	})
}

// panicOn panics, with a value built from the request, when a named secret
// is written or deleted.
type panicOn struct {
	Upstream
	name string
}

func (p *panicOn) PutSecretFunc(ctx context.Context, s upstream.Scope, name string, body func() (upstream.PutSecretBody, error)) (upstream.Written, error) {
	if name == p.name {
		b, _ := body()
		panic("boom " + b.EncryptedValue + " " + plantedSecret)
	}
	return p.Upstream.PutSecretFunc(ctx, s, name, body)
}

func (p *panicOn) DeleteSecret(ctx context.Context, s upstream.Scope, name string) error {
	if name == p.name {
		panic(errors.New("boom " + plantedSecret))
	}
	return p.Upstream.DeleteSecret(ctx, s, name)
}

// TestBatchWorkerPanicIsContained: a panic in one batch item's goroutine
// fails that item with INTERNAL, the others land, the process lives on,
// and the panic's value (which may hold request data) is not logged.
func TestBatchWorkerPanicIsContained(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, harnessOpts{wrap: func(up Upstream) Upstream { return &panicOn{Upstream: up, name: "B1"} }})
		req := batchOf(repoScope, "B", 3)
		resp, err := h.broker.BatchPutSecrets(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		wantItemCodes(t, batchPutCodes(resp), code.Code_OK, code.Code_INTERNAL, code.Code_OK)
		wantStored(t, h, req.Requests[0].GetName(), req.Requests[0].GetValue())
		wantStored(t, h, req.Requests[2].GetName(), req.Requests[2].GetValue())
		if msg := resp.GetResults()[1].GetMessage(); msg != "internal error" {
			t.Errorf("message %q, want \"internal error\"", msg)
		}
		del, err := h.broker.BatchDeleteSecrets(context.Background(), &secretbrokerv1.BatchDeleteSecretsRequest{
			Names: []string{repoScope + "/secrets/B0", repoScope + "/secrets/B1"}})
		if err != nil {
			t.Fatal(err)
		}
		if del.GetResults()[0].GetCode() != code.Code_OK || del.GetResults()[1].GetCode() != code.Code_INTERNAL {
			t.Fatalf("batch delete codes %v, %v", del.GetResults()[0].GetCode(), del.GetResults()[1].GetCode())
		}
		if !strings.Contains(h.logs.String(), `"panic_type":"string"`) {
			t.Errorf("the panic was not logged with its type:\n%s", h.logs.String())
		}
		// The harness checks at cleanup that no planted value reached the logs.
	})
}

// TestRejectedNameIsBoundedInTheTrail: a malformed name is recorded as
// sent, but never more of it than a valid name can hold.
func TestRejectedNameIsBoundedInTheTrail(t *testing.T) {
	var trail syncBuffer
	s := New(nil, Options{Audit: audit.NewWriter(&trail, nil)})
	_, err := s.DeleteSecret(context.Background(), &secretbrokerv1.DeleteSecretRequest{Name: strings.Repeat("x", 1<<20)})
	wantCode(t, err, codes.InvalidArgument)
	var r map[string]any
	if err := json.Unmarshal([]byte(strings.TrimSpace(trail.String())), &r); err != nil {
		t.Fatalf("trail %q: %v", trail.String(), err)
	}
	res, _ := r["resource"].(string)
	if r["outcome"] != "INVALID_ARGUMENT" || len(res) > maxResourceNameLen+len("…") {
		t.Fatalf("record outcome %v, resource of %d bytes; want INVALID_ARGUMENT and at most %d", r["outcome"], len(res), maxResourceNameLen)
	}
}
