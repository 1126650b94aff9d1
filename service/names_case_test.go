package service

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/grpc/codes"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/upstream"
	"github.com/secretbroker/secretbroker/upstream/emulator"
)

func TestFoldedScope(t *testing.T) {
	tests := []struct {
		name  string
		scope upstream.Scope
		want  string
	}{
		{"org", upstream.Scope{App: upstream.Actions, Org: "Octo-ORG"}, "orgs/octo-org/actions"},
		{"org, agents", upstream.Scope{App: upstream.Agents, Org: "ACME"}, "orgs/acme/agents"},
		{"repo", upstream.Scope{App: upstream.Actions, Owner: "Octo-Org", Repo: "Hello_World.Go"}, "repos/octo-org/hello_world.go/actions"},
		{"already lower", upstream.Scope{App: upstream.Actions, Owner: "o", Repo: "r"}, "repos/o/r/actions"},
		{"environment kept as spelled", upstream.Scope{App: upstream.Actions, Owner: "O", Repo: "R", Environment: "Prod/EU"}, "repos/o/r/environments/Prod%2FEU"},
		{"only ASCII folded", upstream.Scope{App: upstream.Actions, Org: "\u212aelvin"}, "orgs/" + "%E2%84%AAelvin" + "/actions"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := foldedScope(tt.scope); got != tt.want {
				t.Fatalf("foldedScope = %q, want %q", got, tt.want)
			}
		})
	}
}

// caseVariants returns n spellings of s, each upper-casing a different
// subset of its letters (the first is s as given), between prefix and
// suffix.
func caseVariants(prefix, s, suffix string, n int) []string {
	out := make([]string, 0, n)
	for i := range n {
		var b strings.Builder
		b.WriteString(prefix)
		bit := 0
		for _, r := range s {
			if 'a' <= r && r <= 'z' {
				if i&(1<<bit) != 0 {
					r -= 'a' - 'A'
				}
				bit++
			}
			b.WriteRune(r)
		}
		b.WriteString(suffix)
		out = append(out, b.String())
	}
	return out
}

// Case variants of one scope share one key cache entry and one key fetch
// from GitHub (the audit's 200 variants cost 200 entries and 200 fetches);
// spellings that differ in the environment name only are kept apart, and
// every variant is handed the same key.
func TestCaseVariantsShareOneKeyFetch(t *testing.T) {
	tests := []struct {
		name    string
		parents []string
		route   string
		fetches int // key requests to GitHub
		entries int // key cache entries
	}{
		{
			name:    "repository, 200 variants",
			parents: caseVariants("repos/", "octo-org/hello-world", "/actions", 200),
			route:   emulator.RouteGetRepoPublicKey, fetches: 1, entries: 1,
		},
		{
			name:    "organization, 64 variants",
			parents: caseVariants("orgs/", "octo-org", "/actions", 64),
			route:   emulator.RouteGetOrgPublicKey, fetches: 1, entries: 1,
		},
		{
			name: "environment, owner and repository variants",
			parents: []string{
				"repos/octo-org/hello-world/environments/staging",
				"repos/Octo-Org/Hello-World/environments/staging",
				"repos/OCTO-ORG/hello-WORLD/environments/staging",
			},
			route: emulator.RouteGetEnvPublicKey, fetches: 1, entries: 1,
		},
		{
			name: "environment name variants are not folded",
			parents: []string{
				"repos/octo-org/hello-world/environments/staging",
				"repos/octo-org/hello-world/environments/Staging",
				"repos/Octo-Org/hello-world/environments/Staging",
			},
			route: emulator.RouteGetEnvPublicKey, fetches: 2, entries: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				d := newDirect(t, time.Hour)
				var first *secretbrokerv1.PublicKey
				for _, parent := range tt.parents {
					pk := d.publicKey(t, parent)
					if first == nil {
						first = pk
					} else if pk.GetKeyId() != first.GetKeyId() || pk.GetKey() != first.GetKey() {
						t.Fatalf("%s: key %s, but %s had %s", parent, pk.GetKeyId(), tt.parents[0], first.GetKeyId())
					}
				}
				if got := d.emu.Count(tt.route); got != tt.fetches {
					t.Errorf("%d key requests to GitHub for %d spellings, want %d", got, len(tt.parents), tt.fetches)
				}
				if got := d.emu.TotalRequests(); got != tt.fetches {
					t.Errorf("%d requests in all, want only the %d key requests", got, tt.fetches)
				}
				if got := d.srv.keys.len(); got != tt.entries {
					t.Errorf("%d key cache entries for %d spellings, want %d", got, len(tt.parents), tt.entries)
				}
			})
		})
	}
}

