package service

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/grpc/codes"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/service/state"
	"github.com/secretbroker/secretbroker/upstream"
	"github.com/secretbroker/secretbroker/upstream/emulator"
)

// The tests below leave the broker's record of a secret behind a write in
// every way the audit found (an answer lost after GitHub applied the write,
// a record that cannot be written, a call whose context ends after the
// write, two writes of one secret whose answers come back out of order)
// and check that a put of the value the stale record describes is written
// again, never answered unchanged while GitHub holds another value.

// oldValue and newValue are the two values the tests write in turn;
// oldValue is the harness's planted value, so that the harness checks no
// log line (the record failures log at WARN) shows it.
const (
	oldValue = plantedSecret
	newValue = "new-value-Quokka-0815"
)

// mustHold fails t unless GitHub holds value for the repository secret name.
func mustHold(t *testing.T, h *harness, name, value string) {
	t.Helper()
	got, err := h.emu.Open(repoScope, name)
	if err != nil {
		t.Fatalf("open %s: %v", name, err)
	}
	if string(got) != value {
		t.Fatalf("GitHub holds %q for %s, want %q", got, name, value)
	}
}

// mustWriteOld puts oldValue again and checks that it was written, not
// answered unchanged, and that GitHub holds it afterwards.
func mustWriteOld(t *testing.T, h *harness, name string) {
	t.Helper()
	resp, err := h.broker.PutSecret(t.Context(), plain(repoScope+"/secrets/"+name, oldValue))
	if err != nil {
		t.Fatalf("put of the old value again: %v", err)
	}
	if resp.GetUnchanged() {
		t.Errorf("put of the old value again answered unchanged, from a stale record")
	}
	mustHold(t, h, name, oldValue)
}

// TestStaleRecordAfterFailedWrite loses a write's answer after GitHub
// applied it, so the call fails; the record of the previous value must not
// make a put of that value unchanged. It covers every path that writes:
// PutSecret, a batch item and an async batch item (the operation's
// Executor).
func TestStaleRecordAfterFailedWrite(t *testing.T) {
	const name = "AMBIG"
	sec := repoScope + "/secrets/" + name
	for _, tc := range []struct {
		name  string
		write func(t *testing.T, h *harness) // writes newValue; the write fails
	}{
		{"PutSecret", func(t *testing.T, h *harness) {
			if _, err := h.broker.PutSecret(t.Context(), plain(sec, newValue)); statusCode(err) != codes.Unavailable {
				t.Fatalf("put with its answer lost: %v, want Unavailable", err)
			}
		}},
		{"batch", func(t *testing.T, h *harness) {
			resp, err := h.broker.BatchPutSecrets(t.Context(), &secretbrokerv1.BatchPutSecretsRequest{
				Requests: []*secretbrokerv1.PutSecretRequest{plain(sec, newValue)}})
			if err != nil {
				t.Fatal(err)
			}
			if c := codes.Code(resp.GetResults()[0].GetCode()); c != codes.Unavailable {
				t.Fatalf("batch item with its answer lost: %v, want Unavailable", c)
			}
		}},
		{"async batch", func(t *testing.T, h *harness) {
			resp, err := h.broker.BatchPutSecrets(t.Context(), &secretbrokerv1.BatchPutSecretsRequest{Async: true,
				Requests: []*secretbrokerv1.PutSecretRequest{plain(sec, newValue)}})
			if err != nil {
				t.Fatal(err)
			}
			op := waitOp(t.Context(), t, h.broker, resp.GetOperation().GetName(), 0)
			rs := op.GetResponse().GetBatchPutResults()
			if !op.GetDone() || len(rs) != 1 || codes.Code(rs[0].GetCode()) != codes.Unavailable {
				t.Fatalf("async item with its answer lost: %v, want one Unavailable result", op)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				pacing := upstream.DefaultPacing()
				pacing.MaxAttempts = 2
				h := newHarness(t, harnessOpts{pacing: &pacing})
				closeOps(t, h.server)
				if _, err := h.broker.PutSecret(t.Context(), plain(sec, oldValue)); err != nil {
					t.Fatal(err)
				}
				time.Sleep(time.Second)
				// The first attempt lands but its answer is lost; the
				// retry fails: the caller is told the write failed.
				h.emu.InjectFault(emulator.Fault{Route: emulator.RoutePutRepoSecret, DropAfter: true})
				h.emu.InjectFault(emulator.Fault{Route: emulator.RoutePutRepoSecret, Status: 503})
				tc.write(t, h)
				mustHold(t, h, name, newValue)
				rec, err := h.server.state.store.GetRecord(t.Context(), sec)
				if err != nil {
					t.Fatalf("the record is gone (its owner with it): %v", err)
				}
				if rec.UpdatedKnown() || !rec.ValueFingerprint.IsZero() || rec.Owner != anonymousOwner {
					t.Errorf("record after the failed write: %+v; want no updated_at, no fingerprint, the owner kept", rec)
				}
				mustWriteOld(t, h, name)
			})
		})
	}
}

