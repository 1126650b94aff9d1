package main

import (
	"fmt"
	"strconv"

	"google.golang.org/genproto/googleapis/rpc/code"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
)

// An operation's OperationMetadata.kind.
const (
	kindSync  = "SyncSecrets"
	kindBatch = "BatchPutSecrets"
)

// counts are an operation's items by outcome, in sync's summary's
// categories: written (created, updated, drifted, taken over), deleted,
// unchanged, foreign (another owner's, left alone) and failed; a batch has
// no deletes and no foreign items. The progress line, op, ops and sync's
// summary all take them from countItems (countsOf for an operation) and
// show them with outcomes, so that they never disagree.
type counts struct {
	total, done                                  int
	written, deleted, unchanged, foreign, failed int
	// sync: a sync's items (deletes and foreign items have counts of
	// their own), not a batch's.
	sync bool
	// merged: the counts are the operation metadata's, for want of the
	// items' results, which alone tell a sync's deletes from its writes
	// and its foreign items from its unchanged ones: written holds the
	// deletes too and unchanged the foreign items; deleted and foreign are
	// unknown (0).
	merged bool
}

// countItems counts the results in resp: sync's for a sync, else the
// batch's. Total and done are the number of results of items run: those
// of the items an operation ended without running (notRun) count in
// neither.
func countItems(resp *secretbrokerv1.OperationResponse, sync bool) counts {
	k := counts{sync: sync}
	if sync {
		for _, r := range resp.GetSyncResults() {
			switch {
			case notRun(r.GetCode()):
			case r.GetCode() != code.Code_OK:
				k.failed++
			case r.GetAction() == secretbrokerv1.SyncAction_SYNC_ACTION_UNCHANGED:
				k.unchanged++
			case r.GetAction() == secretbrokerv1.SyncAction_SYNC_ACTION_FOREIGN:
				k.foreign++
			case r.GetAction() == secretbrokerv1.SyncAction_SYNC_ACTION_DELETE:
				k.deleted++
			default:
				k.written++
			}
		}
	} else {
		for _, r := range resp.GetBatchPutResults() {
			switch {
			case notRun(r.GetCode()):
			case r.GetCode() != code.Code_OK:
				k.failed++
			case r.GetUnchanged():
				k.unchanged++
			default:
				k.written++
			}
		}
	}
	k.done = k.written + k.deleted + k.unchanged + k.foreign + k.failed
	k.total = k.done
	return k
}

// notRun reports whether an operation's item result is that of an item
// the operation ended without running: CANCELLED, which no item that ran
// is (the API says so). A done operation has one result per item, these
// included.
func notRun(c code.Code) bool {
	return c == code.Code_CANCELLED
}

// countsOf counts op's items. The categories come from the items' results
// (the broker sends those of the finished items with every answer): its
// metadata counts a sync's deletes as written and its foreign items as
// unchanged (OperationMetadata.written and unchanged), so that on its own
// it cannot tell them apart. Only when the results do not match the
// metadata's finished items (a broker that sends no results before the
// end) are the metadata's counts shown, merged. Total and done are the
// metadata's (done: at least total - remaining).
func countsOf(op *secretbrokerv1.Operation) counts {
	md, resp := op.GetMetadata(), op.GetResponse()
	sync := md.GetKind() != kindBatch && len(resp.GetBatchPutResults()) == 0
	n := len(resp.GetBatchPutResults())
	if sync {
		n = len(resp.GetSyncResults())
	}
	finished := int(md.GetWritten()) + int(md.GetUnchanged()) + int(md.GetFailed())
	var k counts
	if n == finished || (op.GetDone() && n > 0) { // complete when done
		k = countItems(resp, sync)
	} else {
		k = counts{
			sync:      sync,
			merged:    sync,
			written:   int(md.GetWritten()),
			unchanged: int(md.GetUnchanged()),
			failed:    int(md.GetFailed()),
		}
		k.done = k.written + k.unchanged + k.failed
	}
	k.total = int(md.GetTotal())
	if r := int(md.GetRemaining()); k.total-r > k.done {
		k.done = k.total - r
	}
	if k.done > k.total {
		k.total = k.done
	}
	return k
}

// outcomes is k as sync's summary says it: "2 written, 1 deleted, 1
// unchanged, 0 failed; 1 foreign left alone"; a batch's "2 written, 1
// unchanged, 0 failed"; merged, "3 written or deleted, 2 unchanged or
// foreign, 0 failed".
func (k counts) outcomes() string {
	switch {
	case k.merged:
		return fmt.Sprintf("%d written or deleted, %d unchanged or foreign, %d failed", k.written, k.unchanged, k.failed)
	case k.sync:
		return fmt.Sprintf("%d written, %d deleted, %d unchanged, %d failed; %d foreign left alone",
			k.written, k.deleted, k.unchanged, k.failed, k.foreign)
	default:
		return fmt.Sprintf("%d written, %d unchanged, %d failed", k.written, k.unchanged, k.failed)
	}
}

// cells are k's WRITTEN, DELETED, UNCHANGED, FOREIGN and FAILED columns
// (ops): "-" where a count does not apply (a batch's deletes and foreign
// items) or is not known (merged: every count but failed).
func (k counts) cells() []string {
	n := strconv.Itoa
	switch {
	case k.merged:
		return []string{"-", "-", "-", "-", n(k.failed)}
	case k.sync:
		return []string{n(k.written), n(k.deleted), n(k.unchanged), n(k.foreign), n(k.failed)}
	default:
		return []string{n(k.written), "-", n(k.unchanged), "-", n(k.failed)}
	}
}

// summary is k as sync's JSON summary.
func (k counts) summary() syncSummary {
	return syncSummary{Written: k.written, Deleted: k.deleted, Unchanged: k.unchanged, Foreign: k.foreign, Failed: k.failed}
}
