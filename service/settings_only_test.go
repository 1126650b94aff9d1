package service

import (
	"context"
	"slices"
	"strings"
	"testing"
	"testing/synctest"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/upstream/emulator"
)

// settingsOnly is a PutSecret of an organization secret without value or
// encrypted_value.
func settingsOnly(name, visibility string, ids ...int64) *secretbrokerv1.PutSecretRequest {
	return &secretbrokerv1.PutSecretRequest{Name: name, Visibility: visibility, SelectedRepositoryIds: ids}
}

// TestPutSettingsOnly: on github.com (the seed leaves encrypted_value and
// key_id optional for Actions organization secrets, 003:215/219) a
// PutSecret without a value changes an existing organization secret's
// visibility and selection with one PUT carrying neither, and GitHub
// keeps the value. The record of that write has no value print (GitHub
// may keep a value written meanwhile, TestPutSettingsOnlyWrittenMeanwhile):
// the same put again, and the old value put again, go to GitHub.
func TestPutSettingsOnly(t *testing.T) {
	const name = orgScope + "/secrets/ORG_DB"
	cases := []struct {
		name       string
		visibility string
		repos      []string // selected, by demo name
		// keep: want the selection kept ("selected" without ids, as
		// any put), never judged unchanged.
		keep []string
	}{
		{"visibility", "all", nil, nil},
		{"selection", "selected", []string{"docs", "secret-sauce"}, nil},
		{"selection kept", "selected", nil, []string{"hello-world"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx := context.Background()
				h := newHarness(t, harnessOpts{})
				req := plain(name, plantedSecret)
				req.Visibility = "selected"
				req.SelectedRepositoryIds = []int64{h.repoID(t, "hello-world")}
				if _, err := h.broker.PutSecret(ctx, req); err != nil {
					t.Fatal(err)
				}
				var ids []int64
				for _, r := range tc.repos {
					ids = append(ids, h.repoID(t, r))
				}
				h.emu.ResetCounts()
				got, err := h.broker.PutSecret(ctx, settingsOnly(name, tc.visibility, ids...))
				if err != nil {
					t.Fatalf("PutSecret without a value: %v", err)
				}
				if got.GetCreated() || got.GetKeyId() != "" || got.GetUnchanged() {
					t.Errorf("answer = %v, want created false, key_id \"\", unchanged false", got)
				}
				if n := h.emu.Count(emulator.RoutePutOrgSecret); n != 1 {
					t.Errorf("%d PUTs of the secret, want 1", n)
				}
				if n := h.emu.Count(emulator.RouteGetOrgPublicKey); n != 0 {
					t.Errorf("%d public key requests, want none: nothing is sealed", n)
				}
				v, err := h.emu.Open(orgScope, "ORG_DB")
				if err != nil || string(v) != plantedSecret {
					t.Errorf("GitHub holds another value after the put without one (err %v)", err)
				}
				sec, err := h.broker.GetSecret(ctx, &secretbrokerv1.GetSecretRequest{Name: name})
				if err != nil {
					t.Fatal(err)
				}
				if sec.GetVisibility() != tc.visibility {
					t.Errorf("visibility = %q, want %q", sec.GetVisibility(), tc.visibility)
				}
				if tc.visibility == "selected" {
					sel, err := h.emu.SelectedRepositoryIDs(orgScope, "ORG_DB")
					if err != nil {
						t.Fatal(err)
					}
					want := slices.Clone(ids)
					for _, r := range tc.keep {
						want = append(want, h.repoID(t, r))
					}
					slices.Sort(want)
					if !slices.Equal(sel, want) {
						t.Errorf("selection = %v, want %v", sel, want)
					}
				}
				if tc.keep != nil {
					return // keeps the current selection: never judged unchanged
				}

				// The same settings again, then the old value with the new
				// settings: each goes to GitHub, the record of a write
				// without a value vouching for none
				// (TestPutSettingsOnlyWrittenMeanwhile).
				h.emu.ResetCounts()
				again, err := h.broker.PutSecret(ctx, settingsOnly(name, tc.visibility, ids...))
				if err != nil {
					t.Fatal(err)
				}
				if again.GetUnchanged() || again.GetKeyId() != "" {
					t.Errorf("the same settings again: %v, want written with key_id \"\"", again)
				}
				req = plain(name, plantedSecret)
				req.Visibility, req.SelectedRepositoryIds = tc.visibility, ids
				same, err := h.broker.PutSecret(ctx, req)
				if err != nil {
					t.Fatal(err)
				}
				if same.GetUnchanged() {
					t.Errorf("the old value with the new settings: %v, want written", same)
				}
				if n := h.emu.Count(emulator.RoutePutOrgSecret); n != 2 {
					t.Errorf("%d PUTs, want 2", n)
				}
			})
		})
	}
}

