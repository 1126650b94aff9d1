package service

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/crypto/nacl/box"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"

	"github.com/secretbroker/secretbroker/upstream"
	"github.com/secretbroker/secretbroker/upstream/emulator"
)

// fakeKeys serves public keys, with an ETag naming the key id; each call
// can be held on a gate.
type fakeKeys struct {
	calls       atomic.Int32  // every call, conditional or not
	conditional atomic.Int32  // calls with an ETag
	notModified atomic.Int32  // of those, answered "not modified"
	gate        chan struct{} // when non-nil, each fetch waits for a receive
	id          atomic.Int32
	key         string
}

func newFakeKeys(t *testing.T) *fakeKeys {
	pub, _, err := box.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeKeys{key: base64.StdEncoding.EncodeToString(pub[:])}
	f.id.Store(1)
	return f
}

func (f *fakeKeys) GetPublicKey(ctx context.Context, _ upstream.Scope) (upstream.PublicKey, error) {
	f.calls.Add(1)
	if f.gate != nil {
		select {
		case <-f.gate:
		case <-ctx.Done():
			return upstream.PublicKey{}, ctx.Err()
		}
	}
	id := strconv.Itoa(int(f.id.Load()))
	return upstream.PublicKey{KeyID: upstream.KeyID(id), Key: f.key, ETag: `"` + id + `"`}, nil
}

func (f *fakeKeys) RevalidatePublicKey(ctx context.Context, s upstream.Scope, etag string) (upstream.PublicKey, bool, error) {
	f.conditional.Add(1)
	pk, err := f.GetPublicKey(ctx, s)
	if err != nil || pk.ETag != etag {
		return pk, false, err
	}
	f.notModified.Add(1)
	return upstream.PublicKey{ETag: etag}, true, nil
}

var testScope = upstream.Scope{App: upstream.Actions, Org: "acme"}

func TestKeyCacheMergesConcurrentMisses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeKeys(t)
		f.gate = make(chan struct{})
		c := newKeyCache(f, time.Hour)
		const n = 50
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := c.get(t.Context(), testScope)
				errs <- err
			}()
		}
		// Let the one fetch finish once every caller is waiting on it.
		synctest.Wait()
		if got := f.calls.Load(); got != 1 {
			t.Fatalf("%d fetches started for %d concurrent misses, want 1", got, n)
		}
		close(f.gate)
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		if got := f.calls.Load(); got != 1 {
			t.Fatalf("fetches = %d, want 1", got)
		}
		if _, err := c.get(t.Context(), testScope); err != nil || f.calls.Load() != 1 {
			t.Fatalf("a cached key was fetched again (%d fetches, %v)", f.calls.Load(), err)
		}
	})
}

func TestKeyCacheWaiterDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeKeys(t)
		f.gate = make(chan struct{})
		c := newKeyCache(f, time.Hour)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if _, err := c.get(ctx, testScope); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		// The forgotten call does not capture later callers: a new fetch starts.
		done := make(chan error, 1)
		go func() {
			_, err := c.get(t.Context(), testScope)
			done <- err
		}()
		// Without Forget the new caller would join the stuck first fetch and
		// no second fetch would start.
		synctest.Wait()
		got := f.calls.Load()
		close(f.gate)
		if got != 2 {
			t.Fatalf("%d fetches; a caller after a forgotten fetch joined it instead of fetching afresh", got)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}

