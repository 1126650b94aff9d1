package service

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc/codes"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/upstream"
	"github.com/secretbroker/secretbroker/upstream/emulator"
)

// keyFetches is how many public-key requests the emulator served.
func keyFetches(h *harness) int {
	return h.emu.Count(emulator.RouteGetOrgPublicKey) + h.emu.Count(emulator.RouteGetRepoPublicKey) +
		h.emu.Count(emulator.RouteGetEnvPublicKey)
}

// puts is how many secret PUT requests the emulator served.
func puts(h *harness) int {
	return h.emu.Count(emulator.RoutePutOrgSecret) + h.emu.Count(emulator.RoutePutRepoSecret) +
		h.emu.Count(emulator.RoutePutEnvSecret)
}

func plain(name, value string) *secretbrokerv1.PutSecretRequest {
	return &secretbrokerv1.PutSecretRequest{Name: name, Payload: &secretbrokerv1.PutSecretRequest_Value{Value: value}}
}

// batchOf returns a batch of n plaintext puts to scope, named prefix0,
// prefix1, ..., each with its own planted value.
func batchOf(scope, prefix string, n int) *secretbrokerv1.BatchPutSecretsRequest {
	req := &secretbrokerv1.BatchPutSecretsRequest{}
	for i := range n {
		req.Requests = append(req.Requests, plain(fmt.Sprintf("%s/secrets/%s%d", scope, prefix, i), fmt.Sprintf("%s-%d", plantedSecret, i)))
	}
	return req
}

// wantAllWritten checks that every item of req is reported written and is
// in the emulator with its value.
func wantAllWritten(t *testing.T, h *harness, req *secretbrokerv1.BatchPutSecretsRequest, resp *secretbrokerv1.BatchPutSecretsResponse) {
	t.Helper()
	if len(resp.GetResults()) != len(req.GetRequests()) {
		t.Fatalf("%d results for %d items", len(resp.GetResults()), len(req.GetRequests()))
	}
	for i, r := range resp.GetResults() {
		if r.GetCode() != code.Code_OK {
			t.Fatalf("item %d: %v %q", i, r.GetCode(), r.GetMessage())
		}
		wantStored(t, h, req.Requests[i].GetName(), req.Requests[i].GetValue())
	}
}

// wantStored checks that the emulator holds value for the secret.
func wantStored(t *testing.T, h *harness, secret, value string) {
	t.Helper()
	scope, name, ok := strings.Cut(secret, "/secrets/")
	if !ok {
		t.Fatalf("%q is not a secret name", secret)
	}
	got, err := h.emu.Open(scope, name)
	if err != nil || string(got) != value {
		t.Fatalf("%s holds %q (%v), want the value written", secret, got, err)
	}
}

