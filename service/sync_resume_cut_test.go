package service

import (
	"slices"
	"testing"
	"testing/synctest"
	"time"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/service/state"
	"github.com/secretbroker/secretbroker/upstream/emulator"
)

// TestWriteRepeatedThenCutIsCreated: an async batch's forced item creates
// FIRST, and the process dies before its result is recorded. After the
// resume the item writes FIRST again (force); a crash cuts that write
// after GitHub applied it (204), its answer lost. After the second resume
// the item still reports the create of its first write. It reported an
// update: the record was distrusted before the second write, and that
// dropped which operation wrote it and that the write created the secret
// (distrustRecord). Found by FuzzBrokerModel.
func TestWriteRepeatedThenCutIsCreated(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		logs := &syncBuffer{}
		emu := emulator.New(emulator.Options{Token: testToken, Logger: newTestLogger(logs)})
		emu.SeedDemo()
		st, err := state.NewMemory(state.Options{})
		if err != nil {
			t.Fatal(err)
		}
		// The model's transport and store cut the operation (modelGate,
		// modelStore), and its stop crashes the broker (modelRun.stop).
		r := &modelRun{t: t, emu: emu, gate: &modelGate{next: newEmulatorTransport(emu)}, store: &modelStore{Store: st}, logs: logs}
		r.start()
		ctx := t.Context()
		resume := func() {
			r.start()
			if _, err := r.server.ResumeOperations(ctx); err != nil {
				t.Fatal(err)
			}
		}
		p := plain(repoScope+"/secrets/FIRST", plantedSecret+"-1")
		p.Force = true
		r.store.arm()
		resp, err := r.broker.BatchPutSecrets(ctx, &secretbrokerv1.BatchPutSecretsRequest{Async: true, Requests: []*secretbrokerv1.PutSecretRequest{p}})
		if err != nil {
			t.Fatal(err)
		}
		name := resp.GetOperation().GetName()
		<-r.store.hit // FIRST created, its result not recorded
		r.stop(ctx, true)
		r.gate.arm(0, true)
		resume()
		<-r.gate.hit // FIRST written again, GitHub applied it, its answer held
		r.stop(ctx, false)
		resume()
		done := waitOp(ctx, t, r.broker, name, time.Hour)
		if got := batchResultsOf(t, done); !slices.Equal(got, []string{"FIRST OK created"}) {
			t.Errorf("results after the second resume %v, want [FIRST OK created]", got)
		}
		if got, err := emu.Open(repoScope, "FIRST"); err != nil || string(got) != plantedSecret+"-1" {
			t.Errorf("FIRST holds %q (%v), want the value written", got, err)
		}
	})
}