func TestKeyCacheTTLAndRefresh(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeKeys(t)
		c := newKeyCache(f, time.Minute)
		ctx := t.Context()

		k1, err := c.get(ctx, testScope)
		if err != nil || k1.id != "1" {
			t.Fatalf("get = %+v, %v", k1, err)
		}
		time.Sleep(2 * time.Minute)
		k, err := c.get(ctx, testScope)
		if err != nil || k.id != "1" || f.calls.Load() != 2 || f.notModified.Load() != 1 {
			t.Fatalf("an expired key was not revalidated (%+v, %d fetches, %d not modified, %v)", k, f.calls.Load(), f.notModified.Load(), err)
		}
		// Revalidated, the key is fresh again for a whole TTL.
		time.Sleep(30 * time.Second)
		if _, err := c.get(ctx, testScope); err != nil || f.calls.Load() != 2 {
			t.Fatalf("a revalidated key was fetched again (%d fetches, %v)", f.calls.Load(), err)
		}

		// A rotation: revalidating for the stale id asks once, conditionally,
		// and gets the new key; a second revalidation naming the same stale
		// id finds the new key already in place and asks nothing.
		f.id.Store(2)
		for range 2 {
			k, err := c.revalidate(ctx, testScope, "1")
			if err != nil || k.id != "2" {
				t.Fatalf("revalidate = %+v, %v", k, err)
			}
		}
		if got, cond := f.calls.Load(), f.conditional.Load(); got != 3 || cond != 2 {
			t.Fatalf("fetches = %d (%d conditional), want 3 (2 conditional)", got, cond)
		}
	})
}

// githubExampleKey is the public key of the C# example in GitHub's
// reference (seeds/002): 32 bytes of a point that is not of low order.
const githubExampleKey = "2Sg8iYjAxxmI2LvUXpJjkYrMxURPc8r+dB7TJyvvcCU="

func TestDecodeKeyRejectsBadKeys(t *testing.T) {
	valid := githubExampleKey
	bad := []upstream.PublicKey{
		{KeyID: "", Key: valid},
		{KeyID: "1", Key: "not base64"},
		{KeyID: "1", Key: base64.StdEncoding.EncodeToString(make([]byte, 31))},
		// Go's base64 decoder skips line breaks: a MiB of them decodes
		// to the same 32 bytes.
		{KeyID: "1", Key: valid[:10] + strings.Repeat("\r\n", 512<<10) + valid[10:]},
		{KeyID: "1", Key: valid + "\n"},
		{KeyID: upstream.KeyID(strings.Repeat("9", maxKeyIDLen+1)), Key: valid},
	}
	for _, lo := range lowOrderKeys {
		raw, _ := hex.DecodeString(lo.hex)
		bad = append(bad, upstream.PublicKey{KeyID: "1", Key: base64.StdEncoding.EncodeToString(raw)})
	}
	for _, pk := range bad {
		if k, err := decodeKey(pk); err == nil {
			t.Errorf("decodeKey accepted a bad key: key_id of %d bytes, key of %d", len(k.id), len(k.encoded))
		} else if len(err.Error()) > 200 {
			t.Errorf("decodeKey's error is %d bytes long", len(err.Error()))
		}
	}
}

// What decodeKey keeps of a good key: an ETag too long to be GitHub's is
// dropped (the key is then revalidated unconditionally), not held.
func TestDecodeKeyBounds(t *testing.T) {
	valid := githubExampleKey
	for _, tc := range []struct {
		name     string
		pk       upstream.PublicKey
		wantETag string
	}{
		{"GitHub's", upstream.PublicKey{KeyID: "568250167242549743", Key: valid, ETag: `W/"1a2b"`}, `W/"1a2b"`},
		{"longest key_id", upstream.PublicKey{KeyID: upstream.KeyID(strings.Repeat("9", maxKeyIDLen)), Key: valid, ETag: `"e"`}, `"e"`},
		{"ETag of a MiB", upstream.PublicKey{KeyID: "1", Key: valid, ETag: strings.Repeat("e", 1<<20)}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := decodeKey(tc.pk)
			if err != nil {
				t.Fatal(err)
			}
			if k.id != tc.pk.KeyID || k.encoded != valid || k.etag != tc.wantETag {
				t.Errorf("decodeKey kept key_id of %d bytes, key %q, ETag of %d bytes; want the ETag %q", len(k.id), k.encoded, len(k.etag), tc.wantETag)
			}
		})
	}
}

