package service

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/service/audit"
	"github.com/secretbroker/secretbroker/service/state"
	"github.com/secretbroker/secretbroker/upstream"
)

// closeOps stops the harness's runner at the test's end, inside the
// bubble, so no operation goroutine outlives it.
func closeOps(t *testing.T, s *Server) {
	t.Cleanup(func() {
		if err := s.CloseOperations(context.Background()); err != nil {
			t.Errorf("CloseOperations: %v", err)
		}
	})
}

func waitOp(ctx context.Context, t *testing.T, c secretbrokerv1.SecretServiceClient, name string, timeout time.Duration) *secretbrokerv1.Operation {
	t.Helper()
	req := &secretbrokerv1.WaitOperationRequest{Name: name}
	if timeout > 0 {
		req.Timeout = durationpb.New(timeout)
	}
	op, err := c.WaitOperation(ctx, req)
	if err != nil {
		t.Fatalf("WaitOperation(%s): %v", name, err)
	}
	return op
}

// syncResultsOf maps each sync result's secret name to "ACTION CODE".
func syncResultsOf(t *testing.T, op *secretbrokerv1.Operation) map[string]string {
	t.Helper()
	return planOf(t, &secretbrokerv1.SyncSecretsResponse{Results: op.GetResponse().GetSyncResults()})
}

// batchResultsOf lists each batch result as "NAME CODE [created] [unchanged]".
func batchResultsOf(t *testing.T, op *secretbrokerv1.Operation) []string {
	t.Helper()
	var out []string
	for _, r := range op.GetResponse().GetBatchPutResults() {
		_, name, _ := strings.Cut(r.GetName(), "/secrets/")
		s := name + " " + r.GetCode().String()
		if r.GetCreated() {
			s += " created"
		}
		if r.GetUnchanged() {
			s += " unchanged"
		}
		if strings.Contains(r.GetMessage(), plantedSecret) {
			t.Errorf("%s: the message holds a value", name)
		}
		out = append(out, s)
	}
	return out
}