// TestPutSettingsOnlyRefused: a PutSecret without a value is
// INVALID_ARGUMENT wherever the seed marks the value Required or there is
// nothing but the value to change, and NOT_FOUND for a secret that does
// not exist; none sends a write to GitHub. A batch item still needs a
// value.
func TestPutSettingsOnlyRefused(t *testing.T) {
	const (
		ghes321 = "ghes3.21"
		legacy  = "legacy"
	)
	cases := []struct {
		name     string
		upstream string // "" github.com; ghes321; legacy
		req      *secretbrokerv1.PutSecretRequest
		batch    bool
		code     codes.Code
		msg      string
	}{
		{"repository secret", "", settingsOnly(repoScope+"/secrets/DB", ""), false, codes.InvalidArgument, "only PutSecret may leave both out"},
		{"environment secret", "", settingsOnly(stagingEnv+"/secrets/DB", ""), false, codes.InvalidArgument, "only PutSecret may leave both out"},
		{"Agents organization secret", "", settingsOnly("orgs/octo-org/agents/secrets/ORG_DB", "all"), false, codes.InvalidArgument, "only PutSecret may leave both out"},
		{"GHES 3.21 organization secret", ghes321, settingsOnly(orgScope+"/secrets/ORG_DB", "all"), false, codes.InvalidArgument, "only PutSecret may leave both out"},
		{"no visibility", "", settingsOnly(orgScope+"/secrets/ORG_DB", ""), false, codes.InvalidArgument, "is required in a put without a value"},
		{"key_id without encrypted_value", "", &secretbrokerv1.PutSecretRequest{Name: orgScope + "/secrets/ORG_DB", Visibility: "all", KeyId: "1"}, false, codes.InvalidArgument, "key_id"},
		{"secret that does not exist", "", settingsOnly(orgScope+"/secrets/NEVER_WRITTEN", "all"), false, codes.NotFound, "creates nothing"},
		{"legacy secret that does not exist", legacy, settingsOnly(orgScope+"/secrets/NEVER_WRITTEN", "all"), false, codes.NotFound, "creates nothing"},
		{"batch item", "", settingsOnly(orgScope+"/secrets/ORG_DB", "all"), true, codes.InvalidArgument, "only PutSecret may leave both out"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx := context.Background()
				var h *harness
				switch tc.upstream {
				case ghes321:
					h = newGHESHarness(t, false)
				case legacy:
					h = newGHESHarness(t, true)
				default:
					h = newHarness(t, harnessOpts{})
				}
				req := plain(orgScope+"/secrets/ORG_DB", plantedSecret)
				req.Visibility = "private"
				if _, err := h.broker.PutSecret(ctx, req); err != nil {
					t.Fatal(err)
				}
				h.emu.ResetCounts()
				var err error
				if tc.batch {
					var res *secretbrokerv1.BatchPutSecretsResponse
					res, err = h.broker.BatchPutSecrets(ctx, &secretbrokerv1.BatchPutSecretsRequest{Requests: []*secretbrokerv1.PutSecretRequest{tc.req}})
					if err == nil {
						r := res.GetResults()[0]
						err = status.Error(codes.Code(r.GetCode()), r.GetMessage())
					}
				} else {
					_, err = h.broker.PutSecret(ctx, tc.req)
				}
				if got := status.Code(err); got != tc.code || !strings.Contains(status.Convert(err).Message(), tc.msg) {
					t.Fatalf("err = %v, want %v holding %q", err, tc.code, tc.msg)
				}
				for _, route := range []string{emulator.RoutePutOrgSecret, emulator.RoutePutRepoSecret, emulator.RoutePutEnvSecret} {
					if n := h.emu.Count(route); n != 0 {
						t.Errorf("%d requests %s", n, route)
					}
				}
				if v, err := h.emu.Open(orgScope, "ORG_DB"); err != nil || string(v) != plantedSecret {
					t.Errorf("the secret's value changed (err %v)", err)
				}
			})
		})
	}
}