// A key that changed while cached comes back whole from the conditional
// request, and the cache takes it.
func TestKeyCacheRevalidationSeesNewKey(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeKeys(t)
		c := newKeyCache(f, time.Minute)
		if _, err := c.get(t.Context(), testScope); err != nil {
			t.Fatal(err)
		}
		f.id.Store(7)
		time.Sleep(time.Hour)
		k, err := c.get(t.Context(), testScope)
		if err != nil || k.id != "7" || f.conditional.Load() != 1 || f.notModified.Load() != 0 {
			t.Fatalf("get = %+v, %v (%d conditional, %d not modified); want key 7 from one conditional request",
				k, err, f.conditional.Load(), f.notModified.Load())
		}
	})
}

// A caller's evidence against the cached key buys at most one
// conditional revalidation per scope per TTL, however often it is sent,
// and never drops the key.
func TestKeyCacheForcedRevalidationBudget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeKeys(t)
		c := newKeyCache(f, time.Minute)
		ctx := t.Context()
		if _, err := c.get(ctx, testScope); err != nil {
			t.Fatal(err)
		}
		other := upstream.Scope{App: upstream.Actions, Owner: "o", Repo: "r"}
		if _, err := c.get(ctx, other); err != nil {
			t.Fatal(err)
		}
		for range 50 {
			k, err := c.revalidate(ctx, testScope, "1")
			if err != nil || k.id != "1" {
				t.Fatalf("revalidate = %+v, %v", k, err)
			}
		}
		if got, cond, nm := f.calls.Load(), f.conditional.Load(), f.notModified.Load(); got != 3 || cond != 1 || nm != 1 {
			t.Fatalf("%d calls, %d conditional, %d not modified; want 3, 1, 1", got, cond, nm)
		}
		// The budget is per scope: another scope has its own.
		if _, err := c.revalidate(ctx, other, "1"); err != nil || f.conditional.Load() != 2 {
			t.Fatalf("another scope's revalidation: %v, %d conditional", err, f.conditional.Load())
		}
		// Within the TTL of the forced revalidation: nothing more, even for a
		// key that really rotated meanwhile (the next TTL revalidation finds it).
		time.Sleep(59 * time.Second)
		f.id.Store(2)
		if k, err := c.revalidate(ctx, testScope, "1"); err != nil || k.id != "1" || f.conditional.Load() != 2 {
			t.Fatalf("revalidate within the budget's TTL = %+v, %v, %d conditional", k, err, f.conditional.Load())
		}
		// A TTL later, one more, which sees the rotation.
		time.Sleep(time.Second)
		if k, err := c.revalidate(ctx, testScope, "1"); err != nil || k.id != "2" || f.conditional.Load() != 3 {
			t.Fatalf("revalidate after the TTL = %+v, %v, %d conditional", k, err, f.conditional.Load())
		}
		if f.calls.Load() != f.conditional.Load()+2 {
			t.Fatalf("%d calls, %d conditional: a revalidation fetched unconditionally", f.calls.Load(), f.conditional.Load())
		}
	})
}

// Concurrent forced revalidations of one scope are one request.
func TestKeyCacheForcedRevalidationsCoalesce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeKeys(t)
		c := newKeyCache(f, time.Hour)
		if _, err := c.get(t.Context(), testScope); err != nil {
			t.Fatal(err)
		}
		f.gate = make(chan struct{})
		const n = 20
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				if k, err := c.revalidate(t.Context(), testScope, "1"); err != nil || k.id != "1" {
					t.Errorf("revalidate = %+v, %v", k, err)
				}
			})
		}
		synctest.Wait() // every caller waits on the one request
		close(f.gate)
		wg.Wait()
		if got := f.conditional.Load(); got != 1 {
			t.Fatalf("%d conditional requests for %d concurrent callers, want 1", got, n)
		}
	})
}

// throttledKeys refuses every conditional request the way the pacer does
// when the request would outlast the deadline: nothing is sent.
type throttledKeys struct {
	*fakeKeys
	throttle atomic.Bool
}

