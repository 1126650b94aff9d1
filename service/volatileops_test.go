package service

import (
	"context"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/service/state"
	"github.com/secretbroker/secretbroker/upstream"
)

// TestVolatileOperations: with operations in memory, a broker says at
// shutdown that a cut operation is lost, not that it resumes after a
// restart.
func TestVolatileOperations(t *testing.T) {
	batch := func() *secretbrokerv1.BatchPutSecretsRequest {
		req := &secretbrokerv1.BatchPutSecretsRequest{Async: true}
		for _, n := range []string{"VOLATILE_0", "VOLATILE_1", "VOLATILE_2", "VOLATILE_3", "VOLATILE_4"} {
			req.Requests = append(req.Requests, plain(repoScope+"/secrets/"+n, plantedSecret))
		}
		return req
	}
	for _, volatile := range []bool{false, true} {
		name := map[bool]string{false: "durable store says it resumes", true: "volatile store says it is lost"}[volatile]
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				pacing := upstream.DefaultPacing()
				pacing.WriteInterval = 10 * time.Second
				h := newHarness(t, harnessOpts{pacing: &pacing})
				st, err := state.NewMemory(state.Options{})
				if err != nil {
					t.Fatal(err)
				}
				s := New(h.client, Options{State: st, Logger: newTestLogger(h.logs),
					Operations: OperationOptions{Volatile: volatile, FlushEvery: 1}})
				ctx := t.Context()
				resp, err := s.BatchPutSecrets(ctx, batch())
				if err != nil {
					t.Fatal(err)
				}
				// Shut down while the third write waits for its slot.
				mid, err := s.WaitOperation(ctx, &secretbrokerv1.WaitOperationRequest{Name: resp.GetOperation().GetName(),
					Timeout: durationpb.New(15 * time.Second)})
				if err != nil || mid.GetDone() {
					t.Fatalf("after 15 s: %v %v; want the operation running", mid, err)
				}
				if err := s.CloseOperations(context.Background()); err != nil {
					t.Fatal(err)
				}
				logs := h.logs.String()
				lost := strings.Contains(logs, "operation lost at shutdown")
				resumes := strings.Contains(logs, "it resumes after a restart")
				if lost != volatile || resumes == volatile {
					t.Errorf("shutdown log says lost %v, resumes %v; want lost %v:\n%s", lost, resumes, volatile, logs)
				}
			})
		})
	}
}
