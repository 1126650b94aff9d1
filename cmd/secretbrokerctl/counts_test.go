package main

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
)

// syncItem is a sync's result for the secret NAME of repoScope.
func syncItem(name string, a secretbrokerv1.SyncAction, c code.Code) *secretbrokerv1.SyncSecretsResult {
	return &secretbrokerv1.SyncSecretsResult{Name: repoScope + "/secrets/" + name, Action: a, Code: c}
}

const (
	actCreate    = secretbrokerv1.SyncAction_SYNC_ACTION_CREATE
	actUpdate    = secretbrokerv1.SyncAction_SYNC_ACTION_UPDATE
	actUnchanged = secretbrokerv1.SyncAction_SYNC_ACTION_UNCHANGED
	actDelete    = secretbrokerv1.SyncAction_SYNC_ACTION_DELETE
	actForeign   = secretbrokerv1.SyncAction_SYNC_ACTION_FOREIGN
	actConflict  = secretbrokerv1.SyncAction_SYNC_ACTION_CONFLICT
)

// brokerMetadata is the metadata the broker sends with a sync's finished
// results (service/operation's Runner.progress over service's
// itemResultOf and Executor.Execute): a failed item is failed, an
// unchanged or foreign one unchanged, any other written (deletes too).
func brokerMetadata(results []*secretbrokerv1.SyncSecretsResult, total int) *secretbrokerv1.OperationMetadata {
	md := &secretbrokerv1.OperationMetadata{Kind: kindSync, Total: int32(total), Remaining: int32(total - len(results))}
	for _, r := range results {
		switch {
		case r.GetCode() != code.Code_OK:
			md.Failed++
		case r.GetAction() == actUnchanged, r.GetAction() == actForeign:
			md.Unchanged++
		default:
			md.Written++
		}
	}
	return md
}

// plantedStages are a sync operation over items as the broker shows it:
// the items decided when it is accepted (unchanged, foreign, refused) are
// results from the start, then the others finish one at a time; results
// sorted by name, and the metadata as the broker counts them.
func plantedStages(name string, items []*secretbrokerv1.SyncSecretsResult) []*secretbrokerv1.Operation {
	var first, rest []*secretbrokerv1.SyncSecretsResult
	for _, r := range items {
		if a := r.GetAction(); r.GetCode() != code.Code_OK || a == actUnchanged || a == actForeign {
			first = append(first, r)
		} else {
			rest = append(rest, r)
		}
	}
	var stages []*secretbrokerv1.Operation
	for i := 0; i <= len(rest); i++ {
		done := slices.Concat(first, rest[:i])
		slices.SortFunc(done, func(a, b *secretbrokerv1.SyncSecretsResult) int { return strings.Compare(a.GetName(), b.GetName()) })
		op := &secretbrokerv1.Operation{Name: name, Done: i == len(rest), Metadata: brokerMetadata(done, len(items))}
		if len(done) > 0 {
			op.Response = &secretbrokerv1.OperationResponse{SyncResults: done}
		}
		stages = append(stages, op)
	}
	return stages
}

// plantedOps is a broker whose sync plans items and runs them as the
// operation stages: the async SyncSecrets answers the first stage, each
// WaitOperation the next; GetOperation and ListOperations show the last.
type plantedOps struct {
	secretbrokerv1.UnimplementedSecretServiceServer
	plan   []*secretbrokerv1.SyncSecretsResult
	stages []*secretbrokerv1.Operation

	mu   sync.Mutex
	next int
}