func (f *throttledKeys) RevalidatePublicKey(ctx context.Context, s upstream.Scope, etag string) (upstream.PublicKey, bool, error) {
	if f.throttle.Load() {
		f.conditional.Add(1)
		return upstream.PublicKey{}, false, &upstream.ThrottledError{RetryAfter: time.Second}
	}
	return f.fakeKeys.RevalidatePublicKey(ctx, s, etag)
}

// A forced revalidation the pacer did not send does not spend the budget;
// one sent that finds the same key does.
func TestKeyCacheThrottledRevalidationKeepsBudget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &throttledKeys{fakeKeys: newFakeKeys(t)}
		c := newKeyCache(f, time.Minute)
		if _, err := c.get(t.Context(), testScope); err != nil {
			t.Fatal(err)
		}
		f.throttle.Store(true)
		var te *upstream.ThrottledError
		if _, err := c.revalidate(t.Context(), testScope, "1"); !errors.As(err, &te) {
			t.Fatalf("err = %v, want the pacer's refusal", err)
		}
		f.throttle.Store(false)
		if k, err := c.revalidate(t.Context(), testScope, "1"); err != nil || k.id != "1" {
			t.Fatalf("revalidate after a refused one = %+v, %v; want key 1, still current", k, err)
		}
		// That one was sent and found nothing new: the budget is spent now.
		f.id.Store(3)
		if k, err := c.revalidate(t.Context(), testScope, "1"); err != nil || k.id != "1" || f.conditional.Load() != 2 {
			t.Fatalf("revalidate = %+v, %v, %d conditional; want key 1 from the cache after 2 requests", k, err, f.conditional.Load())
		}
	})
}

// noETagKeys serves keys without an ETag, as a server that sends none.
type noETagKeys struct{ *fakeKeys }

func (f noETagKeys) GetPublicKey(ctx context.Context, s upstream.Scope) (upstream.PublicKey, error) {
	pk, err := f.fakeKeys.GetPublicKey(ctx, s)
	pk.ETag = ""
	return pk, err
}

// Without an ETag the one budgeted revalidation cannot be conditional;
// it is still one per TTL.
func TestKeyCacheForcedWithoutETag(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := noETagKeys{newFakeKeys(t)}
		c := newKeyCache(f, time.Minute)
		if _, err := c.get(t.Context(), testScope); err != nil {
			t.Fatal(err)
		}
		for range 10 {
			if _, err := c.revalidate(t.Context(), testScope, "1"); err != nil {
				t.Fatal(err)
			}
		}
		if got := f.calls.Load(); got != 2 {
			t.Fatalf("%d fetches, want 2: the first and one budgeted", got)
		}
	})
}

// A "not modified" about a key another answer has replaced meanwhile does
// not put the old key back.
func TestKeyCacheNotModifiedKeepsNewerKey(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeKeys(t)
		c := newKeyCache(f, time.Minute)
		old, err := c.get(t.Context(), testScope)
		if err != nil {
			t.Fatal(err)
		}
		newer := old
		newer.id, newer.etag = "2", `"2"`
		c.mu.Lock()
		c.keys[testScope.Path()] = newer
		c.mu.Unlock()
		// The server still says key 1 is current (an answer from before the
		// rotation), conditionally on key 1's ETag: 304.
		k, err := c.check(t.Context(), testScope, old, true)
		if err != nil || k.id != "2" || f.notModified.Load() != 1 {
			t.Fatalf("check = %+v, %v (%d not modified); want the newer key 2 kept", k, err, f.notModified.Load())
		}
		if cur, _ := c.cached(testScope); cur.id != "2" {
			t.Fatalf("cache holds key %q, want 2", cur.id)
		}
	})
}

// A fetch that panics fails every waiter with codes.Internal and leaves
// the scope free for the next fetch.
func TestKeyCacheFetchPanics(t *testing.T) {
	f := &panickyKeys{fakeKeys: newFakeKeys(t)}
	f.panics.Store(true)
	c := newKeyCache(f, time.Minute)
	_, err := c.get(t.Context(), testScope)
	var pe *sharedPanicError
	if !errors.As(err, &pe) {
		t.Fatalf("err = %v, want a recovered panic", err)
	}
	if st := classify(err); st.Code() != codes.Internal || st.Message() != "internal error" {
		t.Fatalf("classify = %v %q", st.Code(), st.Message())
	}
	f.panics.Store(false)
	if k, err := c.get(t.Context(), testScope); err != nil || k.id != "1" {
		t.Fatalf("get after a panic = %+v, %v", k, err)
	}
}

