package service

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
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
	if got, want := h.emu.TotalRequests(), len(scopes)+3*len(scopes); got != want {
		t.Errorf("%d upstream requests, want %d: one key per scope and one PUT per good item, nothing for bad ones", got, want)
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
}

func TestBatchRejectsOversizeBatch(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	req := batchOf("repos/octo-org/hello-world/actions", "S", maxBatch+1)
	_, err := h.broker.BatchPutSecrets(t.Context(), req)
	wantCode(t, err, codes.InvalidArgument)
	if got := h.emu.TotalRequests(); got != 0 {
		t.Fatalf("%d upstream requests for a refused batch", got)
	}
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

func (r *rotateAfter) PutSecretFunc(ctx context.Context, s upstream.Scope, name string, body func() (upstream.PutSecretBody, error)) (bool, error) {
	return r.Upstream.PutSecretFunc(ctx, s, name, func() (upstream.PutSecretBody, error) {
		b, err := body()
		if r.sent.Add(1) == r.n {
			r.emu.RotateKey(r.scope)
		}
		return b, err
	})
}

// A key rotated in the middle of a batch costs one key fetch for that
// scope, and every item lands sealed to a key the emulator can open.
func TestBatchRotationMidBatch(t *testing.T) {
	const scope = "repos/octo-org/hello-world/actions"
	const n = 40
	var rot *rotateAfter
	// At 100x a write slot is 10 ms of wall time, ample for the refused
	// write and the key fetch to finish before the next write is admitted.
	h := newHarness(t, harnessOpts{limits: emulator.GitHubLimits(), scale: 100, wrap: func(up Upstream) Upstream {
		rot = &rotateAfter{Upstream: up, scope: scope, n: 10}
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
	if len(keyIDs) != 2 {
		t.Errorf("values were sealed with %d keys (%v), want 2", len(keyIDs), keyIDs)
	}
	// Writes admitted after the rotation was seen are sealed with the new
	// key before they go: only writes already on the wire can be refused.
	if got := puts(h); got > n+2 {
		t.Errorf("%d PUTs for %d items: a rotation cost more than a couple of refused writes", got, n)
	}
}

// GitHub's secondary limit without retry-after: the broker's budget is
// set above the emulator's, so it trips the limit; the credential pauses
// for the default minute, then every write lands.
func TestBatchSecondaryLimitWithoutRetryAfter(t *testing.T) {
	limits := emulator.GitHubLimits()
	limits.PointsPerMinute = 40 // eight writes a minute
	limits.OmitRetryAfter = true
	pacing := upstream.DefaultPacing()
	pacing.WriteInterval = 0 // unspaced, so the broker outruns the emulator
	h := newHarness(t, harnessOpts{limits: limits, pacing: &pacing})
	const scope = "repos/octo-org/hello-world/agents"
	req := batchOf(scope, "L", 12)
	resp, err := h.broker.BatchPutSecrets(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	wantAllWritten(t, h, req, resp)
	st := h.emu.Stats()
	if st.SecondaryViolations == 0 {
		t.Fatal("the emulator never refused a request: the test did not exercise the limit")
	}
	ps := h.client.PacerStats()
	if ps.Retries == 0 || ps.RateLimited == 0 {
		t.Errorf("pacer stats %+v: the refused writes were not retried", ps)
	}
}

// A storm of 5xx answers and dropped connections: every write is retried
// until it lands, and each lands once with its own value.
func TestBatch5xxStorm(t *testing.T) {
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
}

// Items whose turn would come after the call's deadline fail at once with
// RESOURCE_EXHAUSTED and a retry_after instead of holding the call; the
// others land.
func TestBatchDeadlineFailsFast(t *testing.T) {
	pacing := upstream.DefaultPacing()
	pacing.WriteInterval = 100 * time.Second // 100 ms of wall time at 1000x
	h := newHarness(t, harnessOpts{pacing: &pacing})
	const scope = "repos/octo-org/hello-world/actions"
	const n = 100 // 10,000 s of writes: 10 s of wall time, well past the deadline
	req := batchOf(scope, "D", n)
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	resp, err := h.broker.BatchPutSecrets(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	var ok, exhausted, cut int
	for i, r := range resp.GetResults() {
		switch r.GetCode() {
		case code.Code_OK:
			ok++
			wantStored(t, h, req.Requests[i].GetName(), req.Requests[i].GetValue())
		case code.Code_RESOURCE_EXHAUSTED:
			exhausted++
			if r.GetRetryAfter().AsDuration() <= 0 {
				t.Errorf("item %d: RESOURCE_EXHAUSTED without retry_after", i)
			}
			if _, err := h.emu.Open(scope, fmt.Sprintf("D%d", i)); err == nil {
				t.Errorf("item %d was reported not written but is stored", i)
			}
		case code.Code_DEADLINE_EXCEEDED:
			cut++ // on the wire when the deadline came: outcome unknown
		default:
			t.Errorf("item %d: %v %q", i, r.GetCode(), r.GetMessage())
		}
	}
	if cut > 1 {
		t.Errorf("%d items ran into the deadline; only a write on the wire at the deadline may", cut)
	}
	if ok == 0 || exhausted == 0 {
		t.Fatalf("%d written, %d refused at once; want some of each", ok, exhausted)
	}
	if got := puts(h); got < ok || got > ok+cut {
		t.Errorf("%d PUTs for %d written items: refused items were sent", got, ok)
	}
}

// Two callers share the budget: a single put from one caller does not wait
// behind another caller's batch.
func TestBatchTwoCallersShareFairly(t *testing.T) {
	// At 100x a write slot is 10 ms of wall time, so the single put's trip
	// through gRPC to the pacer takes less than one slot.
	h := newHarness(t, harnessOpts{limits: emulator.GitHubLimits(), scale: 100})
	const scope = "repos/octo-org/hello-world/actions"
	const n = 60
	big := batchOf(scope, "BIG", n)
	var wg sync.WaitGroup
	var bigErr error
	wg.Go(func() {
		_, bigErr = h.broker.BatchPutSecrets(as(t.Context(), "batcher"), big)
	})
	// Wait until the batch's writes are flowing.
	for start := time.Now(); puts(h) < 3; time.Sleep(time.Millisecond) {
		if time.Since(start) > 10*time.Second {
			t.Fatal("the batch's writes did not start")
		}
	}
	before := puts(h)
	_, err := h.broker.PutSecret(as(t.Context(), "single"), plain(scope+"/secrets/SINGLE", plantedSecret))
	after := puts(h)
	wg.Wait()
	if err != nil || bigErr != nil {
		t.Fatalf("single put: %v; batch: %v", err, bigErr)
	}
	if after-before > 3 {
		t.Errorf("the single put waited for %d writes of the other caller's batch; want its turn within about one", after-before-1)
	}
	if after >= n {
		t.Errorf("the single put finished only after the whole batch (%d writes)", after)
	}
}

func TestBatchDelete(t *testing.T) {
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
}

// Identical reads in flight at once become one GitHub request.
func TestIdenticalReadsAreCoalesced(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	const scope = "repos/octo-org/hello-world/actions"
	if _, err := h.broker.PutSecret(t.Context(), plain(scope+"/secrets/READ_ME", plantedSecret)); err != nil {
		t.Fatal(err)
	}
	h.emu.ResetCounts()
	// Hold every read long enough for all callers to join it.
	h.emu.InjectFault(emulator.Fault{Route: emulator.RouteGetRepoSecret, Latency: 200 * time.Second, Times: 1})
	h.emu.InjectFault(emulator.Fault{Route: emulator.RouteListRepoSecrets, Latency: 200 * time.Second, Times: 1})
	const callers = 20
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
	// Callers that arrive after a read finished start a new one; with the
	// reads held 200 ms, all 20 of each kind should mostly share one.
	if got := h.emu.Count(emulator.RouteGetRepoSecret); got > 2 {
		t.Errorf("%d GETs of one secret for %d concurrent callers", got, callers)
	}
	if got := h.emu.Count(emulator.RouteListRepoSecrets); got > 2 {
		t.Errorf("%d list requests of one page for %d concurrent callers", got, callers)
	}
}

// A key older than the TTL is revalidated with If-None-Match: GitHub's 304
// costs no primary quota, and the cached key goes on being used.
func TestKeyRevalidatedWithNotModified(t *testing.T) {
	h := newHarness(t, harnessOpts{limits: emulator.GitHubLimits(), keyTTL: time.Nanosecond})
	const scope = "repos/octo-org/hello-world/actions"
	for i := range 3 {
		if _, err := h.broker.PutSecret(t.Context(), plain(fmt.Sprintf("%s/secrets/REVAL%d", scope, i), plantedSecret)); err != nil {
			t.Fatal(err)
		}
	}
	if got := keyFetches(h); got != 3 {
		t.Fatalf("%d key requests, want 3: one fetch, then a revalidation before each later put", got)
	}
	st := h.emu.Stats()
	if st.NotModified != 2 {
		t.Errorf("%d answers were 304, want 2", st.NotModified)
	}
	if h.emu.LastRequestHeader(emulator.RouteGetRepoPublicKey).Get("If-None-Match") == "" {
		t.Error("the revalidation carried no If-None-Match")
	}
	// The primary quota counts the key fetch and the three PUTs, not the
	// 304s: a request of our own is the 5th, as its x-ratelimit-used says.
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, h.upURL+"/"+scope+"/secrets/REVAL0", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("X-Ratelimit-Used"); got != "5" {
		t.Errorf("x-ratelimit-used = %q, want 5: the 304s were counted", got)
	}
}