func (p *plantedOps) SyncSecrets(_ context.Context, req *secretbrokerv1.SyncSecretsRequest) (*secretbrokerv1.SyncSecretsResponse, error) {
	if !req.GetAsync() {
		return &secretbrokerv1.SyncSecretsResponse{DryRun: req.GetDryRun(), Results: p.plan}, nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.next = 1
	return &secretbrokerv1.SyncSecretsResponse{Operation: p.stages[0]}, nil
}

func (p *plantedOps) WaitOperation(_ context.Context, req *secretbrokerv1.WaitOperationRequest) (*secretbrokerv1.Operation, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if req.GetName() != p.last().GetName() {
		return nil, status.Error(codes.NotFound, "no such operation")
	}
	op := p.stages[min(p.next, len(p.stages)-1)]
	p.next++
	return op, nil
}

func (p *plantedOps) GetOperation(_ context.Context, req *secretbrokerv1.GetOperationRequest) (*secretbrokerv1.Operation, error) {
	if req.GetName() != p.last().GetName() {
		return nil, status.Error(codes.NotFound, "no such operation")
	}
	return p.last(), nil
}

func (p *plantedOps) ListOperations(context.Context, *secretbrokerv1.ListOperationsRequest) (*secretbrokerv1.ListOperationsResponse, error) {
	return &secretbrokerv1.ListOperationsResponse{Operations: []*secretbrokerv1.Operation{p.last()}}, nil
}

func (p *plantedOps) last() *secretbrokerv1.Operation { return p.stages[len(p.stages)-1] }

// TestOperationCountsAgree runs a sync of planted items (written,
// unchanged, deleted, foreign, failed) against a broker that reports them
// as the real one does, then shows its operation with op and ops: the
// progress lines, op's DONE row and ops' columns count the items in the
// summary's categories, with the summary's numbers; the broker's
// metadata alone counts deletes as written and foreign items as
// unchanged.
func TestOperationCountsAgree(t *testing.T) {
	for _, tc := range []struct {
		name  string
		items []*secretbrokerv1.SyncSecretsResult
		code  int
		// summary is sync's summary line; each progress line shows
		// "DONE/TOTAL done (COUNTS)" with the counts the same way.
		summary  string
		progress []string
		// done is op's DONE row; ops its row's columns from DONE to FAILED.
		done string
		ops  string
	}{
		{
			name: "written, unchanged, deleted, foreign and failed",
			items: []*secretbrokerv1.SyncSecretsResult{
				syncItem("A_NEW", actCreate, code.Code_OK),
				syncItem("B_UPD", actUpdate, code.Code_OK),
				syncItem("C_SAME", actUnchanged, code.Code_OK),
				syncItem("D_GONE", actDelete, code.Code_OK),
				syncItem("E_THEIRS", actForeign, code.Code_OK),
				syncItem("F_TAKEN", actConflict, code.Code_FAILED_PRECONDITION),
			},
			code:    exitFail,
			summary: "2 written, 1 deleted, 1 unchanged, 1 failed; 1 foreign left alone",
			progress: []string{
				"3/6 done (0 written, 0 deleted, 1 unchanged, 1 failed; 1 foreign left alone)",
				"4/6 done (1 written, 0 deleted, 1 unchanged, 1 failed; 1 foreign left alone)",
				"5/6 done (2 written, 0 deleted, 1 unchanged, 1 failed; 1 foreign left alone)",
				"6/6 done (2 written, 1 deleted, 1 unchanged, 1 failed; 1 foreign left alone)",
			},
			done: "6/6 (2 written, 1 deleted, 1 unchanged, 1 failed; 1 foreign left alone)",
			ops:  "6/6 2 1 1 1 1",
		},
		{
			name: "deletes and foreign items only",
			items: []*secretbrokerv1.SyncSecretsResult{
				syncItem("OLD_ONE", actDelete, code.Code_OK),
				syncItem("OLD_TWO", actDelete, code.Code_OK),
				syncItem("THEIRS", actForeign, code.Code_OK),
			},
			code:    exitOK,
			summary: "0 written, 2 deleted, 0 unchanged, 0 failed; 1 foreign left alone",
			progress: []string{
				"1/3 done (0 written, 0 deleted, 0 unchanged, 0 failed; 1 foreign left alone)",
				"2/3 done (0 written, 1 deleted, 0 unchanged, 0 failed; 1 foreign left alone)",
				"3/3 done (0 written, 2 deleted, 0 unchanged, 0 failed; 1 foreign left alone)",
			},
			done: "3/3 (0 written, 2 deleted, 0 unchanged, 0 failed; 1 foreign left alone)",
			ops:  "3/3 0 2 0 1 0",
		},
		{
			name: "written and unchanged only",
			items: []*secretbrokerv1.SyncSecretsResult{
				syncItem("NEW", actCreate, code.Code_OK),
				syncItem("SAME", actUnchanged, code.Code_OK),
			},
			code:    exitOK,
			summary: "1 written, 0 deleted, 1 unchanged, 0 failed; 0 foreign left alone",
			progress: []string{
				"1/2 done (0 written, 0 deleted, 1 unchanged, 0 failed; 0 foreign left alone)",
				"2/2 done (1 written, 0 deleted, 1 unchanged, 0 failed; 0 foreign left alone)",
			},
			done: "2/2 (1 written, 0 deleted, 1 unchanged, 0 failed; 0 foreign left alone)",
			ops:  "2/2 1 0 1 0 0",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const opName = "operations/planted-1"
			p := &plantedOps{plan: tc.items, stages: plantedStages(opName, tc.items)}
			b := startBroker(t, brokerOpts{auth: true, server: p})
			file := writeFile(t, "app.env", []byte("A_NEW="+plantedValue+"\n"))

			// The clock moves 5s at each reading: every stage gets its line.
			r := ctlClock(t.Context(), t, b.env(), strings.NewReader(""), noTerminal{}, stepClock(plainEvery),
				"sync", "--from-env-file", file, "--prune", "--yes", repoScope)
			wantCode(t, r, tc.code)
			label := "sync " + repoScope + ": "
			var progress []string
			summary := false
			for l := range strings.Lines(r.stdout) {
				l = strings.TrimSuffix(l, "\n")
				if rest, ok := strings.CutPrefix(l, label); ok {
					counted, _, _ := strings.Cut(rest, "), ")
					progress = append(progress, counted+")")
				}
				summary = summary || l == tc.summary
			}
			if !summary {
				t.Errorf("no summary %q:\n%s", tc.summary, r.stdout)
			}
			if !slices.Equal(progress, tc.progress) {
				t.Errorf("progress lines:\n%s\nwant:\n%s", strings.Join(progress, "\n"), strings.Join(tc.progress, "\n"))
			}

			r = ctl(t, b.env(), "", "op", opName)
			wantCode(t, r, exitOK)
			var done string
			for l := range strings.Lines(r.stdout) {
				if rest, ok := strings.CutPrefix(l, "DONE"); ok {
					done = strings.TrimSpace(rest)
				}
			}
			if done != tc.done {
				t.Errorf("op's DONE %q, want %q:\n%s", done, tc.done, r.stdout)
			}

			r = ctl(t, b.env(), "", "ops")
			wantCode(t, r, exitOK)
			lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
			if len(lines) != 2 {
				t.Fatalf("ops:\n%s", r.stdout)
			}
			head, row := strings.Fields(lines[0]), strings.Fields(lines[1])
			if want := "DONE WRITTEN DELETED UNCHANGED FOREIGN FAILED"; len(head) < 9 || strings.Join(head[3:9], " ") != want {
				t.Fatalf("ops header %q, want the columns %q", lines[0], want)
			}
			if len(row) < 9 || row[0] != opName || strings.Join(row[3:9], " ") != tc.ops {
				t.Errorf("ops row %q, want %s with %q", lines[1], opName, tc.ops)
			}
		})
	}
}