type panickyKeys struct {
	*fakeKeys
	panics atomic.Bool
}

func (f *panickyKeys) GetPublicKey(ctx context.Context, s upstream.Scope) (upstream.PublicKey, error) {
	if f.panics.Load() {
		panic("fetching " + plantedSecret)
	}
	return f.fakeKeys.GetPublicKey(ctx, s)
}

// sealedPut is a PutSecret of a caller-sealed value.
func sealedPut(name, sealed, keyID string) *secretbrokerv1.PutSecretRequest {
	return &secretbrokerv1.PutSecretRequest{
		Name: name, Payload: &secretbrokerv1.PutSecretRequest_EncryptedValue{EncryptedValue: sealed}, KeyId: keyID,
	}
}

// Fifty puts with a wrong key_id on one scope cost one conditional
// revalidation of the scope's key (answered 304: no primary quota), not
// fifty fetches; a key TTL later, one more.
func TestWrongKeyIDCostsOneConditionalRevalidation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const ttl = time.Minute
		d := newDirect(t, ttl)
		const scope = "repos/octo-org/hello-world/actions"
		pk := d.publicKey(t, scope)
		sealed := sealFor(t, pk, plantedSecret)
		wrong := func(n int) {
			t.Helper()
			for range n {
				_, err := d.srv.PutSecret(t.Context(), sealedPut(scope+"/secrets/WRONG", sealed, "999"))
				wantCode(t, err, codes.InvalidArgument)
				noLeak(t, err)
				if msg := status.Convert(err).Message(); !strings.Contains(msg, "call GetPublicKey and seal again") {
					t.Fatalf("message %q", msg)
				}
			}
		}
		// want checks the key requests and 304s since the last reset, and
		// that nothing else was sent.
		want := func(keyRequests, notModified int) {
			t.Helper()
			if got := d.emu.Count(emulator.RouteGetRepoPublicKey); got != keyRequests {
				t.Errorf("%d key requests, want %d", got, keyRequests)
			}
			if got := d.emu.Stats().NotModified; got != notModified {
				t.Errorf("%d answers were 304, want %d", got, notModified)
			}
			if got := d.emu.TotalRequests(); got != keyRequests {
				t.Errorf("%d requests in all, want only the %d key requests", got, keyRequests)
			}
			if keyRequests > 0 && d.emu.LastRequestHeader(emulator.RouteGetRepoPublicKey).Get("If-None-Match") == "" {
				t.Error("the last key request carried no If-None-Match")
			}
		}

		d.emu.ResetCounts()
		wrong(50)
		want(1, 1)

		// Within the TTL: nothing more.
		time.Sleep(ttl - time.Second)
		d.emu.ResetCounts()
		wrong(20)
		want(0, 0)

		// A TTL after the forced revalidation: the key is due for its own
		// revalidation, which every put would cause, and the wrong key_id
		// buys one more, both conditional; then nothing again.
		time.Sleep(time.Second)
		d.emu.ResetCounts()
		wrong(50)
		want(2, 2)

		// The same moment of the TTL with the right key_id costs just the
		// TTL's own revalidation: the wrong key_id cost one request per TTL.
		time.Sleep(ttl)
		d.emu.ResetCounts()
		if _, err := d.srv.PutSecret(t.Context(), sealedPut(scope+"/secrets/RIGHT", sealed, pk.GetKeyId())); err != nil {
			t.Fatal(err)
		}
		if got, puts := d.emu.Count(emulator.RouteGetRepoPublicKey), d.puts(); got != 1 || puts != 1 {
			t.Errorf("a right put a TTL later: %d key requests, %d PUTs; want 1 and 1", got, puts)
		}
		if got, err := d.emu.Open(scope, "RIGHT"); err != nil || string(got) != plantedSecret {
			t.Errorf("the right put does not open to its value: %v", err)
		}
	})
}