// TestPutSettingsOnlyLegacyGHES: the older GitHub Enterprise Server
// (legacy routes, 004:233/237) leaves the value optional too.
func TestPutSettingsOnlyLegacyGHES(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		h := newGHESHarness(t, true)
		const name = orgScope + "/secrets/ORG_DB"
		req := plain(name, plantedSecret)
		req.Visibility = "private"
		if _, err := h.broker.PutSecret(ctx, req); err != nil {
			t.Fatal(err)
		}
		if _, err := h.broker.PutSecret(ctx, settingsOnly(name, "all")); err != nil {
			t.Fatal(err)
		}
		sec, err := h.broker.GetSecret(ctx, &secretbrokerv1.GetSecretRequest{Name: name})
		if err != nil || sec.GetVisibility() != "all" {
			t.Fatalf("GetSecret = %v, %v; want visibility all", sec, err)
		}
		if v, err := h.emu.Open(orgScope, "ORG_DB"); err != nil || string(v) != plantedSecret {
			t.Errorf("the secret's value changed (err %v)", err)
		}
	})
}

// TestPutSettingsOnlyAccess: a put without a value needs write on the
// secret as any put does, and manage_repositories when it changes the
// visibility or selection of the secret (checkAccessChange); a caller
// without write is denied before anything is sent.
func TestPutSettingsOnlyAccess(t *testing.T) {
	const name = orgScope + "/secrets/PAY_KEY"
	cases := []struct {
		name       string
		caller     string
		visibility string
		code       codes.Code
		puts       int // PUTs of the secret
	}{
		{"read only", "token:pay", "private", codes.PermissionDenied, 0},
		{"write, no manage, visibility changed", "token:writer", "all", codes.PermissionDenied, 0},
		// The recorded settings: unchanged.
		{"write, no manage, visibility kept", "token:writer", "private", codes.OK, 0},
		{"admin", "token:admin", "all", codes.OK, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, harnessOpts{authz: mustPolicy(t)})
				admin := as(context.Background(), "token:admin")
				req := plain(name, plantedSecret)
				req.Visibility = "private"
				if _, err := h.broker.PutSecret(admin, req); err != nil {
					t.Fatal(err)
				}
				h.emu.ResetCounts()
				_, err := h.broker.PutSecret(as(context.Background(), tc.caller), settingsOnly(name, tc.visibility))
				if got := status.Code(err); got != tc.code {
					t.Fatalf("err = %v, want %v", err, tc.code)
				}
				if n := h.emu.Count(emulator.RoutePutOrgSecret); n != tc.puts {
					t.Errorf("%d PUTs, want %d", n, tc.puts)
				}
				if v, err := h.emu.Open(orgScope, "PAY_KEY"); err != nil || string(v) != plantedSecret {
					t.Errorf("the secret's value changed (err %v)", err)
				}
			})
		})
	}
}

// TestPutSettingsOnlyAfterDrift: the record of a settings-only write has
// no value print, with or without a write behind the broker's back
// before it: the next put of the old value goes to GitHub instead of
// being judged unchanged.
func TestPutSettingsOnlyAfterDrift(t *testing.T) {
	for _, drift := range []bool{false, true} {
		t.Run(map[bool]string{false: "no drift", true: "written behind the back"}[drift], func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx := context.Background()
				h := newHarness(t, harnessOpts{})
				const name = orgScope + "/secrets/ORG_DB"
				if _, err := h.broker.PutSecret(ctx, orgPut(name, plantedSecret, "private")); err != nil {
					t.Fatal(err)
				}
				if drift {
					behindBack(t, h, name)
				}
				if _, err := h.broker.PutSecret(ctx, settingsOnly(name, "all")); err != nil {
					t.Fatal(err)
				}
				got, err := h.broker.PutSecret(ctx, orgPut(name, plantedSecret, "all"))
				if err != nil {
					t.Fatal(err)
				}
				if got.GetUnchanged() {
					t.Errorf("the old value after the settings-only put: unchanged, want written")
				}
			})
		})
	}
}
