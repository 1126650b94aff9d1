package service

// What a synchronous batch or sync answers, and audits, of an item whose
// write the shutdown's drain cut short after GitHub was sent it.

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/service/audit"
	"github.com/secretbroker/secretbroker/upstream"
	"github.com/secretbroker/secretbroker/upstream/emulator"
)

// itemAnswer is one item of a batch's or a sync's answer.
type itemAnswer struct {
	name  string // the secret's name, without its scope
	code  code.Code
	msg   string
	retry *durationpb.Duration
}

func answerOf(res string, c code.Code, msg string, retry *durationpb.Duration) itemAnswer {
	_, name, _ := strings.Cut(res, "/secrets/")
	return itemAnswer{name: name, code: c, msg: msg, retry: retry}
}

// TestDrainedWriteSentIsAborted: the shutdown's drain (the call's context
// cancelled while the call still answers) told an item of a synchronous
// batch or sync whose PUT or DELETE GitHub had been sent, with no answer
// yet, "send it again" (UNAVAILABLE with a retry delay), as if it had not
// been sent, and its audit outcome said CANCELLED, while GitHub may have
// applied it. Such an item is ABORTED now, as an operation's item its
// cancel cuts short: GitHub may have applied it, in the answer and in the
// audit trail. An item never sent is still UNAVAILABLE, to be sent again.
func TestDrainedWriteSentIsAborted(t *testing.T) {
	batchPut, batchDelete, sync := itemCalls([]string{"A", "B"})
	tests := []struct {
		name string
		// before writes these secrets (through a sync by "team") before
		// the fault is set.
		before []string
		// fault is the fault of the write the drain cuts short (Arrived
		// is the test's).
		fault  emulator.Fault
		method string // the faulted request's method
		call   itemCall
		// ok are the items answered OK; of the others the one whose
		// request reached GitHub is ABORTED, the rest UNAVAILABLE.
		ok      []string
		items   []string
		applied bool // GitHub applied the write the drain cut short
	}{
		{name: "batch put in flight",
			fault:  emulator.Fault{Route: emulator.RoutePutRepoSecret, Latency: time.Hour},
			method: http.MethodPut, call: batchPut, items: []string{"A", "B"}},
		{name: "batch put answer lost, retry waiting",
			fault:  emulator.Fault{Route: emulator.RoutePutRepoSecret, DropAfter: true},
			method: http.MethodPut, call: batchPut, items: []string{"A", "B"}, applied: true},
		{name: "batch delete in flight", before: []string{"A", "B"},
			fault:  emulator.Fault{Route: emulator.RouteDeleteRepoSecret, Latency: time.Hour},
			method: http.MethodDelete, call: batchDelete, items: []string{"A", "B"}},
		{name: "sync write in flight",
			fault:  emulator.Fault{Route: emulator.RoutePutRepoSecret, Latency: time.Hour},
			method: http.MethodPut, call: sync(false), items: []string{"A", "B"}},
		{name: "sync prune delete in flight", before: []string{"OLD_1", "OLD_2"},
			fault:  emulator.Fault{Route: emulator.RouteDeleteRepoSecret, Latency: time.Hour},
			method: http.MethodDelete, call: sync(true), ok: []string{"KEEP"}, items: []string{"OLD_1", "OLD_2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				pacing := upstream.DefaultPacing()
				pacing.WriteInterval = 100 * time.Second // the next write waits for the slot
				var trail syncBuffer
				h := newHarness(t, harnessOpts{pacing: &pacing, audit: audit.NewWriter(&trail, nil)})
				if len(tt.before) > 0 {
					secrets := map[string]string{}
					for _, n := range tt.before {
						secrets[n] = plantedSecret + "-" + n
					}
					if _, err := h.server.SyncSecrets(t.Context(), syncReq(repoScope, "team", secrets)); err != nil {
						t.Fatal(err)
					}
				}
				h.upstream.mu.Lock()
				h.upstream.sent = nil
				h.upstream.mu.Unlock()
				arrived := make(chan struct{}, 1)
				fault := tt.fault
				fault.Arrived = arrived
				h.emu.InjectFault(fault)

				// The drain: the call's context ends, with ErrDrained as
				// its cause, while the call goes on to answer
				// (cmd/secretbroker's callDrain).
				ctx, drain := context.WithCancelCause(t.Context())
				defer drain(nil)
				answered := make(chan []itemAnswer, 1)
				go func() { answered <- tt.call(ctx, t, h) }()
				<-arrived
				synctest.Wait() // the write in flight (or its retry waiting), the next waiting for the slot
				drain(ErrDrained)
				got := <-answered

				var sent []string
				for _, c := range h.upstream.calls(tt.method) {
					sent = append(sent, c.path[strings.LastIndexByte(c.path, '/')+1:])
				}
				if len(sent) != 1 || !slices.Contains(tt.items, sent[0]) {
					t.Fatalf("%s requests %v, want one of the items %v", tt.method, sent, tt.items)
				}
				want := map[string]string{}
				for _, n := range tt.ok {
					want[n] = "OK"
				}
				for _, n := range tt.items {
					want[n] = "UNAVAILABLE"
					if n == sent[0] {
						want[n] = "ABORTED"
					}
				}
				if len(got) != len(want) {
					t.Fatalf("answers %v, want %v", got, want)
				}
				for _, a := range got {
					switch w := want[a.name]; {
					case a.code.String() != w:
						t.Errorf("%s: %s %q, want %s", a.name, a.code, a.msg, w)
					case w == "ABORTED" && (!strings.Contains(a.msg, "GitHub may have applied it") || a.retry != nil):
						t.Errorf("%s: %q, retry %v; want GitHub may have applied it, no retry delay", a.name, a.msg, a.retry)
					case w == "UNAVAILABLE" && (!strings.Contains(a.msg, "send it again") || a.retry.AsDuration() != RetryShutdown):
						t.Errorf("%s: %q, retry %v; want send it again, after %s", a.name, a.msg, a.retry, RetryShutdown)
					}
				}
				if tt.applied {
					wantStored(t, h, repoScope+"/secrets/"+sent[0], plantedSecret+"-"+sent[0])
				}

				// Each item's outcome record holds its answer's code: the
				// item never sent is UNAVAILABLE (it was CANCELLED, while
				// its caller was told UNAVAILABLE), the one GitHub may
				// have applied ABORTED.
				outcomes := outcomesOf(t, &trail)
				for n, w := range want {
					if got := outcomes[n]; len(got) == 0 || got[len(got)-1] != w {
						t.Errorf("%s: audit outcomes %v, want the last %s", n, got, w)
					}
				}
			})
		})
	}
}