// A rotation GitHub reports with 422 is still invisible to a plaintext
// put: one conditional revalidation finds the new key and the write is
// retried. That revalidation found a rotation, so it spent no budget: a
// second rotation within the same TTL is found the same way
// (TestRotationsWithinOneTTL has more; TestKeyCacheThrottledRevalidation-
// KeepsBudget shows a revalidation that finds nothing new spending it).
func TestRotationSeenByPlaintextPut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const ttl = time.Minute
		d := newDirect(t, ttl)
		const scope = "orgs/octo-org/actions"
		put := func(v string) (*secretbrokerv1.PutSecretResponse, error) {
			return d.srv.PutSecret(t.Context(), &secretbrokerv1.PutSecretRequest{
				Name: scope + "/secrets/ROTATING", Payload: &secretbrokerv1.PutSecretRequest_Value{Value: v}, Visibility: "all",
			})
		}
		if _, err := put("first"); err != nil {
			t.Fatal(err)
		}
		d.emu.ResetCounts()
		newID := d.emu.RotateKey(scope)
		resp, err := put(plantedSecret)
		if err != nil || resp.GetKeyId() != newID {
			t.Fatalf("put after the rotation = %+v, %v; want key %s", resp, err, newID)
		}
		if got, err := d.emu.Open(scope, "ROTATING"); err != nil || string(got) != plantedSecret {
			t.Fatalf("the value does not open after the rotation: %v", err)
		}
		if got := d.emu.Count(emulator.RouteGetOrgPublicKey); got != 1 {
			t.Errorf("%d key requests, want 1", got)
		}
		if d.emu.LastRequestHeader(emulator.RouteGetOrgPublicKey).Get("If-None-Match") == "" {
			t.Error("the revalidation after the 422 carried no If-None-Match: the key was evicted and fetched outright")
		}
		if got := d.emu.Count(emulator.RoutePutOrgSecret); got != 2 {
			t.Errorf("%d PUTs, want 2 (refused, retried)", got)
		}

		d.emu.ResetCounts()
		third := d.emu.RotateKey(scope)
		resp, err = put(plantedSecret + "-3")
		if err != nil || resp.GetKeyId() != third {
			t.Fatalf("put after a second rotation within the TTL = %+v, %v; want key %s", resp, err, third)
		}
		if got, puts := d.emu.Count(emulator.RouteGetOrgPublicKey), d.emu.Count(emulator.RoutePutOrgSecret); got != 1 || puts != 2 {
			t.Errorf("a second rotation: %d key requests, %d PUTs; want 1 and 2", got, puts)
		}
	})
}

// After GitHub refuses a caller-sealed value (422), the key is
// revalidated conditionally rather than dropped, so that the caller's next
// GetPublicKey has the new key without another request.
func TestSealedPut422RevalidatesInsteadOfEvicting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := newDirect(t, time.Hour)
		const scope = "repos/octo-org/hello-world/agents"
		pk := d.publicKey(t, scope)
		newID := d.emu.RotateKey(scope) // the caller's key is stale now
		d.emu.ResetCounts()
		_, err := d.srv.PutSecret(t.Context(), sealedPut(scope+"/secrets/STALE", sealFor(t, pk, plantedSecret), pk.GetKeyId()))
		wantCode(t, err, codes.InvalidArgument)
		noLeak(t, err)
		if got := d.emu.Count(emulator.RouteGetRepoPublicKey); got != 1 {
			t.Fatalf("%d key requests after the 422, want 1", got)
		}
		if d.emu.LastRequestHeader(emulator.RouteGetRepoPublicKey).Get("If-None-Match") == "" {
			t.Error("the key was fetched outright after the 422")
		}
		d.emu.ResetCounts()
		fresh := d.publicKey(t, scope)
		if fresh.GetKeyId() != newID || d.emu.TotalRequests() != 0 {
			t.Fatalf("GetPublicKey = %s with %d requests; want %s from the cache", fresh.GetKeyId(), d.emu.TotalRequests(), newID)
		}
		if _, err := d.srv.PutSecret(t.Context(), sealedPut(scope+"/secrets/STALE", sealFor(t, fresh, plantedSecret), fresh.GetKeyId())); err != nil {
			t.Fatal(err)
		}
	})
}

