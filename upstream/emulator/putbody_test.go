package emulator_test

import (
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/secretbroker/secretbroker/upstream/emulator"
)

// Repository ids are JSON integers (003:229, 003:408, 001, 000, 004, and
// 002:259 for Set), except in the older GitHub Enterprise Server's PUT of an
// organization secret (002:149, Options.LegacyRoutes), typed
// array[string]. A body typed otherwise is refused with 422 and changes
// nothing.
func TestRepositoryIDTypes(t *testing.T) {
	const (
		hello = 1296269
		sauce = 1296270
		docs  = 1296271
	)
	tests := []struct {
		name    string
		legacy  bool
		scope   string // request path prefix, without the leading slash
		set     bool   // Set selected repositories, else create-or-update
		ids     any
		status  int
		message string // substring of the message
		want    []int64
	}{
		{"github.com PUT integers", false, orgActs, false, []int64{docs}, 201, "", []int64{docs}},
		{"github.com PUT strings", false, orgActs, false, []string{"1296271"}, 422, "integers", nil},
		{"github.com PUT mixed", false, orgActs, false, []any{hello, "1296271"}, 422, "integers", nil},
		{"github.com PUT agents strings", false, orgAgent, false, []string{"1296271"}, 422, "integers", nil},
		{"github.com Set integers", false, orgActs, true, []int64{docs}, 204, "", []int64{docs}},
		{"github.com Set strings", false, orgActs, true, []string{"1296271"}, 422, "integers", []int64{hello}},
		{"github.com Set agents strings", false, orgAgent, true, []string{"1296271"}, 422, "integers", []int64{hello}},
		{"GHES 3.21 PUT strings", false, "api/v3/" + orgActs, false, []string{"1296271"}, 422, "integers", nil},
		{"GHES 3.21 Set strings", false, "api/v3/" + orgActs, true, []string{"1296271"}, 422, "integers", []int64{hello}},
		{"old GHES PUT strings", true, "api/v3/" + orgActs, false, []string{"1296271", "1296270"}, 201, "", []int64{sauce, docs}},
		{"old GHES PUT integers", true, "api/v3/" + orgActs, false, []int64{docs}, 201, "", []int64{docs}},
		{"old GHES PUT mixed", true, "api/v3/" + orgActs, false, []any{hello, "1296271"}, 201, "", []int64{hello, docs}},
		{"old GHES PUT strings without prefix", true, orgActs, false, []string{"1296271"}, 201, "", []int64{docs}},
		{"old GHES PUT strings not ids", true, "api/v3/" + orgActs, false, []string{"12962x1"}, 422, "not a repository id", nil},
		{"old GHES PUT agents strings", true, orgAgent, false, []string{"1296271"}, 422, "integers", nil},
		{"old GHES Set strings", true, "api/v3/" + orgActs, true, []string{"1296271"}, 422, "integers", []int64{hello}},
		{"old GHES Set integers", true, "api/v3/" + orgActs, true, []int64{docs}, 204, "", []int64{docs}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, emulator.Options{LegacyRoutes: tt.legacy})
			hookScope := strings.TrimPrefix(tt.scope, "api/v3/")
			var r result
			if tt.set {
				e.want(e.put(tt.scope, "S", "v", orgBody("selected", hello)), 201)
				r = e.do("PUT", "/"+tt.scope+"/secrets/S/repositories", map[string]any{"selected_repository_ids": tt.ids})
			} else {
				r = e.put(tt.scope, "S", "v", map[string]any{"visibility": "selected", "selected_repository_ids": tt.ids})
			}
			if r.status != tt.status {
				t.Fatalf("status %d, want %d: %s", r.status, tt.status, r.body)
			}
			if tt.message != "" && !strings.Contains(r.message(t), tt.message) {
				t.Errorf("message %q does not contain %q", r.message(t), tt.message)
			}
			ids, err := e.emu.SelectedRepositoryIDs(hookScope, "S")
			switch {
			case tt.want == nil && err == nil:
				t.Errorf("the refused PUT created the secret, selected %v", ids)
			case tt.want != nil && (err != nil || !slices.Equal(ids, tt.want)):
				t.Errorf("selected = %v, %v; want %v", ids, err, tt.want)
			}
		})
	}
}