// TestCountsOf counts operations' items in the summary's categories, from
// their results; from the metadata only when there are no results that
// match it, saying a sync's writes and deletes, and its unchanged and
// foreign items, together.
func TestCountsOf(t *testing.T) {
	syncItems := []*secretbrokerv1.SyncSecretsResult{
		syncItem("A", actCreate, code.Code_OK),
		syncItem("B", actDelete, code.Code_OK),
		syncItem("C", actUnchanged, code.Code_OK),
		syncItem("D", actForeign, code.Code_OK),
		syncItem("E", actConflict, code.Code_FAILED_PRECONDITION),
	}
	batchItems := []*secretbrokerv1.BatchPutSecretsResult{
		{Name: "a", Created: true},
		{Name: "b"},
		{Name: "c", Unchanged: true},
		{Name: "d", Code: code.Code_INVALID_ARGUMENT},
	}
	batchMD := &secretbrokerv1.OperationMetadata{Kind: kindBatch, Total: 6, Written: 2, Unchanged: 1, Failed: 1, Remaining: 2}
	for _, tc := range []struct {
		name     string
		op       *secretbrokerv1.Operation
		want     counts
		outcomes string
		cells    string
	}{
		{
			name: "sync running: its results",
			op: &secretbrokerv1.Operation{Metadata: brokerMetadata(syncItems[1:4], 5),
				Response: &secretbrokerv1.OperationResponse{SyncResults: syncItems[1:4]}},
			want:     counts{total: 5, done: 3, deleted: 1, unchanged: 1, foreign: 1, sync: true},
			outcomes: "0 written, 1 deleted, 1 unchanged, 0 failed; 1 foreign left alone",
			cells:    "0 1 1 1 0",
		},
		{
			name: "sync done: its results",
			op: &secretbrokerv1.Operation{Done: true, Metadata: brokerMetadata(syncItems, 5),
				Response: &secretbrokerv1.OperationResponse{SyncResults: syncItems}},
			want:     counts{total: 5, done: 5, written: 1, deleted: 1, unchanged: 1, foreign: 1, failed: 1, sync: true},
			outcomes: "1 written, 1 deleted, 1 unchanged, 1 failed; 1 foreign left alone",
			cells:    "1 1 1 1 1",
		},
		{
			name: "sync without kind (its results tell)",
			op: &secretbrokerv1.Operation{Done: true, Metadata: &secretbrokerv1.OperationMetadata{Total: 2, Written: 2},
				Response: &secretbrokerv1.OperationResponse{SyncResults: syncItems[:2]}},
			want:     counts{total: 2, done: 2, written: 1, deleted: 1, sync: true},
			outcomes: "1 written, 1 deleted, 0 unchanged, 0 failed; 0 foreign left alone",
			cells:    "1 1 0 0 0",
		},
		{
			name:     "sync without results: the metadata's counts, merged",
			op:       &secretbrokerv1.Operation{Metadata: brokerMetadata(syncItems[:4], 5)},
			want:     counts{total: 5, done: 4, written: 2, unchanged: 2, sync: true, merged: true},
			outcomes: "2 written or deleted, 2 unchanged or foreign, 0 failed",
			cells:    "- - - - 0",
		},
		{
			name: "sync whose results lag its metadata: the metadata's, merged",
			op: &secretbrokerv1.Operation{Metadata: brokerMetadata(syncItems[:4], 5),
				Response: &secretbrokerv1.OperationResponse{SyncResults: syncItems[:1]}},
			want:     counts{total: 5, done: 4, written: 2, unchanged: 2, sync: true, merged: true},
			outcomes: "2 written or deleted, 2 unchanged or foreign, 0 failed",
			cells:    "- - - - 0",
		},
		{
			name:     "sync not started",
			op:       &secretbrokerv1.Operation{Metadata: &secretbrokerv1.OperationMetadata{Kind: kindSync, Total: 3, Remaining: 3}},
			want:     counts{total: 3, sync: true},
			outcomes: "0 written, 0 deleted, 0 unchanged, 0 failed; 0 foreign left alone",
			cells:    "0 0 0 0 0",
		},
		{
			name:     "batch: its results",
			op:       &secretbrokerv1.Operation{Metadata: batchMD, Response: &secretbrokerv1.OperationResponse{BatchPutResults: batchItems}},
			want:     counts{total: 6, done: 4, written: 2, unchanged: 1, failed: 1},
			outcomes: "2 written, 1 unchanged, 1 failed",
			cells:    "2 - 1 - 1",
		},
		{
			name:     "batch without results: its metadata counts the same",
			op:       &secretbrokerv1.Operation{Metadata: batchMD},
			want:     counts{total: 6, done: 4, written: 2, unchanged: 1, failed: 1},
			outcomes: "2 written, 1 unchanged, 1 failed",
			cells:    "2 - 1 - 1",
		},
		{
			name:     "remaining counts items done beyond the counters",
			op:       &secretbrokerv1.Operation{Metadata: &secretbrokerv1.OperationMetadata{Kind: kindBatch, Total: 6, Written: 1, Remaining: 2}},
			want:     counts{total: 6, done: 4, written: 1},
			outcomes: "1 written, 0 unchanged, 0 failed",
			cells:    "1 - 0 - 0",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := countsOf(tc.op)
			if k != tc.want {
				t.Errorf("countsOf = %+v, want %+v", k, tc.want)
			}
			if got := k.outcomes(); got != tc.outcomes {
				t.Errorf("outcomes %q, want %q", got, tc.outcomes)
			}
			if got := strings.Join(k.cells(), " "); got != tc.cells {
				t.Errorf("cells %q, want %q", got, tc.cells)
			}
		})
	}
	// The summary's count of a done sync's results is its operation's.
	done := &secretbrokerv1.Operation{Done: true, Metadata: brokerMetadata(syncItems, 5),
		Response: &secretbrokerv1.OperationResponse{SyncResults: syncItems}}
	if got, want := countItems(&secretbrokerv1.OperationResponse{SyncResults: syncItems}, true).outcomes(), countsOf(done).outcomes(); got != want {
		t.Errorf("summary %q, operation %q", got, want)
	}
}