// flakyRecords is a state store that, once armed, fails the record
// writes failPut selects, and every removal with failDeletes, until healed.
type flakyRecords struct {
	state.Store

	failPut     func(r state.Record) bool
	failDeletes bool

	mu    sync.Mutex
	armed bool
}

var errInjected = errors.New("injected: store unavailable")

func (f *flakyRecords) set(armed bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.armed = armed
}

func (f *flakyRecords) isArmed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.armed
}

func (f *flakyRecords) PutRecord(ctx context.Context, r state.Record) error {
	if f.isArmed() && f.failPut(r) {
		return errInjected
	}
	return f.Store.PutRecord(ctx, r)
}

func (f *flakyRecords) DeleteRecord(ctx context.Context, name string) error {
	if f.isArmed() && f.failDeletes {
		return errInjected
	}
	return f.Store.DeleteRecord(ctx, name)
}

// TestStaleRecordAfterRecordFailure writes a new value whose record cannot
// be written; a put of the old value must be written again.
func TestStaleRecordAfterRecordFailure(t *testing.T) {
	const name = "RECFAIL"
	sec := repoScope + "/secrets/" + name
	for _, tc := range []struct {
		name        string
		failPut     func(r state.Record) bool
		failDeletes bool
	}{
		// The store refuses every record write: the record is removed
		// instead.
		{name: "every record write fails", failPut: func(state.Record) bool { return true }},
		// The record is distrusted before the write, then neither the
		// record of the write nor its removal can be stored: the
		// distrusted record stays.
		{name: "the record and its removal fail", failPut: func(r state.Record) bool { return !r.ValueFingerprint.IsZero() }, failDeletes: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				mem, err := state.NewMemory(state.Options{})
				if err != nil {
					t.Fatal(err)
				}
				st := &flakyRecords{Store: mem, failPut: tc.failPut, failDeletes: tc.failDeletes}
				h := newHarness(t, harnessOpts{state: st})
				if _, err := h.broker.PutSecret(t.Context(), plain(sec, oldValue)); err != nil {
					t.Fatal(err)
				}
				time.Sleep(time.Second)
				st.set(true)
				resp, err := h.broker.PutSecret(t.Context(), plain(sec, newValue))
				if err != nil || resp.GetUnchanged() {
					t.Fatalf("put of the new value: %v, %v; want written (a record failure never fails the call)", resp, err)
				}
				st.set(false)
				mustHold(t, h, name, newValue)
				if !strings.Contains(h.logs.String(), "record cannot be written") {
					t.Errorf("the record failure was not logged:\n%s", h.logs.String())
				}
				mustWriteOld(t, h, name)
			})
		})
	}
}

// cancelAfterPut cancels the call's context once its write has landed and
// been answered, as a caller hanging up at that moment would.
type cancelAfterPut struct {
	Upstream
	mu     sync.Mutex
	cancel context.CancelFunc
}

func (c *cancelAfterPut) PutSecretFunc(ctx context.Context, sc upstream.Scope, name string, body func() (upstream.PutSecretBody, error)) (upstream.Written, error) {
	w, err := c.Upstream.PutSecretFunc(ctx, sc, name, body)
	c.mu.Lock()
	if c.cancel != nil {
		c.cancel()
	}
	c.mu.Unlock()
	return w, err
}

// TestRecordWrittenAfterCallEnds ends the call's context between the write
// and its record: the record is still written (a store refuses writes on a
// done context), so a put of the old value is written again.
func TestRecordWrittenAfterCallEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const name = "HANGUP"
		sec := repoScope + "/secrets/" + name
		cp := &cancelAfterPut{}
		h := newHarness(t, harnessOpts{wrap: func(u Upstream) Upstream { cp.Upstream = u; return cp }})
		if _, err := h.broker.PutSecret(t.Context(), plain(sec, oldValue)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		cp.mu.Lock()
		cp.cancel = cancel
		cp.mu.Unlock()
		// In process: the service sees this very context end.
		_, _ = h.server.PutSecret(ctx, plain(sec, newValue))
		cp.mu.Lock()
		cp.cancel = nil
		cp.mu.Unlock()
		mustHold(t, h, name, newValue)
		rec, err := h.server.state.store.GetRecord(t.Context(), sec)
		if err != nil {
			t.Fatalf("no record of the new value: %v", err)
		}
		fp, err := h.server.state.fingerprinter(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if !rec.ValueFingerprint.Equal(fp.Value([]byte(newValue))) || !rec.UpdatedKnown() {
			t.Errorf("record after the call ended: %+v; want the new value's, with updated_at", rec)
		}
		mustWriteOld(t, h, name)
	})
}

// slowFirstAnswer delays the answer of the first write it sees while armed
// (the write has landed at GitHub; only its answer is slow). It is used in
// a synctest bubble only: the delay is fake time.
type slowFirstAnswer struct {
	Upstream
	mu    sync.Mutex
	armed bool
	sent  chan struct{} // closed when the slow write has landed
}