// TestOperationSync: an async sync answers at once with an operation
// (unchanged items already counted, the estimate from the pacer's write
// spacing), shows its progress, is visible to its caller and to a caller
// allowed to read its secrets but not to others, and ends with every
// item's result; its writes are audited under the caller's name and read
// back, so the next sync finds them unchanged.
func TestOperationSync(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st, err := state.NewMemory(state.Options{})
		if err != nil {
			t.Fatal(err)
		}
		var trail syncBuffer
		h := newHarness(t, harnessOpts{authz: mustPolicy(t), audit: audit.NewWriter(&trail, nil), state: st,
			ops: OperationOptions{FlushEvery: 1}})
		closeOps(t, h.server)
		staging := as(t.Context(), "token:staging")
		if _, err := h.broker.SyncSecrets(staging, syncReq(stagingEnv, "ops", map[string]string{"KEEP": plantedSecret})); err != nil {
			t.Fatal(err)
		}
		want := map[string]string{"KEEP": plantedSecret, "NEW_1": plantedSecret + "-1", "NEW_2": plantedSecret + "-2", "NEW_3": plantedSecret + "-3"}
		req := syncReq(stagingEnv, "ops", want)
		req.Async, req.DryRun = true, true
		dry, err := h.broker.SyncSecrets(staging, req)
		if err != nil || dry.GetOperation() != nil || len(dry.GetResults()) != 4 {
			t.Fatalf("async dry run: %v %v; want the plan at once, no operation", dry, err)
		}
		req.DryRun = false
		h.emu.ResetCounts()
		resp, err := h.broker.SyncSecrets(staging, req)
		if err != nil {
			t.Fatal(err)
		}
		op := resp.GetOperation()
		m := op.GetMetadata()
		switch {
		case len(resp.GetResults()) != 0, op == nil, op.GetDone(), !strings.HasPrefix(op.GetName(), "operations/"):
			t.Fatalf("async answer %v: want an operation, not done, and no results", resp)
		case m.GetKind() != "SyncSecrets" || m.GetTotal() != 4 || m.GetUnchanged() != 1 || m.GetRemaining() != 3 || m.GetWritten() != 0:
			t.Fatalf("metadata at the start: %v", m)
		}
		// Default pacing: writes 1 s apart.
		if got := m.GetEstimatedCompletionTime().AsTime().Sub(m.GetUpdateTime().AsTime()); got != 3*time.Second {
			t.Errorf("estimated completion %v after the update, want 3s", got)
		}

		mid := waitOp(staging, t, h.broker, op.GetName(), 1500*time.Millisecond)
		mm := mid.GetMetadata()
		if mid.GetDone() || mm.GetWritten() == 0 || mm.GetRemaining() == 0 || mm.GetWritten()+mm.GetRemaining() != 3 ||
			len(mid.GetResponse().GetSyncResults()) != 1+int(mm.GetWritten()) {
			t.Errorf("progress after 1.5 s: done %v, %v, %d results", mid.GetDone(), mm, len(mid.GetResponse().GetSyncResults()))
		}
		if got := mm.GetEstimatedCompletionTime().AsTime().Sub(mm.GetUpdateTime().AsTime()); got != time.Duration(mm.GetRemaining())*time.Second {
			t.Errorf("estimate %v after the update with %d remaining", got, mm.GetRemaining())
		}

		// Who sees it.
		getAs := func(caller string) codes.Code {
			_, err := h.broker.GetOperation(as(t.Context(), caller), &secretbrokerv1.GetOperationRequest{Name: op.GetName()})
			return statusCode(err)
		}
		if got := getAs("token:pay"); got != codes.NotFound {
			t.Errorf("another caller's GetOperation: %v, want NotFound", got)
		}
		if got := getAs("token:admin"); got != codes.OK {
			t.Errorf("GetOperation of a caller allowed to read every secret: %v, want OK", got)
		}
		if _, err := h.broker.CancelOperation(as(t.Context(), "token:pay"), &secretbrokerv1.CancelOperationRequest{Name: op.GetName()}); statusCode(err) != codes.NotFound {
			t.Errorf("another caller's CancelOperation: %v, want NotFound", err)
		}
		for caller, n := range map[string]int{"token:staging": 1, "token:pay": 0, "token:admin": 0} {
			list, err := h.broker.ListOperations(as(t.Context(), caller), &secretbrokerv1.ListOperationsRequest{})
			if err != nil || len(list.GetOperations()) != n {
				t.Errorf("ListOperations as %s: %v %v, want %d", caller, list, err, n)
			}
		}

		done := waitOp(staging, t, h.broker, op.GetName(), 0)
		dm := done.GetMetadata()
		if !done.GetDone() || done.GetError() != nil || dm.GetWritten() != 3 || dm.GetUnchanged() != 1 || dm.GetFailed() != 0 || dm.GetRemaining() != 0 {
			t.Fatalf("done: %v", done)
		}
		if got, w := syncResultsOf(t, done), map[string]string{"KEEP": "UNCHANGED OK", "NEW_1": "CREATE OK", "NEW_2": "CREATE OK", "NEW_3": "CREATE OK"}; !maps.Equal(got, w) {
			t.Errorf("results %v, want %v", got, w)
		}
		if puts(h) != 3 {
			t.Errorf("%d PUTs, want 3", puts(h))
		}
		for n, v := range want {
			wantStored(t, h, stagingEnv+"/secrets/"+n, v)
		}
		// The operation's writes are audited as the caller's.
		audited := 0
		for line := range strings.Lines(trail.String()) {
			var r audit.Record
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				t.Fatal(err)
			}
			if r.Phase == audit.PhaseIntent && strings.Contains(r.Resource, "/NEW_") {
				audited++
				if r.Caller != "token:staging" || r.RPC != rpcSyncSecrets {
					t.Errorf("intent record %+v: want token:staging's SyncSecrets", r)
				}
			}
		}
		if audited != 3 || strings.Contains(trail.String(), plantedSecret) {
			t.Errorf("%d intent records of the operation's writes (want 3), or a value in the trail", audited)
		}
		synctest.Wait() // the runner's read-back after the last item
		rec, err := st.GetRecord(t.Context(), stagingEnv+"/secrets/NEW_3")
		if err != nil || rec.Owner != "ops" || rec.UpdatedAt.IsZero() {
			t.Errorf("record %+v %v: want ops's, read back", rec, err)
		}
		h.emu.ResetCounts()
		again, err := h.broker.SyncSecrets(staging, syncReq(stagingEnv, "ops", want))
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range again.GetResults() {
			if r.GetAction() != actUnchanged {
				t.Errorf("after the operation, %s: %v, want unchanged", r.GetName(), r.GetAction())
			}
		}
		if puts(h) != 0 {
			t.Errorf("%d PUTs after the operation, want none", puts(h))
		}
	})
}