func TestBatchPutAcrossScopes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, harnessOpts{limits: emulator.GitHubLimits()})
		scopes := []string{
			"orgs/octo-org/actions",
			"repos/octo-org/hello-world/actions",
			"repos/octo-org/hello-world/agents",
			"repos/octo-org/hello-world/environments/prod%2Feu",
			"repos/octo-org/secret-sauce/actions",
		}
		type item struct {
			req  *secretbrokerv1.PutSecretRequest
			want code.Code
		}
		var items []item
		for i, scope := range scopes {
			for j := range 3 {
				req := plain(fmt.Sprintf("%s/secrets/S%d_%d", scope, i, j), fmt.Sprintf("%s-%d-%d", plantedSecret, i, j))
				if strings.HasPrefix(scope, "orgs/") {
					req.Visibility = "private"
				}
				items = append(items, item{req, code.Code_OK})
			}
		}
		// Bad items, all in a scope no good item writes to: none of them may
		// cause a single request, not even a key fetch.
		docs := "repos/octo-org/docs/actions/secrets/"
		bad := []item{
			{plain(docs+"1_STARTS_WITH_DIGIT", plantedSecret), code.Code_INVALID_ARGUMENT},
			{plain(docs+"EMPTY", ""), code.Code_INVALID_ARGUMENT},
			{plain(docs+"DUP", plantedSecret), code.Code_INVALID_ARGUMENT},
			{plain(docs+"dup", plantedSecret), code.Code_INVALID_ARGUMENT}, // names are case-insensitive
			{plain(docs+"TOO_BIG", strings.Repeat("x", maxValueBytes+1)), code.Code_INVALID_ARGUMENT},
			{&secretbrokerv1.PutSecretRequest{Name: docs + "ORG_ONLY", Payload: &secretbrokerv1.PutSecretRequest_Value{Value: "v"}, Visibility: "all"}, code.Code_INVALID_ARGUMENT},
		}
		// Interleave them with the good ones: order must survive.
		for i, b := range bad {
			at := 2*i + 1
			items = append(items[:at], append([]item{b}, items[at:]...)...)
		}
		req := &secretbrokerv1.BatchPutSecretsRequest{}
		for _, it := range items {
			req.Requests = append(req.Requests, it.req)
		}

		resp, err := h.broker.BatchPutSecrets(t.Context(), req)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetResults()) != len(items) {
			t.Fatalf("%d results for %d items", len(resp.GetResults()), len(items))
		}
		for i, r := range resp.GetResults() {
			it := items[i]
			if r.GetCode() != it.want {
				t.Errorf("item %d (%s): code %v (%q), want %v", i, it.req.GetName(), r.GetCode(), r.GetMessage(), it.want)
				continue
			}
			if strings.Contains(r.GetMessage(), plantedSecret) {
				t.Errorf("item %d: message leaks the value: %q", i, r.GetMessage())
			}
			if it.want != code.Code_OK {
				if r.GetMessage() == "" || r.GetName() != it.req.GetName() {
					t.Errorf("item %d: failed without a message, or renamed: %+v", i, r)
				}
				continue
			}
			if r.GetName() != it.req.GetName() || r.GetKeyId() == "" || !r.GetCreated() || r.GetMessage() != "" {
				t.Errorf("item %d: result %+v", i, r)
			}
			wantStored(t, h, it.req.GetName(), it.req.GetValue())
		}
		if got := keyFetches(h); got != len(scopes) {
			t.Errorf("%d key fetches for %d scopes, want one per scope", got, len(scopes))
		}
		if got, want := h.emu.TotalRequests(), len(scopes)+3*len(scopes)+len(scopes); got != want {
			t.Errorf("%d upstream requests, want %d: one key per scope, one PUT per good item and one list per scope to read updated_at back, nothing for bad ones", got, want)
		}

		// Again, with the keys cached: one request per write, no key fetch.
		h.emu.ResetCounts()
		if _, err := h.broker.BatchPutSecrets(t.Context(), req); err != nil {
			t.Fatal(err)
		}
		if got := keyFetches(h); got != 0 {
			t.Errorf("%d key fetches with every key cached", got)
		}
		if got := h.emu.Stats().SecondaryViolations; got != 0 {
			t.Errorf("%d secondary rate limit violations", got)
		}
	})
}

func TestBatchRejectsOversizeBatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, harnessOpts{})
		req := batchOf("repos/octo-org/hello-world/actions", "S", maxBatch+1)
		_, err := h.broker.BatchPutSecrets(t.Context(), req)
		wantCode(t, err, codes.InvalidArgument)
		if got := h.emu.TotalRequests(); got != 0 {
			t.Fatalf("%d upstream requests for a refused batch", got)
		}
	})
}

// rotateAfter wraps an Upstream and rotates the scope's key at the
// emulator when the n-th write has been admitted by the pacer, just before
// it is sent: that write and any already on the wire carry the old key.
type rotateAfter struct {
	Upstream
	emu   *emulator.Server
	scope string
	n     int32
	sent  atomic.Int32
}

func (r *rotateAfter) PutSecretFunc(ctx context.Context, s upstream.Scope, name string, body func() (upstream.PutSecretBody, error)) (upstream.Written, error) {
	return r.Upstream.PutSecretFunc(ctx, s, name, func() (upstream.PutSecretBody, error) {
		b, err := body()
		if r.sent.Add(1) == r.n {
			r.emu.RotateKey(r.scope)
		}
		return b, err
	})
}

