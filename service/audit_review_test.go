package service

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"testing/synctest"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/service/audit"
	"github.com/secretbroker/secretbroker/upstream"
)

// trailRecords decodes every line of an audit trail.
func trailRecords(t *testing.T, trail string) []audit.Record {
	t.Helper()
	var recs []audit.Record
	for line := range strings.Lines(trail) {
		var r audit.Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("not a JSON record: %q", line)
		}
		recs = append(recs, r)
	}
	return recs
}

// panicAll panics on every change it is asked to send to GitHub.
type panicAll struct{ Upstream }

func (p panicAll) PutSecretFunc(context.Context, upstream.Scope, string, func() (upstream.PutSecretBody, error)) (upstream.Written, error) {
	panic("boom")
}

func (p panicAll) DeleteSecret(context.Context, upstream.Scope, string) error { panic("boom") }

func (p panicAll) SetSelectedRepositories(context.Context, upstream.Scope, string, []int64) error {
	panic("boom")
}

func (p panicAll) AddSelectedRepository(context.Context, upstream.Scope, string, int64) error {
	panic("boom")
}

func (p panicAll) RemoveSelectedRepository(context.Context, upstream.Scope, string, int64) error {
	panic("boom")
}

func (p panicAll) ListSecrets(context.Context, upstream.Scope, upstream.Page) (upstream.SecretList, error) {
	panic("boom")
}

// TestSingleCallPanicWritesOutcome: a single call whose change panics
// after its intent record was written (the broker's recovery answers it
// INTERNAL) still gets an outcome record, as a batch's and an operation's
// items do: no intent is left without its outcome.
func TestSingleCallPanicWritesOutcome(t *testing.T) {
	calls := []struct {
		rpc string
		do  func(ctx context.Context, s *Server) error
	}{
		{rpcPutSecret, func(ctx context.Context, s *Server) error {
			_, err := s.PutSecret(ctx, plain(repoScope+"/secrets/P", plantedSecret))
			return err
		}},
		{rpcDeleteSecret, func(ctx context.Context, s *Server) error {
			_, err := s.DeleteSecret(ctx, &secretbrokerv1.DeleteSecretRequest{Name: repoScope + "/secrets/P"})
			return err
		}},
		{rpcSyncSecrets, func(ctx context.Context, s *Server) error {
			_, err := s.SyncSecrets(ctx, syncReq(repoScope, "team", map[string]string{"P": plantedSecret}))
			return err
		}},
		{rpcSetSelected, func(ctx context.Context, s *Server) error {
			_, err := s.SetSelectedRepositories(ctx, &secretbrokerv1.SetSelectedRepositoriesRequest{Name: orgScope + "/secrets/P", SelectedRepositoryIds: []int64{1}})
			return err
		}},
		{rpcAddSelected, func(ctx context.Context, s *Server) error {
			_, err := s.AddSelectedRepository(ctx, &secretbrokerv1.AddSelectedRepositoryRequest{Name: orgScope + "/secrets/P", RepositoryId: 1})
			return err
		}},
		{rpcRemoveSelected, func(ctx context.Context, s *Server) error {
			_, err := s.RemoveSelectedRepository(ctx, &secretbrokerv1.RemoveSelectedRepositoryRequest{Name: orgScope + "/secrets/P", RepositoryId: 1})
			return err
		}},
	}
	for _, c := range calls {
		t.Run(rpcShort(c.rpc), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var trail syncBuffer
				h := newHarness(t, harnessOpts{audit: audit.NewWriter(&trail, nil), wrap: func(u Upstream) Upstream { return panicAll{u} }})
				panicked := func() (p any) {
					defer func() { p = recover() }()
					_ = c.do(t.Context(), h.server)
					return nil
				}()
				if panicked == nil {
					t.Fatal("the call did not panic")
				}
				var intents, outcomes int
				for _, r := range trailRecords(t, trail.String()) {
					if r.RPC != c.rpc {
						continue
					}
					switch r.Phase {
					case audit.PhaseIntent:
						intents++
					case audit.PhaseOutcome:
						outcomes++
						if r.Outcome != "INTERNAL" {
							t.Errorf("outcome %s, want INTERNAL", r.Outcome)
						}
					}
				}
				if intents != 1 || outcomes != 1 {
					t.Errorf("%d intent and %d outcome records, want 1 and 1:\n%s", intents, outcomes, trail.String())
				}
			})
		})
	}
}