// encrypted_value and key_id are Required only where the reference pages
// say so (environment secrets, Agents, GitHub Enterprise Server 3.21);
// for Actions organization and repository secrets on github.com (003:215,
// 003:830) and the older GitHub Enterprise Server (004:233, 004:737) a PUT
// without them updates an existing secret's other settings and its
// updated_at, keeps its value, and cannot create one.
func TestPutWithoutValue(t *testing.T) {
	const (
		hello = 1296269
		docs  = 1296271
	)
	legacyEnv := "repositories/1296269/environments/prod%2Feu"
	tests := []struct {
		name     string
		legacy   bool
		scope    string // request path prefix, without the leading slash
		hook     string // the same scope as the test hooks name it
		existing bool   // the secret exists before the PUT
		body     map[string]any
		status   int
		message  string  // substring of the message
		vis      string  // visibility after, organization secrets
		selected []int64 // selected after, organization secrets
	}{
		{"github.com repo", false, repoActs, repoActs, true, map[string]any{}, 204, "", "", nil},
		{"github.com repo nulls", false, repoActs, repoActs, true, map[string]any{"encrypted_value": nil, "key_id": nil}, 204, "", "", nil},
		{"github.com repo absent", false, repoActs, repoActs, false, map[string]any{}, 422, "no value to store", "", nil},
		{"github.com repo key_id only", false, repoActs, repoActs, true, map[string]any{"key_id": "1"}, 422, "encrypted_value is required", "", nil},
		{"github.com repo value only", false, repoActs, repoActs, true, map[string]any{"encrypted_value": "c2VjcmV0"}, 422, "key_id is required", "", nil},
		{"github.com org new selection", false, orgActs, orgActs, true, map[string]any{"visibility": "selected", "selected_repository_ids": []int64{docs}}, 204, "", "selected", []int64{docs}},
		{"github.com org to all", false, orgActs, orgActs, true, map[string]any{"visibility": "all"}, 204, "", "all", []int64{}},
		{"github.com org bad ids", false, orgActs, orgActs, true, map[string]any{"visibility": "selected", "selected_repository_ids": []int64{42}}, 422, "not a repository", "selected", []int64{hello}},
		{"github.com org no visibility", false, orgActs, orgActs, true, map[string]any{}, 422, "visibility", "selected", []int64{hello}},
		{"github.com org absent", false, orgActs, orgActs, false, map[string]any{"visibility": "all"}, 422, "no value to store", "", nil},
		{"github.com env", false, envProd, envProd, true, map[string]any{}, 422, "key_id is required", "", nil},
		{"github.com org agents", false, orgAgent, orgAgent, true, map[string]any{"visibility": "all"}, 422, "key_id is required", "selected", []int64{hello}},
		{"github.com repo agents", false, repoAgnt, repoAgnt, true, map[string]any{}, 422, "key_id is required", "", nil},
		{"GHES 3.21 repo", false, "api/v3/" + repoActs, repoActs, true, map[string]any{}, 422, "key_id is required", "", nil},
		{"GHES 3.21 org", false, "api/v3/" + orgActs, orgActs, true, map[string]any{"visibility": "all"}, 422, "key_id is required", "selected", []int64{hello}},
		{"GHES 3.21 env", false, "api/v3/" + envProd, envProd, true, map[string]any{}, 422, "key_id is required", "", nil},
		{"old GHES repo", true, "api/v3/" + repoActs, repoActs, true, map[string]any{}, 204, "", "", nil},
		{"old GHES org", true, "api/v3/" + orgActs, orgActs, true, map[string]any{"visibility": "private"}, 204, "", "private", []int64{}},
		{"old GHES org absent", true, "api/v3/" + orgActs, orgActs, false, map[string]any{"visibility": "private"}, 422, "no value to store", "", nil},
		{"old GHES env", true, "api/v3/" + legacyEnv, envProd, true, map[string]any{}, 422, "key_id is required", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := newMemEnv(t, emulator.Options{LegacyRoutes: tt.legacy})
				org := strings.HasPrefix(tt.hook, "orgs/")
				var before secretJSON
				if tt.existing {
					var extra map[string]any
					if org {
						extra = orgBody("selected", hello)
					}
					e.want(e.put(tt.scope, "S", "old", extra), 201)
					e.want(e.do("GET", "/"+tt.scope+"/secrets/S", nil), 200).json(t, &before)
				}
				time.Sleep(time.Minute)
				r := e.do("PUT", "/"+tt.scope+"/secrets/S", tt.body)
				if r.status != tt.status {
					t.Fatalf("status %d, want %d: %s", r.status, tt.status, r.body)
				}
				if tt.message != "" && !strings.Contains(r.message(t), tt.message) {
					t.Errorf("message %q does not contain %q", r.message(t), tt.message)
				}
				if !tt.existing {
					e.want(e.do("GET", "/"+tt.scope+"/secrets/S", nil), 404)
					return
				}
				if v, err := e.emu.Open(tt.hook, "S"); err != nil || string(v) != "old" {
					t.Errorf("value %q, %v; want the old one kept", v, err)
				}
				var after secretJSON
				e.want(e.do("GET", "/"+tt.scope+"/secrets/S", nil), 200).json(t, &after)
				wantUpdated := before.UpdatedAt
				if tt.status == 204 {
					wantUpdated = time.Now().UTC().Format(time.RFC3339)
				}
				if after.CreatedAt != before.CreatedAt || after.UpdatedAt != wantUpdated {
					t.Errorf("created_at %s updated_at %s, want %s and %s", after.CreatedAt, after.UpdatedAt, before.CreatedAt, wantUpdated)
				}
				if org {
					if after.Visibility != tt.vis {
						t.Errorf("visibility %q, want %q", after.Visibility, tt.vis)
					}
					if ids, err := e.emu.SelectedRepositoryIDs(tt.hook, "S"); err != nil || !slices.Equal(ids, tt.selected) {
						t.Errorf("selected %v, %v; want %v", ids, err, tt.selected)
					}
				}
			})
		})
	}
}