// A key rotated in the middle of a batch costs one key fetch for that
// scope and one refused write, and every item lands sealed to a key the
// emulator can open: the writes go a second apart, so the refused write's
// revalidation is done before the next write is sealed.
func TestBatchRotationMidBatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const scope = "repos/octo-org/hello-world/actions"
		const n, rotateAt = 40, 10
		var rot *rotateAfter
		h := newHarness(t, harnessOpts{limits: emulator.GitHubLimits(), wrap: func(up Upstream) Upstream {
			rot = &rotateAfter{Upstream: up, scope: scope, n: rotateAt}
			return rot
		}})
		rot.emu = h.emu
		req := batchOf(scope, "R", n)
		resp, err := h.broker.BatchPutSecrets(t.Context(), req)
		if err != nil {
			t.Fatal(err)
		}
		keyIDs := map[string]int{}
		for i, r := range resp.GetResults() {
			if r.GetCode() != code.Code_OK {
				t.Fatalf("item %d: %v %q", i, r.GetCode(), r.GetMessage())
			}
			keyIDs[r.GetKeyId()]++
			wantStored(t, h, req.Requests[i].GetName(), req.Requests[i].GetValue())
		}
		if got := keyFetches(h); got != 2 {
			t.Errorf("%d key fetches, want 2: the first and one after the rotation", got)
		}
		// The writes before the rotation carry the old key; the refused
		// one and all after it the new one.
		if got := slices.Sorted(maps.Values(keyIDs)); !slices.Equal(got, []int{rotateAt - 1, n - rotateAt + 1}) {
			t.Errorf("values were sealed with keys %v, want %d with the first key and the rest with the new one", keyIDs, rotateAt-1)
		}
		// Only the write on the wire at the rotation is refused and sent
		// again; one write a second throughout.
		puts := h.upstream.calls(http.MethodPut)
		if len(puts) != n+1 {
			t.Fatalf("%d PUTs for %d items, want %d: one refused by the rotation", len(puts), n, n+1)
		}
		for i, p := range puts {
			wantStatus := http.StatusCreated
			if i == rotateAt-1 {
				wantStatus = http.StatusUnprocessableEntity
			}
			if p.at != time.Duration(i)*time.Second || p.status != wantStatus {
				t.Errorf("PUT %d: %d at %v, want %d at %v", i, p.status, p.at, wantStatus, time.Duration(i)*time.Second)
			}
		}
	})
}

// GitHub's secondary limit without retry-after: the broker's budget is
// set above the emulator's, so it trips the limit; the credential pauses
// for exactly the default minute, then every write left lands.
func TestBatchSecondaryLimitWithoutRetryAfter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		limits := emulator.GitHubLimits()
		limits.PointsPerMinute = 40 // the key fetch and seven writes a minute
		limits.OmitRetryAfter = true
		pacing := upstream.DefaultPacing()
		pacing.WriteInterval = 0 // unspaced, so the broker outruns the emulator
		pacing.MaxInFlight = 1   // one at a time: exactly the eighth write trips the limit
		h := newHarness(t, harnessOpts{limits: limits, pacing: &pacing})
		const scope = "repos/octo-org/hello-world/agents"
		const n, fit = 12, 7
		req := batchOf(scope, "L", n)
		start := time.Now()
		resp, err := h.broker.BatchPutSecrets(t.Context(), req)
		if err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d != time.Minute {
			t.Errorf("the batch took %v, want exactly the one-minute pause", d)
		}
		wantAllWritten(t, h, req, resp)
		// At once: seven writes accepted, the eighth refused; a minute
		// later, when the pause and the emulator's penalty end, the
		// refused one and the four that waited.
		var accepted, refused []time.Duration
		for _, p := range h.upstream.calls(http.MethodPut) {
			switch p.status {
			case http.StatusCreated:
				accepted = append(accepted, p.at)
			case http.StatusForbidden:
				refused = append(refused, p.at)
			default:
				t.Errorf("a PUT answered %d at %v", p.status, p.at)
			}
		}
		wantAccepted := slices.Concat(slices.Repeat([]time.Duration{0}, fit), slices.Repeat([]time.Duration{time.Minute}, n-fit))
		if !slices.Equal(accepted, wantAccepted) {
			t.Errorf("writes accepted at %v, want %v", accepted, wantAccepted)
		}
		if want := []time.Duration{0}; !slices.Equal(refused, want) {
			t.Errorf("writes refused at %v, want %v", refused, want)
		}
		if st := h.emu.Stats(); st.SecondaryViolations != 1 {
			t.Errorf("%d secondary violations, want 1", st.SecondaryViolations)
		}
		ps := h.client.PacerStats()
		if ps.Retries != 1 || ps.RateLimited != 1 {
			t.Errorf("pacer stats %+v: want the one rate-limited write retried once", ps)
		}
	})
}