// alternatingKeys is a GitHub whose replicas disagree after a rotation:
// each answer carries the other of two keys.
type alternatingKeys struct{ *fakeKeys }

func (a alternatingKeys) RevalidatePublicKey(ctx context.Context, s upstream.Scope, etag string) (upstream.PublicKey, bool, error) {
	a.id.Store(3 - a.id.Load()) // 1, 2, 1, ...
	return a.fakeKeys.RevalidatePublicKey(ctx, s, etag)
}

// TestKeyCacheAlternatingKeysKeepBudget: a forced check that finds a new
// key gives its budget back (TestRotationsWithinOneTTL), but one that
// finds the key the cached one replaced does not. Otherwise, while GitHub
// answers with the old and the new key in turn, a caller sending each
// key's id in turn would have every one of its calls checked at GitHub.
func TestKeyCacheAlternatingKeysKeepBudget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeKeys(t)
		c := newKeyCache(alternatingKeys{f}, time.Minute)
		ctx := t.Context()
		k, err := c.get(ctx, testScope)
		if err != nil || k.id != "1" {
			t.Fatalf("get = %+v, %v", k, err)
		}
		for range 50 {
			cur, _ := c.cached(testScope)
			if _, err := c.revalidate(ctx, testScope, cur.id); err != nil {
				t.Fatal(err)
			}
		}
		// The first check found key 2 (a rotation: given back), the second
		// found key 1 again (kept): nothing more within the interval.
		if n := f.conditional.Load(); n != 2 {
			t.Fatalf("%d forced checks within one interval, want 2", n)
		}
	})
}

// slowKeys is fakeKeys behind a GitHub that takes latency to answer.
type slowKeys struct {
	*fakeKeys
	latency time.Duration
	started atomic.Int32
}

func (f *slowKeys) GetPublicKey(ctx context.Context, s upstream.Scope) (upstream.PublicKey, error) {
	f.started.Add(1)
	select {
	case <-time.After(f.latency):
	case <-ctx.Done():
		return upstream.PublicKey{}, ctx.Err()
	}
	return f.fakeKeys.GetPublicKey(ctx, s)
}

// A key fetch started by a caller with a short deadline and joined by
// twenty with more time runs out of time with it: the twenty fetch once
// more, together (it was a fetch each, 21 in all), and all get the key.
func TestKeyCacheImpatientCallerLeavesOneRetry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &slowKeys{fakeKeys: newFakeKeys(t), latency: 5 * time.Second}
		c := newKeyCache(f, time.Hour)
		impatient, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		var wg sync.WaitGroup
		wg.Go(func() {
			if _, err := c.get(impatient, testScope); !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("the impatient caller: err = %v, want context.DeadlineExceeded", err)
			}
		})
		synctest.Wait()
		start := time.Now()
		for i := range 20 {
			wg.Go(func() {
				ctx, cancel := context.WithCancel(t.Context())
				if i%2 == 1 {
					ctx, cancel = context.WithTimeout(t.Context(), time.Duration(10+i)*time.Second)
				}
				defer cancel()
				if _, err := c.get(ctx, testScope); err != nil {
					t.Errorf("caller %d: %v", i, err)
				}
				if at := time.Since(start); at != 6*time.Second {
					t.Errorf("caller %d got the key after %v, want 6s", i, at)
				}
			})
		}
		wg.Wait()
		if got := f.started.Load(); got != 2 {
			t.Errorf("%d key fetches, want 2 (the impatient caller's, one retry)", got)
		}
	})
}