// TestStoppedSingleWriteSentIsAborted: a single write (PutSecret,
// DeleteSecret, a change of a secret's selected repositories) whose
// context ends while GitHub has its request, with no answer yet, is
// answered ABORTED, GitHub may have applied it, and its outcome record
// says ABORTED, the answer. The drain (its context's cause ErrDrained)
// made it answer CANCELLED, which cmd/secretbroker's callDrain turns into
// UNAVAILABLE "send it again", as if nothing had been sent, while its
// outcome record said ABORTED. A write the drain stops before anything
// was sent is still UNAVAILABLE (TestDrainedCallOutcomeIsItsAnswer).
func TestStoppedSingleWriteSentIsAborted(t *testing.T) {
	const single = orgScope + "/secrets/SINGLE"
	tests := []struct {
		name  string
		route string
		call  func(ctx context.Context, h *harness) error
	}{
		{"put", emulator.RoutePutOrgSecret, func(ctx context.Context, h *harness) error {
			_, err := h.server.PutSecret(ctx, orgPut(single, plantedSecret, "selected"))
			return err
		}},
		{"delete", emulator.RouteDeleteOrgSecret, func(ctx context.Context, h *harness) error {
			_, err := h.server.DeleteSecret(ctx, &secretbrokerv1.DeleteSecretRequest{Name: single})
			return err
		}},
		{"add repository", emulator.RouteAddSelectedRepo, func(ctx context.Context, h *harness) error {
			_, err := h.server.AddSelectedRepository(ctx, &secretbrokerv1.AddSelectedRepositoryRequest{Name: single, RepositoryId: h.repoID(t, "docs")})
			return err
		}},
	}
	for _, tt := range tests {
		for _, drained := range []bool{true, false} {
			name := tt.name + map[bool]string{true: ", drained", false: ", its caller gone"}[drained]
			t.Run(name, func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					var trail syncBuffer
					h := newHarness(t, harnessOpts{audit: audit.NewWriter(&trail, nil)})
					if _, err := h.server.PutSecret(t.Context(), orgPut(single, plantedSecret+"-before", "selected")); err != nil {
						t.Fatal(err)
					}
					arrived := make(chan struct{}, 1)
					h.emu.InjectFault(emulator.Fault{Route: tt.route, Latency: time.Hour, Arrived: arrived})
					ctx, stop := context.WithCancelCause(t.Context())
					defer stop(nil)
					answered := make(chan error, 1)
					go func() { answered <- tt.call(ctx, h) }()
					<-arrived
					synctest.Wait()
					stopped := "the call was cancelled"
					if drained {
						stop(ErrDrained)
						stopped = "the broker is shutting down and stopped the call"
					} else {
						stop(context.Canceled)
					}
					err := <-answered
					st := status.Convert(err)
					if st.Code() != codes.Aborted || !strings.HasPrefix(st.Message(), stopped+" after GitHub was sent") ||
						!strings.Contains(st.Message(), "GitHub may have applied it") || retryAfterOf(st) != nil {
						t.Errorf("the call answered %v (details %v), want ABORTED: %s, GitHub may have applied it, no retry delay", err, st.Details(), stopped)
					}
					if got := outcomesOf(t, &trail)["SINGLE"]; !slices.Equal(got, []string{"OK", "ABORTED"}) {
						t.Errorf("SINGLE's audit outcomes %v, want [OK ABORTED]", got)
					}
				})
			})
		}
	}
}

// outcomesOf maps each secret's name (without its scope) to the outcomes
// of its outcome records in trail, in order.
func outcomesOf(t *testing.T, trail *syncBuffer) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for line := range strings.Lines(strings.TrimSpace(trail.String())) {
		var r audit.Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatal(err)
		}
		if _, name, ok := strings.Cut(r.Resource, "/secrets/"); ok && r.Phase == audit.PhaseOutcome {
			out[name] = append(out[name], r.Outcome)
		}
	}
	return out
}