// A storm of 5xx answers and dropped connections: every write is retried
// until it lands, and each lands once with its own value.
func TestBatch5xxStorm(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, harnessOpts{limits: emulator.GitHubLimits()})
		const scope = "repos/octo-org/secret-sauce/actions"
		h.emu.InjectFault(emulator.Fault{Route: emulator.RoutePutRepoSecret, Status: 502, Times: 4})
		h.emu.InjectFault(emulator.Fault{Route: emulator.RoutePutRepoSecret, Status: 503, Times: 2})
		h.emu.InjectFault(emulator.Fault{Route: emulator.RoutePutRepoSecret, Drop: true, Times: 1})
		h.emu.InjectFault(emulator.Fault{Route: emulator.RoutePutRepoSecret, DropAfter: true, Times: 1})
		const n = 6
		req := batchOf(scope, "F", n)
		resp, err := h.broker.BatchPutSecrets(t.Context(), req)
		if err != nil {
			t.Fatal(err)
		}
		wantAllWritten(t, h, req, resp)
		if got, want := puts(h), n+8; got != want {
			t.Errorf("%d PUTs, want %d: each item once plus one retry per fault", got, want)
		}
	})
}

// Items whose turn would come after the call's deadline fail at once with
// RESOURCE_EXHAUSTED and a retry_after instead of holding the call, and
// are never sent; the others land, one write slot apart.
func TestBatchDeadlineFailsFast(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pacing := upstream.DefaultPacing()
		pacing.WriteInterval = 100 * time.Second
		h := newHarness(t, harnessOpts{pacing: &pacing})
		const scope = "repos/octo-org/hello-world/actions"
		const n = 100 // 10,000 s of writes, ten times the deadline
		// Writes start at 0, 100 s, ..., 900 s; the next slot, 1,000 s, is
		// past the deadline less the batch's time to reply (2 s).
		const written = 10
		req := batchOf(scope, "D", n)
		start := time.Now()
		ctx, cancel := context.WithTimeout(t.Context(), 1000*time.Second)
		defer cancel()
		resp, err := h.broker.BatchPutSecrets(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d != (written-1)*pacing.WriteInterval {
			t.Errorf("the batch answered after %v, want %v: when its last write was done", d, (written-1)*pacing.WriteInterval)
		}
		var ok, exhausted int
		for i, r := range resp.GetResults() {
			switch r.GetCode() {
			case code.Code_OK:
				ok++
				wantStored(t, h, req.Requests[i].GetName(), req.Requests[i].GetValue())
			case code.Code_RESOURCE_EXHAUSTED:
				exhausted++
				// The first slot free after the writes already queued.
				if got, want := r.GetRetryAfter().AsDuration(), written*pacing.WriteInterval; got != want {
					t.Errorf("item %d: retry_after %v, want %v", i, got, want)
				}
				if _, err := h.emu.Open(scope, fmt.Sprintf("D%d", i)); err == nil {
					t.Errorf("item %d was reported not written but is stored", i)
				}
			default:
				t.Errorf("item %d: %v %q", i, r.GetCode(), r.GetMessage())
			}
		}
		if ok != written || exhausted != n-written {
			t.Errorf("%d written, %d refused at once; want %d and %d", ok, exhausted, written, n-written)
		}
		var want []time.Duration
		for i := range written {
			want = append(want, time.Duration(i)*pacing.WriteInterval)
		}
		if got := times(h.upstream.calls(http.MethodPut)); !slices.Equal(got, want) {
			t.Errorf("PUTs sent at %v, want %v: only the written items, one slot apart", got, want)
		}
	})
}