func statusCode(err error) codes.Code { return status.Code(err) }

// TestOperationCancel: a cancelled operation ends done with CANCELLED, the
// results of the items it finished and CANCELLED ones for the items it
// did not run; nothing more is written. A caller
// that may read but not write its secrets sees it but may not cancel it.
func TestOperationCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pacing := upstream.DefaultPacing()
		pacing.WriteInterval = 100 * time.Second
		h := newHarness(t, harnessOpts{authz: mustPolicy(t), pacing: &pacing, ops: OperationOptions{FlushEvery: 1}})
		closeOps(t, h.server)
		admin := as(t.Context(), "token:admin")
		req := &secretbrokerv1.BatchPutSecretsRequest{Async: true}
		for _, n := range []string{"PAY_A", "PAY_B", "PAY_C", "PAY_D"} {
			req.Requests = append(req.Requests, plain(repoScope+"/secrets/"+n, plantedSecret))
		}
		resp, err := h.broker.BatchPutSecrets(admin, req)
		if err != nil {
			t.Fatal(err)
		}
		op := resp.GetOperation()
		if m := op.GetMetadata(); m.GetKind() != "BatchPutSecrets" || m.GetTotal() != 4 || m.GetRemaining() != 4 ||
			m.GetEstimatedCompletionTime().AsTime().Sub(m.GetUpdateTime().AsTime()) != 400*time.Second {
			t.Fatalf("metadata at the start: %v", m)
		}
		mid := waitOp(admin, t, h.broker, op.GetName(), 150*time.Second)
		if mid.GetDone() || mid.GetMetadata().GetWritten() != 2 {
			t.Fatalf("after 150 s: %v; want 2 written (at 0 s and 100 s)", mid)
		}
		pay := as(t.Context(), "token:pay") // reads PAY_*, writes nothing
		if _, err := h.broker.GetOperation(pay, &secretbrokerv1.GetOperationRequest{Name: op.GetName()}); err != nil {
			t.Errorf("GetOperation by a reader of every item: %v", err)
		}
		if _, err := h.broker.CancelOperation(pay, &secretbrokerv1.CancelOperationRequest{Name: op.GetName()}); statusCode(err) != codes.PermissionDenied {
			t.Errorf("CancelOperation by a reader: %v, want PermissionDenied", err)
		}
		if _, err := h.broker.CancelOperation(as(t.Context(), "token:staging"), &secretbrokerv1.CancelOperationRequest{Name: op.GetName()}); statusCode(err) != codes.NotFound {
			t.Errorf("CancelOperation by another caller: %v, want NotFound", err)
		}
		if _, err := h.broker.CancelOperation(admin, &secretbrokerv1.CancelOperationRequest{Name: op.GetName()}); err != nil {
			t.Fatal(err)
		}
		done := waitOp(admin, t, h.broker, op.GetName(), 0)
		m := done.GetMetadata()
		if !done.GetDone() || codes.Code(done.GetError().GetCode()) != codes.Canceled || !strings.Contains(done.GetError().GetMessage(), "2 of 4 items not run") {
			t.Fatalf("after cancel: %v, want done with CANCELLED", done)
		}
		if got, want := batchResultsOf(t, done), []string{"PAY_A OK created", "PAY_B OK created", "PAY_C CANCELLED", "PAY_D CANCELLED"}; m.GetWritten() != 2 || m.GetRemaining() != 2 ||
			strings.Join(got, ", ") != strings.Join(want, ", ") {
			t.Errorf("cancelled: %v, results %v; want %v: PAY_A and PAY_B written, the others not run", m, got, want)
		}
		time.Sleep(time.Hour)
		if puts(h) != 2 {
			t.Errorf("%d PUTs, want the 2 before the cancel", puts(h))
		}
		again, err := h.broker.CancelOperation(admin, &secretbrokerv1.CancelOperationRequest{Name: op.GetName()})
		if err != nil || !again.GetDone() || codes.Code(again.GetError().GetCode()) != codes.Canceled {
			t.Errorf("cancelling a cancelled operation: %v %v", again, err)
		}
	})
}

