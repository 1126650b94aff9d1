package service

import (
	"slices"
	"testing"
	"testing/synctest"
	"time"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
)

// TestSelectionChangeDistrustsRecord: after a change of an organization
// secret's selection through the selection RPCs, a PutSecret asking for
// the selection the broker last wrote writes it again (it is not answered
// unchanged), and GitHub holds what the put asked for, also when the
// change spelled the organization in another case (GitHub's organization
// names are not case sensitive: one secret, one record).
func TestSelectionChangeDistrustsRecord(t *testing.T) {
	const secret = "orgs/octo-org/actions/secrets/SELECTED"
	for _, tt := range []struct {
		name   string
		change func(t *testing.T, b secretbrokerv1.SecretServiceClient, secret string)
	}{
		{"add", func(t *testing.T, b secretbrokerv1.SecretServiceClient, secret string) {
			if _, err := b.AddSelectedRepository(t.Context(), &secretbrokerv1.AddSelectedRepositoryRequest{Name: secret, RepositoryId: 1296270}); err != nil {
				t.Fatal(err)
			}
		}},
		{"remove", func(t *testing.T, b secretbrokerv1.SecretServiceClient, secret string) {
			if _, err := b.RemoveSelectedRepository(t.Context(), &secretbrokerv1.RemoveSelectedRepositoryRequest{Name: secret, RepositoryId: 1296269}); err != nil {
				t.Fatal(err)
			}
		}},
		{"set", func(t *testing.T, b secretbrokerv1.SecretServiceClient, secret string) {
			if _, err := b.SetSelectedRepositories(t.Context(), &secretbrokerv1.SetSelectedRepositoriesRequest{Name: secret, SelectedRepositoryIds: []int64{1296271}}); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		for _, changeAs := range []string{secret, "orgs/Octo-Org/actions/secrets/SELECTED"} {
			t.Run(tt.name+" as "+changeAs, func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					h := newHarness(t, harnessOpts{})
					put := orgPut(secret, plantedSecret, "selected", 1296269)
					if _, err := h.broker.PutSecret(t.Context(), put); err != nil {
						t.Fatal(err)
					}
					time.Sleep(time.Minute) // past the put's range of updated_at
					// Unchanged before the selection changes: the record holds.
					if resp, err := h.broker.PutSecret(t.Context(), put); err != nil || !resp.GetUnchanged() {
						t.Fatalf("second put: %v %v, want unchanged", resp, err)
					}
					tt.change(t, h.broker, changeAs)
					resp, err := h.broker.PutSecret(t.Context(), put)
					if err != nil {
						t.Fatal(err)
					}
					if resp.GetUnchanged() {
						t.Errorf("put after the selection changed: unchanged, want written")
					}
					list, err := h.broker.ListSelectedRepositories(t.Context(), &secretbrokerv1.ListSelectedRepositoriesRequest{Name: secret})
					if err != nil {
						t.Fatal(err)
					}
					var ids []int64
					for _, r := range list.GetRepositories() {
						ids = append(ids, r.GetId())
					}
					if !slices.Equal(ids, []int64{1296269}) {
						t.Errorf("GitHub holds the selection %v, want [1296269] as the put asked", ids)
					}
				})
			})
		}
	}
}