// Two callers share the budget: a single put from one caller does not wait
// behind another caller's batch; it goes in the next write slot.
func TestBatchTwoCallersShareFairly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, harnessOpts{limits: emulator.GitHubLimits()})
		const scope = "repos/octo-org/hello-world/actions"
		const n = 60
		big := batchOf(scope, "BIG", n)
		start := time.Now()
		var wg sync.WaitGroup
		var bigErr error
		var bigDone time.Duration
		wg.Go(func() {
			_, bigErr = h.broker.BatchPutSecrets(as(t.Context(), "batcher"), big)
			bigDone = time.Since(start)
		})
		// The batch's writes go at 0, 1 s, 2 s, ...; the single put is
		// queued just after the one at 2 s was sent.
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if got := len(h.upstream.calls(http.MethodPut)); got != 3 {
			t.Fatalf("%d of the batch's writes were sent in its first 2 s, want 3", got)
		}
		queued := time.Since(start)
		_, err := h.broker.PutSecret(as(t.Context(), "single"), plain(scope+"/secrets/SINGLE", plantedSecret))
		if d := time.Since(start) - queued; d != time.Second {
			t.Errorf("the single put took %v, want one write slot (1s)", d)
		}
		wg.Wait()
		if err != nil || bigErr != nil {
			t.Fatalf("single put: %v; batch: %v", err, bigErr)
		}
		// One write a second throughout: the batch's first three, the
		// single put, then the rest of the batch.
		puts := h.upstream.calls(http.MethodPut)
		if len(puts) != n+1 {
			t.Fatalf("%d PUTs, want %d", len(puts), n+1)
		}
		for i, p := range puts {
			if p.at != time.Duration(i)*time.Second {
				t.Errorf("PUT %d (%s) sent at %v, want %v", i, p.path, p.at, time.Duration(i)*time.Second)
			}
		}
		if !strings.HasSuffix(puts[3].path, "/SINGLE") {
			t.Errorf("the 4th write was %s, want the single put", puts[3].path)
		}
		if want := time.Duration(n) * time.Second; bigDone != want {
			t.Errorf("the batch finished at %v, want %v", bigDone, want)
		}
	})
}

func TestBatchDelete(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, harnessOpts{limits: emulator.GitHubLimits()})
		const scope = "repos/octo-org/hello-world/actions"
		put := &secretbrokerv1.BatchPutSecretsRequest{}
		for i := range 3 {
			put.Requests = append(put.Requests, plain(fmt.Sprintf("%s/secrets/X%d", scope, i), plantedSecret))
		}
		if _, err := h.broker.BatchPutSecrets(t.Context(), put); err != nil {
			t.Fatal(err)
		}
		h.emu.ResetCounts()
		resp, err := h.broker.BatchDeleteSecrets(t.Context(), &secretbrokerv1.BatchDeleteSecretsRequest{Names: []string{
			scope + "/secrets/X0",
			scope + "/secrets/NOT_THERE",
			"repos/octo-org/hello-world/nonsense/secrets/X1",
			scope + "/secrets/X2",
			scope + "/secrets/x2",
			scope + "/secrets/X1",
		}})
		if err != nil {
			t.Fatal(err)
		}
		want := []code.Code{code.Code_OK, code.Code_NOT_FOUND, code.Code_INVALID_ARGUMENT,
			code.Code_INVALID_ARGUMENT, code.Code_INVALID_ARGUMENT, code.Code_OK}
		for i, r := range resp.GetResults() {
			if r.GetCode() != want[i] {
				t.Errorf("item %d (%s): %v %q, want %v", i, r.GetName(), r.GetCode(), r.GetMessage(), want[i])
			}
		}
		if got := h.emu.TotalRequests(); got != 3 {
			t.Errorf("%d upstream requests, want 3 deletes", got)
		}
		for _, name := range []string{"X0", "X1"} {
			if _, err := h.emu.Open(scope, name); err == nil {
				t.Errorf("%s survived its delete", name)
			}
		}
		if _, err := h.emu.Open(scope, "X2"); err != nil {
			t.Errorf("X2, named twice and so refused, was deleted: %v", err)
		}
	})
}