// startBatchFor15s starts on s, as ctx's caller, an async batch writing names in scope
// (values plantedSecret-i), with the emulator's counts reset first, and
// waits 15 s of it; it returns the request, the operation's name and the
// operation then.
func startBatchFor15s(ctx context.Context, t *testing.T, h *harness, s *Server, scope string, names []string) (*secretbrokerv1.BatchPutSecretsRequest, string, *secretbrokerv1.Operation) {
	t.Helper()
	req := &secretbrokerv1.BatchPutSecretsRequest{Async: true}
	for i, n := range names {
		req.Requests = append(req.Requests, plain(scope+"/secrets/"+n, fmt.Sprintf("%s-%d", plantedSecret, i)))
	}
	h.emu.ResetCounts()
	resp, err := s.BatchPutSecrets(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	name := resp.GetOperation().GetName()
	mid, err := s.WaitOperation(ctx, &secretbrokerv1.WaitOperationRequest{Name: name, Timeout: durationpb.New(15 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	return req, name, mid
}

// TestOperationResume: a broker stopped mid-operation leaves it in the
// file store; a new broker on the same store resumes it, and every item
// is written exactly once. No value stays in the file.
func TestOperationResume(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pacing := upstream.DefaultPacing()
		pacing.WriteInterval = 10 * time.Second
		h := newHarness(t, harnessOpts{pacing: &pacing})
		dir := t.TempDir()
		key := bytes.Repeat([]byte("k"), state.MinKeyLen)
		ctx := t.Context()
		open := func() (*state.Bolt, *Server) {
			st, err := state.OpenBolt(dir, state.Options{HMACKey: key})
			if err != nil {
				t.Fatal(err)
			}
			return st, New(h.client, Options{State: st, Logger: newTestLogger(h.logs), Operations: OperationOptions{FlushEvery: 1}})
		}
		st1, s1 := open()
		names := []string{"RESUME_0", "RESUME_1", "RESUME_2", "RESUME_3", "RESUME_4"}
		req, name, mid := startBatchFor15s(ctx, t, h, s1, repoScope, names)
		if mid.GetDone() || mid.GetMetadata().GetWritten() != 2 {
			t.Fatalf("after 15 s: %v; want 2 written", mid)
		}
		// Shutdown: the item in flight (waiting for its write slot) still
		// finishes and is recorded; nothing else starts.
		if err := s1.CloseOperations(ctx); err != nil {
			t.Fatal(err)
		}
		stored, err := st1.GetOperation(ctx, strings.TrimPrefix(name, "operations/"))
		if err != nil || stored.Done || len(stored.Results) != 3 || len(stored.Pending) != 2 || puts(h) != 3 {
			t.Fatalf("stored at shutdown: %+v %v, %d PUTs; want 3 done, 2 pending", stored, err, puts(h))
		}
		if _, err := s1.BatchPutSecrets(ctx, req); statusCode(err) != codes.Unavailable {
			t.Errorf("async batch after CloseOperations: %v, want Unavailable", err)
		}
		if err := st1.Close(); err != nil {
			t.Fatal(err)
		}

		st2, s2 := open()
		n, err := s2.ResumeOperations(ctx)
		if err != nil || n != 1 {
			t.Fatalf("ResumeOperations = %d, %v; want 1", n, err)
		}
		done, err := s2.WaitOperation(ctx, &secretbrokerv1.WaitOperationRequest{Name: name})
		if err != nil || !done.GetDone() || done.GetError() != nil || done.GetMetadata().GetWritten() != 5 || len(done.GetResponse().GetBatchPutResults()) != 5 {
			t.Fatalf("resumed: %v %v; want done with 5 written", done, err)
		}
		perPath := map[string]int{}
		for _, c := range h.upstream.calls(http.MethodPut) {
			perPath[c.path]++
		}
		for i, n := range names {
			wantStored(t, h, repoScope+"/secrets/"+n, fmt.Sprintf("%s-%d", plantedSecret, i))
		}
		if len(perPath) != 5 {
			t.Errorf("PUTs per secret %v, want 5 secrets", perPath)
		}
		for p, k := range perPath {
			if k != 1 {
				t.Errorf("%s written %d times, want once", p, k)
			}
		}
		if err := s2.CloseOperations(ctx); err != nil {
			t.Fatal(err)
		}
		if err := st2.Close(); err != nil {
			t.Fatal(err)
		}
		raw, err := os.ReadFile(filepath.Join(dir, state.BoltFileName))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(raw, []byte(plantedSecret)) {
			t.Error("the state file holds a value")
		}
	})
}

// TestOperationBatch: an async batch refuses a denied item when accepted,
// judges the others as a batch does (unchanged, created), and reports
// them in order. ListOperations pages through the caller's operations;
// malformed names, tokens and timeouts are refused.
func TestOperationBatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, harnessOpts{authz: mustPolicy(t)})
		closeOps(t, h.server)
		writer := as(t.Context(), "token:writer") // reads and writes organization secrets
		if _, err := h.broker.PutSecret(writer, orgPut(orgScope+"/secrets/KEPT", plantedSecret, "private")); err != nil {
			t.Fatal(err)
		}
		h.emu.ResetCounts()
		resp, err := h.broker.BatchPutSecrets(writer, &secretbrokerv1.BatchPutSecretsRequest{Async: true, Requests: []*secretbrokerv1.PutSecretRequest{
			orgPut(orgScope+"/secrets/NEWONE", plantedSecret+"-new", "private"),
			plain(repoScope+"/secrets/DENIED", plantedSecret),
			orgPut(orgScope+"/secrets/KEPT", plantedSecret, "private"),
		}})
		if err != nil {
			t.Fatal(err)
		}
		op := resp.GetOperation()
		if m := op.GetMetadata(); m.GetTotal() != 3 || m.GetFailed() != 1 || m.GetRemaining() != 2 {
			t.Errorf("metadata at the start: %v", m)
		}
		done := waitOp(writer, t, h.broker, op.GetName(), 0)
		want := []string{"DENIED PERMISSION_DENIED", "NEWONE OK created", "KEPT OK unchanged"}
		if got := batchResultsOf(t, done); strings.Join(got, ", ") != strings.Join(want, ", ") {
			t.Errorf("results %v, want %v", got, want)
		}
		if m := done.GetMetadata(); !done.GetDone() || m.GetWritten() != 1 || m.GetUnchanged() != 1 || m.GetFailed() != 1 {
			t.Errorf("done: %v", done)
		}
		if puts(h) != 1 {
			t.Errorf("%d PUTs, want 1", puts(h))
		}
		wantStored(t, h, orgScope+"/secrets/NEWONE", plantedSecret+"-new")

		// Two more (empty) operations, then pages of two.
		for range 2 {
			if _, err := h.broker.BatchPutSecrets(writer, &secretbrokerv1.BatchPutSecretsRequest{Async: true}); err != nil {
				t.Fatal(err)
			}
		}
		synctest.Wait()
		first, err := h.broker.ListOperations(writer, &secretbrokerv1.ListOperationsRequest{PageSize: 2})
		if err != nil || len(first.GetOperations()) != 2 || first.GetNextPageToken() == "" || first.GetOperations()[0].GetName() != op.GetName() {
			t.Fatalf("first page: %v %v", first, err)
		}
		second, err := h.broker.ListOperations(writer, &secretbrokerv1.ListOperationsRequest{PageSize: 2, PageToken: first.GetNextPageToken()})
		if err != nil || len(second.GetOperations()) != 1 || second.GetNextPageToken() != "" {
			t.Fatalf("second page: %v %v", second, err)
		}
		// A following page may ask for another page size (AIP-158, as the
		// README says of every list's tokens).
		resized, err := h.broker.ListOperations(writer, &secretbrokerv1.ListOperationsRequest{PageSize: 1, PageToken: first.GetNextPageToken()})
		if err != nil || len(resized.GetOperations()) != 1 || resized.GetOperations()[0].GetName() != second.GetOperations()[0].GetName() {
			t.Fatalf("the page after the first, one operation long: %v %v; want the third operation", resized, err)
		}
		notDone, err := h.broker.ListOperations(writer, &secretbrokerv1.ListOperationsRequest{NotDone: true})
		if err != nil || len(notDone.GetOperations()) != 0 {
			t.Errorf("not_done: %v %v; want none", notDone, err)
		}
		for _, tt := range []struct {
			name string
			call func() error
			want codes.Code
		}{
			{"token for another not_done", func() error {
				_, err := h.broker.ListOperations(writer, &secretbrokerv1.ListOperationsRequest{PageSize: 2, NotDone: true, PageToken: first.GetNextPageToken()})
				return err
			}, codes.InvalidArgument},
			{"garbage token", func() error {
				_, err := h.broker.ListOperations(writer, &secretbrokerv1.ListOperationsRequest{PageToken: "not-a-token"})
				return err
			}, codes.InvalidArgument},
			{"negative page size", func() error {
				_, err := h.broker.ListOperations(writer, &secretbrokerv1.ListOperationsRequest{PageSize: -1})
				return err
			}, codes.InvalidArgument},
			{"name without the collection", func() error {
				_, err := h.broker.GetOperation(writer, &secretbrokerv1.GetOperationRequest{Name: strings.TrimPrefix(op.GetName(), "operations/")})
				return err
			}, codes.InvalidArgument},
			{"name with a slash", func() error {
				_, err := h.broker.GetOperation(writer, &secretbrokerv1.GetOperationRequest{Name: "operations/a/b"})
				return err
			}, codes.InvalidArgument},
			{"missing operation", func() error {
				_, err := h.broker.GetOperation(writer, &secretbrokerv1.GetOperationRequest{Name: "operations/0123abcd"})
				return err
			}, codes.NotFound},
			{"negative timeout", func() error {
				_, err := h.broker.WaitOperation(writer, &secretbrokerv1.WaitOperationRequest{Name: op.GetName(), Timeout: durationpb.New(-time.Second)})
				return err
			}, codes.InvalidArgument},
			{"cancel a missing operation", func() error {
				_, err := h.broker.CancelOperation(writer, &secretbrokerv1.CancelOperationRequest{Name: "operations/0123abcd"})
				return err
			}, codes.NotFound},
		} {
			if got := statusCode(tt.call()); got != tt.want {
				t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
			}
		}
	})
}