// Concurrent misses for case variants of one scope are one fetch.
func TestCaseVariantsConcurrentMissesShareOneFetch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeKeys(t)
		f.gate = make(chan struct{})
		c := newKeyCache(f, time.Hour)
		var wg sync.WaitGroup
		for _, owner := range caseVariants("", "octo-org", "", 16) {
			s := upstream.Scope{App: upstream.Actions, Owner: owner, Repo: "Hello-World"}
			wg.Go(func() {
				if _, err := c.get(t.Context(), s); err != nil {
					t.Error(err)
				}
			})
		}
		synctest.Wait()
		close(f.gate)
		wg.Wait()
		if got := f.calls.Load(); got != 1 {
			t.Fatalf("16 concurrent spellings of one scope made %d fetches, want 1", got)
		}
		if got := c.len(); got != 1 {
			t.Fatalf("%d key cache entries, want 1", got)
		}
	})
}

// Writes under any spelling of a scope share the scope's cached key, and
// the names handed back keep each caller's spelling.
func TestCaseVariantsPutKeepsCallersSpelling(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := newDirect(t, time.Hour)
		for i, parent := range caseVariants("repos/", "octo-org/hello-world", "/actions", 8) {
			name := fmt.Sprintf("%s/secrets/CASE_%d", parent, i)
			resp, err := d.srv.PutSecret(t.Context(), plain(name, plantedSecret))
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if resp.GetName() != name {
				t.Fatalf("PutSecret(%s) named the secret %s", name, resp.GetName())
			}
		}
		if got := d.emu.Count(emulator.RouteGetRepoPublicKey); got != 1 {
			t.Fatalf("%d key requests for 8 spellings, want 1", got)
		}
		if got := d.emu.Count(emulator.RoutePutRepoSecret); got != 8 {
			t.Fatalf("%d puts, want 8", got)
		}
	})
}

// Policy matching is unchanged: it sees the caller's spelling, so a caller
// allowed one spelling is refused another even when the key is cached
// under the shared entry, and nothing is sent to GitHub for the refusal.
func TestCaseVariantsPolicySeesCallersSpelling(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, harnessOpts{authz: mustPolicy(t)})
		staging := as(t.Context(), "token:staging")
		if _, err := h.broker.GetPublicKey(staging, &secretbrokerv1.GetPublicKeyRequest{Parent: stagingEnv}); err != nil {
			t.Fatal(err)
		}
		h.emu.ResetCounts()
		for _, parent := range []string{
			"repos/Octo-Org/hello-world/environments/staging",
			"repos/octo-org/Hello-World/environments/staging",
		} {
			_, err := h.broker.GetPublicKey(staging, &secretbrokerv1.GetPublicKeyRequest{Parent: parent})
			wantCode(t, err, codes.PermissionDenied)
		}
		if _, err := h.broker.GetPublicKey(staging, &secretbrokerv1.GetPublicKeyRequest{Parent: stagingEnv}); err != nil {
			t.Fatal(err)
		}
		if got := h.emu.TotalRequests(); got != 0 {
			t.Fatalf("%d requests to GitHub, want 0", got)
		}
	})
}

// A write under one spelling of a scope ends the generation of reads
// under every spelling: a list that begins after it never joins one that
// began before it, whatever the spelling. Reads are shared only between
// callers who spell the scope alike.
func TestSharedReadsWriteEndsEverySpellingsGeneration(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		u := &countingLists{gate: make(chan struct{}), calls: map[string]int{}}
		r := &sharedReads{Upstream: u}
		lower := upstream.Scope{App: upstream.Actions, Owner: "octo-org", Repo: "hello-world"}
		upper := upstream.Scope{App: upstream.Actions, Owner: "Octo-Org", Repo: "Hello-World"}
		page := upstream.Page{Page: 1, PerPage: 100}
		var wg sync.WaitGroup
		defer func() { // also on failure, so that no list is left held
			close(u.gate)
			wg.Wait()
		}()
		list := func(s upstream.Scope) {
			wg.Go(func() {
				if _, err := r.ListSecrets(t.Context(), s, page); err != nil {
					t.Error(err)
				}
			})
			synctest.Wait()
		}
		want := func(lowerCalls, upperCalls int) {
			t.Helper()
			u.mu.Lock()
			defer u.mu.Unlock()
			if got := u.calls[lower.Path()]; got != lowerCalls {
				t.Errorf("%d lists of %s, want %d", got, lower, lowerCalls)
			}
			if got := u.calls[upper.Path()]; got != upperCalls {
				t.Errorf("%d lists of %s, want %d", got, upper, upperCalls)
			}
		}
		list(lower)
		list(upper) // another spelling: its own request
		want(1, 1)
		if err := r.DeleteSecret(t.Context(), upper, "X"); err != nil {
			t.Fatal(err)
		}
		list(lower) // began after a write to the scope under another spelling
		want(2, 1)
		list(upper)
		want(2, 2)
		list(lower) // same generation and spelling: joins
		want(2, 2)
	})
}