// Identical reads in flight at once become one GitHub request.
func TestIdenticalReadsAreCoalesced(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, harnessOpts{})
		const scope = "repos/octo-org/hello-world/actions"
		if _, err := h.broker.PutSecret(t.Context(), plain(scope+"/secrets/READ_ME", plantedSecret)); err != nil {
			t.Fatal(err)
		}
		h.emu.ResetCounts()
		// Hold the first read of each kind (within the 30 s a shared call
		// of callers without a deadline gets), so that the fake clock
		// cannot move before every caller has joined it.
		const latency = 20 * time.Second
		h.emu.InjectFault(emulator.Fault{Route: emulator.RouteGetRepoSecret, Latency: latency, Times: 1})
		h.emu.InjectFault(emulator.Fault{Route: emulator.RouteListRepoSecrets, Latency: latency, Times: 1})
		const callers = 20
		start := time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, 2*callers)
		for range callers {
			wg.Go(func() {
				_, err := h.broker.GetSecret(t.Context(), &secretbrokerv1.GetSecretRequest{Name: scope + "/secrets/READ_ME"})
				errs <- err
			})
			wg.Go(func() {
				_, err := h.broker.ListSecrets(t.Context(), &secretbrokerv1.ListSecretsRequest{Parent: scope})
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		// Every caller joined the one read of its kind before the fake
		// clock could move: all 20 of each kind shared it, and all were
		// answered when it was.
		if got := h.emu.Count(emulator.RouteGetRepoSecret); got != 1 {
			t.Errorf("%d GETs of one secret for %d concurrent callers, want 1", got, callers)
		}
		if got := h.emu.Count(emulator.RouteListRepoSecrets); got != 1 {
			t.Errorf("%d list requests of one page for %d concurrent callers, want 1", got, callers)
		}
		if d := time.Since(start); d != latency {
			t.Errorf("the callers were answered after %v, want %v", d, latency)
		}
	})
}

// A key older than the TTL is revalidated with If-None-Match: GitHub's 304
// costs no primary quota, and the cached key goes on being used.
func TestKeyRevalidatedWithNotModified(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const ttl = time.Minute
		h := newHarness(t, harnessOpts{limits: emulator.GitHubLimits(), keyTTL: ttl})
		const scope = "repos/octo-org/hello-world/actions"
		for i := range 3 {
			if i > 0 {
				time.Sleep(ttl) // the key is a TTL old at the next put
			}
			if _, err := h.broker.PutSecret(t.Context(), plain(fmt.Sprintf("%s/secrets/REVAL%d", scope, i), plantedSecret)); err != nil {
				t.Fatal(err)
			}
		}
		if got := keyFetches(h); got != 3 {
			t.Fatalf("%d key requests, want 3: one fetch, then a revalidation before each later put", got)
		}
		var keyCalls []upstreamCall
		for _, c := range h.upstream.calls(http.MethodGet) {
			if strings.HasSuffix(c.path, "/public-key") {
				keyCalls = append(keyCalls, c)
			}
		}
		if got, want := times(keyCalls), []time.Duration{0, ttl, 2 * ttl}; !slices.Equal(got, want) {
			t.Errorf("key requests at %v, want %v", got, want)
		}
		st := h.emu.Stats()
		if st.NotModified != 2 {
			t.Errorf("%d answers were 304, want 2", st.NotModified)
		}
		if h.emu.LastRequestHeader(emulator.RouteGetRepoPublicKey).Get("If-None-Match") == "" {
			t.Error("the revalidation carried no If-None-Match")
		}
		// The primary quota counts the key fetch and the three PUTs (whose
		// answers bound each secret's updated_at: no GET reads it back),
		// not the 304s: a request of our own is the 5th, as its
		// x-ratelimit-used says.
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, emulatorURL+"/"+scope+"/secrets/REVAL0", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+testToken)
		resp, err := (&http.Client{Transport: h.upstream}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET of the secret: %d", resp.StatusCode)
		}
		if got := resp.Header.Get("X-Ratelimit-Used"); got != "5" {
			t.Errorf("x-ratelimit-used = %q, want 5: the 304s were counted", got)
		}
	})
}