func (s *slowFirstAnswer) PutSecretFunc(ctx context.Context, sc upstream.Scope, name string, body func() (upstream.PutSecretBody, error)) (upstream.Written, error) {
	w, err := s.Upstream.PutSecretFunc(ctx, sc, name, body)
	s.mu.Lock()
	slow := s.armed
	s.armed = false
	s.mu.Unlock()
	if slow {
		close(s.sent)
		time.Sleep(1500 * time.Millisecond)
	}
	return w, err
}

// TestRecordOrderOfConcurrentWrites writes A and then B to one secret at
// the same time, A's answer slow: the record must end up B's, as GitHub
// holds B, so that a put of A is written again. A is sent by PutSecret, by
// a batch or by putRecorded (the path for an operation's Executor); B by
// PutSecret.
func TestRecordOrderOfConcurrentWrites(t *testing.T) {
	const name = "RACE"
	sec := repoScope + "/secrets/" + name
	for _, tc := range []struct {
		name  string
		first func(ctx context.Context, h *harness, value string) error
	}{
		{"PutSecret then PutSecret", putA},
		{"batch then PutSecret", batchA},
		{"putRecorded then PutSecret", putRecordedA},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				slow := &slowFirstAnswer{sent: make(chan struct{})}
				h := newHarness(t, harnessOpts{wrap: func(u Upstream) Upstream { slow.Upstream = u; return slow }})
				if _, err := h.broker.PutSecret(t.Context(), plain(sec, "v0")); err != nil {
					t.Fatal(err)
				}
				time.Sleep(3 * time.Second)
				slow.mu.Lock()
				slow.armed = true
				slow.mu.Unlock()
				var wg sync.WaitGroup
				wg.Go(func() {
					if err := tc.first(t.Context(), h, "A-value"); err != nil {
						t.Error(err)
					}
				})
				<-slow.sent // A has landed; its answer is on its way
				wg.Go(func() {
					if _, err := h.broker.PutSecret(t.Context(), plain(sec, "B-value")); err != nil {
						t.Error(err)
					}
				})
				wg.Wait()
				mustHold(t, h, name, "B-value")
				resp, err := h.broker.PutSecret(t.Context(), plain(sec, "A-value"))
				if err != nil {
					t.Fatal(err)
				}
				if resp.GetUnchanged() {
					t.Errorf("put of A again answered unchanged; GitHub held B")
				}
				mustHold(t, h, name, "A-value")
				if n := h.server.state.writes.size(); n != 0 {
					t.Errorf("%d write locks left after the writes", n)
				}
			})
		})
	}
}

func putA(ctx context.Context, h *harness, value string) error {
	_, err := h.broker.PutSecret(ctx, plain(repoScope+"/secrets/RACE", value))
	return err
}

func batchA(ctx context.Context, h *harness, value string) error {
	resp, err := h.broker.BatchPutSecrets(ctx, &secretbrokerv1.BatchPutSecretsRequest{
		Requests: []*secretbrokerv1.PutSecretRequest{plain(repoScope+"/secrets/RACE", value)}})
	if err != nil {
		return err
	}
	if c := codes.Code(resp.GetResults()[0].GetCode()); c != codes.OK {
		return errors.New("batch item A: " + c.String())
	}
	return nil
}

func putRecordedA(ctx context.Context, h *harness, value string) error {
	p, err := parsePut(plain(repoScope+"/secrets/RACE", value), nil)
	if err != nil {
		return err
	}
	pr, ok := h.server.printsOf(ctx, &p)
	_, _, err = h.server.putRecorded(ctx, &p, recordOf{prints: pr, havePrints: ok, owner: "ops"})
	return err
}

// TestSecretLocks checks the write locks: one holder per key at a time,
// other keys free meanwhile, a wait that ends with its context, and no
// entry left once every holder and waiter is gone.
func TestSecretLocks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var l secretLocks
		unlock, err := l.lock(t.Context(), "a")
		if err != nil {
			t.Fatal(err)
		}
		other, err := l.lock(t.Context(), "b")
		if err != nil {
			t.Fatalf("another key waits for a held one: %v", err)
		}
		other()

		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		start := time.Now()
		if _, err := l.lock(ctx, "a"); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("lock of a held key with a deadline: %v, want DeadlineExceeded", err)
		}
		if waited := time.Since(start); waited != time.Second {
			t.Errorf("waited %v for a held key, want the deadline (1s)", waited)
		}

		got := make(chan time.Time)
		go func() {
			u, err := l.lock(t.Context(), "a")
			if err != nil {
				t.Error(err)
				close(got)
				return
			}
			got <- time.Now()
			u()
		}()
		synctest.Wait()
		if n := l.size(); n != 1 {
			t.Errorf("%d entries while a key is held and waited for, want 1", n)
		}
		time.Sleep(time.Minute)
		released := time.Now()
		unlock()
		unlock() // a second call does nothing
		if at := <-got; !at.Equal(released) {
			t.Errorf("the waiter got the lock at %v, want when it was released (%v)", at, released)
		}
		synctest.Wait()
		if n := l.size(); n != 0 {
			t.Errorf("%d entries left, want 0", n)
		}
	})
}
