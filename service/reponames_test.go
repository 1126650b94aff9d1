package service

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/upstream"
)

// repoLookups counts the GET /repos/{owner}/{repo} requests the harness's
// upstream sent for name in octo-org.
func (h *harness) repoLookups(name string) int {
	n := 0
	for _, c := range h.upstream.calls("GET") {
		if strings.EqualFold(c.path, "/repos/octo-org/"+name) {
			n++
		}
	}
	return n
}

// writes counts the requests that change something upstream.
func (h *harness) writes() int {
	return len(h.upstream.calls("PUT")) + len(h.upstream.calls("DELETE")) + len(h.upstream.calls("POST"))
}

func (h *harness) selection(t *testing.T, secret string) []int64 {
	t.Helper()
	ids, err := h.emu.SelectedRepositoryIDs("orgs/octo-org/actions", secret)
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func sortedIDs(ids ...int64) []int64 {
	out := slices.Clone(ids)
	slices.Sort(out)
	return out
}

func valueOf(v string) *secretbrokerv1.PutSecretRequest_Value {
	return &secretbrokerv1.PutSecretRequest_Value{Value: v}
}

// TestRepositoryNames drives every RPC that selects repositories with
// names, through the service against the emulator. Mixed names and ids
// are accepted: the selection is both lists together.
func TestRepositoryNames(t *testing.T) {
	const secret = "NAMED"
	name := "orgs/octo-org/actions/secrets/" + secret
	type ids func(h *harness) []int64
	demo := func(names ...string) ids {
		return func(h *harness) []int64 {
			var out []int64
			for _, n := range names {
				out = append(out, h.repoID(t, n))
			}
			return sortedIDs(out...)
		}
	}
	for _, tt := range []struct {
		name string
		// setup runs first, on a fresh harness: it creates the secret
		// with the selection hello-world when set.
		setup bool
		call  func(ctx context.Context, h *harness) error
		// want is the selection afterwards; nil when the call fails.
		want ids
		// wantCode and wantMsg describe a failure; wantNot must not be in
		// its message.
		wantCode codes.Code
		wantMsg  []string
		wantNot  []string
		// lookups is how many GET /repos/octo-org/... the call sends.
		lookups int
	}{
		{
			name: "PutSecret creates with names",
			call: func(ctx context.Context, h *harness) error {
				_, err := h.broker.PutSecret(ctx, &secretbrokerv1.PutSecretRequest{Name: name, Payload: valueOf("v"),
					Visibility: "selected", SelectedRepositories: []string{"hello-world", "docs"}})
				return err
			},
			want: demo("hello-world", "docs"), lookups: 2,
		},
		{
			name: "PutSecret with names and ids, and a name twice in another case",
			call: func(ctx context.Context, h *harness) error {
				_, err := h.broker.PutSecret(ctx, &secretbrokerv1.PutSecretRequest{Name: name, Payload: valueOf("v"),
					Visibility: "selected", SelectedRepositoryIds: []int64{h.repoID(t, "secret-sauce"), h.repoID(t, "docs")},
					SelectedRepositories: []string{"Hello-World", "hello-world", "docs"}})
				return err
			},
			want: demo("hello-world", "docs", "secret-sauce"), lookups: 2,
		},
		{
			name:  "PutSecret updates the selection by name",
			setup: true,
			call: func(ctx context.Context, h *harness) error {
				_, err := h.broker.PutSecret(ctx, &secretbrokerv1.PutSecretRequest{Name: name, Payload: valueOf("v2"),
					Visibility: "selected", SelectedRepositories: []string{"secret-sauce"}})
				return err
			},
			want: demo("secret-sauce"), lookups: 1,
		},
		{
			name:  "PutSecret with missing names names exactly those, and writes nothing",
			setup: true,
			call: func(ctx context.Context, h *harness) error {
				_, err := h.broker.PutSecret(ctx, &secretbrokerv1.PutSecretRequest{Name: name, Payload: valueOf("v2"),
					Visibility: "selected", SelectedRepositories: []string{"docs", "no-such-repo", "gone.old", "no-such-repo"}})
				return err
			},
			want:     demo("hello-world"), // unchanged
			wantCode: codes.InvalidArgument,
			wantMsg:  []string{`selected_repositories: repositories "no-such-repo", "gone.old" were not found in organization "octo-org"`},
			wantNot:  []string{"docs"},
			lookups:  3,
		},
		{
			name: "PutSecret with names on a repository secret",
			call: func(ctx context.Context, h *harness) error {
				_, err := h.broker.PutSecret(ctx, &secretbrokerv1.PutSecretRequest{Name: "repos/octo-org/hello-world/actions/secrets/X",
					Payload: valueOf("v"), SelectedRepositories: []string{"docs"}})
				return err
			},
			wantCode: codes.InvalidArgument, wantMsg: []string{"selected_repositories: apply to organization secrets only"},
		},
		{
			name: "PutSecret with names and visibility all",
			call: func(ctx context.Context, h *harness) error {
				_, err := h.broker.PutSecret(ctx, &secretbrokerv1.PutSecretRequest{Name: name, Payload: valueOf("v"),
					Visibility: "all", SelectedRepositories: []string{"docs"}})
				return err
			},
			wantCode: codes.InvalidArgument, wantMsg: []string{`selected_repositories: may be given only with visibility "selected"`},
		},
		{
			name: "PutSecret with an owner in the name",
			call: func(ctx context.Context, h *harness) error {
				_, err := h.broker.PutSecret(ctx, &secretbrokerv1.PutSecretRequest{Name: name, Payload: valueOf("v"),
					Visibility: "selected", SelectedRepositories: []string{"octo-org/docs"}})
				return err
			},
			wantCode: codes.InvalidArgument, wantMsg: []string{`"octo-org/docs": give the repository's name in the secret's organization`},
		},
		{
			name: "PutSecret with a name that is not a repository name",
			call: func(ctx context.Context, h *harness) error {
				_, err := h.broker.PutSecret(ctx, &secretbrokerv1.PutSecretRequest{Name: name, Payload: valueOf("v"),
					Visibility: "selected", SelectedRepositories: []string{".."}})
				return err
			},
			wantCode: codes.InvalidArgument, wantMsg: []string{"selected_repositories: repository name must be"},
		},
		{
			name:  "SetSelectedRepositories by name and id",
			setup: true,
			call: func(ctx context.Context, h *harness) error {
				_, err := h.broker.SetSelectedRepositories(ctx, &secretbrokerv1.SetSelectedRepositoriesRequest{Name: name,
					SelectedRepositoryIds: []int64{h.repoID(t, "docs")}, SelectedRepositories: []string{"secret-sauce"}})
				return err
			},
			want: demo("docs", "secret-sauce"), lookups: 1,
		},
		{
			name:  "SetSelectedRepositories with a missing name",
			setup: true,
			call: func(ctx context.Context, h *harness) error {
				_, err := h.broker.SetSelectedRepositories(ctx, &secretbrokerv1.SetSelectedRepositoriesRequest{Name: name,
					SelectedRepositories: []string{"docs", "nowhere"}})
				return err
			},
			want:     demo("hello-world"),
			wantCode: codes.InvalidArgument,
			wantMsg:  []string{`selected_repositories: repository "nowhere" was not found in organization "octo-org"`},
			wantNot:  []string{"docs"},
			lookups:  2,
		},
		{
			name:  "AddSelectedRepository by name",
			setup: true,
			call: func(ctx context.Context, h *harness) error {
				_, err := h.broker.AddSelectedRepository(ctx, &secretbrokerv1.AddSelectedRepositoryRequest{Name: name, Repository: "DOCS"})
				return err
			},
			want: demo("hello-world", "docs"), lookups: 1,
		},
		{
			name:  "AddSelectedRepository by id in repository",
			setup: true,
			call: func(ctx context.Context, h *harness) error {
				_, err := h.broker.AddSelectedRepository(ctx, &secretbrokerv1.AddSelectedRepositoryRequest{Name: name,
					Repository: itoa(h.repoID(t, "secret-sauce"))})
				return err
			},
			want: demo("hello-world", "secret-sauce"),
		},
		{
			name:  "AddSelectedRepository with a missing name",
			setup: true,
			call: func(ctx context.Context, h *harness) error {
				_, err := h.broker.AddSelectedRepository(ctx, &secretbrokerv1.AddSelectedRepositoryRequest{Name: name, Repository: "nowhere"})
				return err
			},
			want:     demo("hello-world"),
			wantCode: codes.InvalidArgument,
			wantMsg:  []string{`repository: repository "nowhere" was not found in organization "octo-org"`},
			lookups:  1,
		},
		{
			name:  "AddSelectedRepository with repository and repository_id",
			setup: true,
			call: func(ctx context.Context, h *harness) error {
				_, err := h.broker.AddSelectedRepository(ctx, &secretbrokerv1.AddSelectedRepositoryRequest{Name: name,
					Repository: "docs", RepositoryId: h.repoID(t, "docs")})
				return err
			},
			want:     demo("hello-world"),
			wantCode: codes.InvalidArgument, wantMsg: []string{"give repository or repository_id, not both"},
		},
		{
			name:  "AddSelectedRepository with neither",
			setup: true,
			call: func(ctx context.Context, h *harness) error {
				_, err := h.broker.AddSelectedRepository(ctx, &secretbrokerv1.AddSelectedRepositoryRequest{Name: name})
				return err
			},
			want:     demo("hello-world"),
			wantCode: codes.InvalidArgument, wantMsg: []string{"repository_id: give the repository"},
		},
		{
			name:  "RemoveSelectedRepository by name",
			setup: true,
			call: func(ctx context.Context, h *harness) error {
				_, err := h.broker.RemoveSelectedRepository(ctx, &secretbrokerv1.RemoveSelectedRepositoryRequest{Name: name, Repository: "hello-world"})
				return err
			},
			want: demo(), lookups: 1,
		},
		{
			name:  "RemoveSelectedRepository with an id too large",
			setup: true,
			call: func(ctx context.Context, h *harness) error {
				_, err := h.broker.RemoveSelectedRepository(ctx, &secretbrokerv1.RemoveSelectedRepositoryRequest{Name: name, Repository: "99999999999999999999"})
				return err
			},
			want:     demo("hello-world"),
			wantCode: codes.InvalidArgument, wantMsg: []string{"is not a positive GitHub repository id"},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, harnessOpts{})
				ctx := t.Context()
				if tt.setup {
					if _, err := h.broker.PutSecret(ctx, &secretbrokerv1.PutSecretRequest{Name: name, Payload: valueOf("v"),
						Visibility: "selected", SelectedRepositoryIds: []int64{h.repoID(t, "hello-world")}}); err != nil {
						t.Fatal(err)
					}
				}
				before, lookupsBefore := h.writes(), len(h.upstream.calls("GET"))
				err := tt.call(ctx, h)
				noLeak(t, err)
				wantCode(t, err, tt.wantCode)
				for _, m := range tt.wantMsg {
					if !strings.Contains(status.Convert(err).Message(), m) {
						t.Errorf("message %q, want it to hold %q", status.Convert(err).Message(), m)
					}
				}
				for _, m := range tt.wantNot {
					if strings.Contains(status.Convert(err).Message(), m) {
						t.Errorf("message %q names %q, which was found", status.Convert(err).Message(), m)
					}
				}
				if tt.wantCode != codes.OK && h.writes() != before {
					t.Errorf("a failed call sent %d writes to GitHub", h.writes()-before)
				}
				lookups := 0
				for _, c := range h.upstream.calls("GET")[lookupsBefore:] {
					if strings.HasPrefix(c.path, "/repos/octo-org/") && strings.Count(c.path, "/") == 3 {
						lookups++
					}
				}
				if lookups != tt.lookups {
					t.Errorf("%d repository lookups, want %d", lookups, tt.lookups)
				}
				if tt.want == nil {
					return
				}
				if got, want := h.selection(t, secret), tt.want(h); !slices.Equal(got, want) {
					t.Errorf("selection %v, want %v", got, want)
				}
			})
		})
	}
}

func itoa(id int64) string { return strconv.FormatInt(id, 10) }

// TestRepositoryNamesCached shows a found name resolved once per
// RepoNameTTL, a name not found asked again each time, and a name asked by
// many calls at once resolved by one request.
func TestRepositoryNamesCached(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, harnessOpts{})
		ctx := t.Context()
		set := func(names ...string) error {
			_, err := h.broker.SetSelectedRepositories(ctx, &secretbrokerv1.SetSelectedRepositoriesRequest{
				Name: "orgs/octo-org/actions/secrets/CACHED", SelectedRepositories: names})
			return err
		}
		// The name is resolved, and cached, between start and stored.
		start := time.Now()
		if _, err := h.broker.PutSecret(ctx, &secretbrokerv1.PutSecretRequest{Name: "orgs/octo-org/actions/secrets/CACHED",
			Payload: valueOf("v"), Visibility: "selected", SelectedRepositories: []string{"hello-world"}}); err != nil {
			t.Fatal(err)
		}
		stored := time.Now()
		for range 3 {
			if err := set("hello-world", "HELLO-WORLD"); err != nil {
				t.Fatal(err)
			}
		}
		if n := h.repoLookups("hello-world"); n != 1 {
			t.Errorf("hello-world looked up %d times in four calls, want 1", n)
		}
		time.Sleep(time.Until(start.Add(DefaultRepoNameTTL - time.Millisecond)))
		if err := set("hello-world"); err != nil || h.repoLookups("hello-world") != 1 {
			t.Errorf("before the TTL: %v, %d lookups, want 1", err, h.repoLookups("hello-world"))
		}
		time.Sleep(time.Until(stored.Add(DefaultRepoNameTTL)))
		if err := set("hello-world"); err != nil || h.repoLookups("hello-world") != 2 {
			t.Errorf("after the TTL: %v, %d lookups, want 2", err, h.repoLookups("hello-world"))
		}
		// A repository created after a failed lookup is found next time.
		for range 2 {
			wantCode(t, set("late"), codes.InvalidArgument)
		}
		if n := h.repoLookups("late"); n != 2 {
			t.Errorf("a missing name looked up %d times in two calls, want 2 (never cached)", n)
		}
		late := h.emu.AddRepo("octo-org", "late", false)
		if err := set("late"); err != nil {
			t.Fatal(err)
		}
		if got := h.selection(t, "CACHED"); !slices.Equal(got, []int64{late}) {
			t.Errorf("selection %v, want [%d]", got, late)
		}
	})
}

// blockingRepos holds every GetRepository until release is closed, and
// counts them.
type blockingRepos struct {
	Upstream
	release chan struct{}
	mu      sync.Mutex
	calls   int
}

func (b *blockingRepos) GetRepository(ctx context.Context, owner, repo string) (upstream.Repository, error) {
	b.mu.Lock()
	b.calls++
	b.mu.Unlock()
	select {
	case <-b.release:
	case <-ctx.Done():
		return upstream.Repository{}, ctx.Err()
	}
	return b.Upstream.(RepositoryGetter).GetRepository(ctx, owner, repo)
}

func TestRepositoryNamesCoalesced(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		blocker := &blockingRepos{release: make(chan struct{})}
		h := newHarness(t, harnessOpts{wrap: func(up Upstream) Upstream { blocker.Upstream = up; return blocker }})
		ctx := t.Context()
		const callers = 5
		errs := make(chan error, callers)
		for i := range callers {
			go func() {
				_, err := h.broker.PutSecret(ctx, &secretbrokerv1.PutSecretRequest{Name: "orgs/octo-org/actions/secrets/C" + itoa(int64(i)),
					Payload: valueOf("v"), Visibility: "selected", SelectedRepositories: []string{"docs"}})
				errs <- err
			}()
		}
		synctest.Wait() // every caller waits for the one lookup
		blocker.mu.Lock()
		calls := blocker.calls
		blocker.mu.Unlock()
		close(blocker.release)
		for range callers {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		if calls != 1 || h.repoLookups("docs") != 1 {
			t.Errorf("%d callers at once: %d GetRepository calls, %d requests, want 1", callers, calls, h.repoLookups("docs"))
		}
	})
}

// TestRepositoryNamesBatch shows a batch resolving each distinct name once,
// even a name that is not found (which is never cached), and failing
// exactly the items that name a missing repository.
func TestRepositoryNamesBatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, harnessOpts{})
		ctx := t.Context()
		item := func(secret string, names ...string) *secretbrokerv1.PutSecretRequest {
			return &secretbrokerv1.PutSecretRequest{Name: "orgs/octo-org/actions/secrets/" + secret, Payload: valueOf("v"),
				Visibility: "selected", SelectedRepositories: names}
		}
		reqs := []*secretbrokerv1.PutSecretRequest{
			item("B0", "hello-world"),
			item("B1", "hello-world", "docs"),
			item("B2", "missing", "docs"),
			item("B3", "Missing"),
			item("B4", "docs"),
			{Name: "orgs/octo-org/actions/secrets/B5", Payload: valueOf("v"), Visibility: "all"},
		}
		resp, err := h.broker.BatchPutSecrets(ctx, &secretbrokerv1.BatchPutSecretsRequest{Requests: reqs})
		if err != nil {
			t.Fatal(err)
		}
		hello, docs := h.repoID(t, "hello-world"), h.repoID(t, "docs")
		want := []struct {
			code codes.Code
			ids  []int64
		}{
			{codes.OK, []int64{hello}},
			{codes.OK, sortedIDs(hello, docs)},
			{codes.InvalidArgument, nil},
			{codes.InvalidArgument, nil},
			{codes.OK, []int64{docs}},
			{codes.OK, nil},
		}
		for i, r := range resp.GetResults() {
			if codes.Code(r.GetCode()) != want[i].code {
				t.Errorf("item %d: %v %q, want %v", i, r.GetCode(), r.GetMessage(), want[i].code)
				continue
			}
			if want[i].code != codes.OK {
				if !strings.Contains(r.GetMessage(), "was not found in organization") || !strings.Contains(r.GetMessage(), reqs[i].GetSelectedRepositories()[0]) ||
					strings.Contains(r.GetMessage(), "docs") {
					t.Errorf("item %d: message %q, want the missing name only", i, r.GetMessage())
				}
				if _, err := h.emu.SelectedRepositoryIDs("orgs/octo-org/actions", r.GetName()[len("orgs/octo-org/actions/secrets/"):]); err == nil {
					t.Errorf("item %d: written despite a missing name", i)
				}
				continue
			}
			if got := h.selection(t, r.GetName()[len("orgs/octo-org/actions/secrets/"):]); !slices.Equal(got, want[i].ids) {
				t.Errorf("item %d: selection %v, want %v", i, got, want[i].ids)
			}
		}
		for _, n := range []string{"hello-world", "docs", "missing"} {
			if got := h.repoLookups(n); got != 1 {
				t.Errorf("%s looked up %d times in one batch, want 1", n, got)
			}
		}
	})
}

// TestRepositoryNamesDenied shows that a caller the policy refuses learns
// nothing about names: no lookup is sent.
func TestRepositoryNamesDenied(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, harnessOpts{authz: denyAll{}})
		ctx := as(t.Context(), "mallory")
		_, err := h.broker.PutSecret(ctx, &secretbrokerv1.PutSecretRequest{Name: "orgs/octo-org/actions/secrets/D", Payload: valueOf("v"),
			Visibility: "selected", SelectedRepositories: []string{"secret-sauce"}})
		wantCode(t, err, codes.PermissionDenied)
		_, err = h.broker.AddSelectedRepository(ctx, &secretbrokerv1.AddSelectedRepositoryRequest{Name: "orgs/octo-org/actions/secrets/D", Repository: "secret-sauce"})
		wantCode(t, err, codes.PermissionDenied)
		if n := len(h.upstream.calls("")); n != 0 {
			t.Errorf("a denied caller caused %d requests to GitHub", n)
		}
	})
}

type denyAll struct{}

func (denyAll) Allow(string, string, string) bool      { return false }
func (denyAll) AllowSome(string, string, string) bool  { return false }
func (denyAll) AllowEvery(string, string, string) bool { return false }

// noRepoUpstream is an Upstream without GetRepository.
type noRepoUpstream struct{ Upstream }

func TestRepositoryNamesWithoutResolver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, harnessOpts{wrap: func(up Upstream) Upstream { return noRepoUpstream{up} }})
		_, err := h.broker.PutSecret(t.Context(), &secretbrokerv1.PutSecretRequest{Name: "orgs/octo-org/actions/secrets/N", Payload: valueOf("v"),
			Visibility: "selected", SelectedRepositories: []string{"docs"}})
		wantCode(t, err, codes.InvalidArgument)
		if h.writes() != 0 {
			t.Error("written without resolving the names")
		}
	})
}

func TestParseRepository(t *testing.T) {
	for _, tt := range []struct {
		id         int64
		repository string
		wantID     int64
		wantName   string
		wantErr    string
	}{
		{id: 7, wantID: 7},
		{repository: "7", wantID: 7},
		{repository: "0042", wantID: 42},
		{repository: "hello-world", wantName: "hello-world"},
		{repository: "v1.2_x", wantName: "v1.2_x"},
		{repository: "1e3", wantName: "1e3"},
		{wantErr: "repository_id: give the repository"},
		{id: 7, repository: "x", wantErr: "not both"},
		{id: -1, wantErr: "repository_id: repository id -1 is not a positive"},
		{repository: "0", wantErr: `"0" is not a positive GitHub repository id`},
		{repository: "99999999999999999999", wantErr: "is not a positive GitHub repository id"},
		{repository: "a/b", wantErr: "without an owner"},
		{repository: "..", wantErr: "repository name must be"},
		{repository: "caf\u00e9", wantErr: "may hold only letters"},
		{repository: strings.Repeat("x", 101), wantErr: "1 to 100 characters"},
	} {
		id, name, err := parseRepository("octo-org", tt.id, tt.repository)
		if tt.wantErr != "" {
			var inv *invalidArgError
			if !errors.As(err, &inv) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseRepository(%d, %q) = %v, want an invalid argument with %q", tt.id, tt.repository, err, tt.wantErr)
			}
			continue
		}
		if err != nil || id != tt.wantID || name != tt.wantName {
			t.Errorf("parseRepository(%d, %q) = %d, %q, %v; want %d, %q", tt.id, tt.repository, id, name, err, tt.wantID, tt.wantName)
		}
	}
}

func TestCheckRepoNames(t *testing.T) {
	many := make([]string, maxRepoNames+1)
	for i := range many {
		many[i] = "r" + itoa(int64(i))
	}
	for _, tt := range []struct {
		names   []string
		wantErr string
	}{
		{names: nil},
		{names: []string{"a", "b.c", "d-e_f"}},
		{names: many[:maxRepoNames]},
		{names: many, wantErr: "holds 1001 names; at most 1000"},
		{names: []string{"ok", ""}, wantErr: "repository name must be"},
		{names: []string{"org/x"}, wantErr: "without an owner"},
	} {
		err := checkRepoNames("selected_repositories", "octo-org", tt.names)
		if (err != nil) != (tt.wantErr != "") || err != nil && !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("checkRepoNames(%d names) = %v, want %q", len(tt.names), err, tt.wantErr)
		}
	}
}

func TestMergeIDs(t *testing.T) {
	for _, tt := range []struct{ a, b, want []int64 }{
		{nil, nil, []int64{}},
		{[]int64{3, 1}, []int64{1, 2, 2}, []int64{3, 1, 2}},
		{nil, []int64{5}, []int64{5}},
	} {
		if got := mergeIDs(tt.a, tt.b); !slices.Equal(got, tt.want) {
			t.Errorf("mergeIDs(%v, %v) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}

// TestRepoNamesCacheBound fills the cache past its bound: it keeps at most
// maxRepoNameEntries, dropping expired entries first.
func TestRepoNamesCacheBound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRepoNames(nil, time.Minute)
		r.store("o", "old", 1)
		time.Sleep(2 * time.Minute)
		for i := range maxRepoNameEntries - 1 {
			r.store("o", "n"+itoa(int64(i)), int64(i+2))
		}
		r.store("o", "last", 99)
		if len(r.entries) > maxRepoNameEntries {
			t.Fatalf("%d entries, want at most %d", len(r.entries), maxRepoNameEntries)
		}
		if _, ok := r.entries[repoNameKey("o", "old")]; ok {
			t.Error("the expired entry outlived a full cache")
		}
		if id, ok := r.cached("o", "LAST"); !ok || id != 99 {
			t.Errorf("cached(LAST) = %d, %v", id, ok)
		}
		r.store("o", "more", 100)
		if len(r.entries) > maxRepoNameEntries {
			t.Fatalf("%d entries, want at most %d", len(r.entries), maxRepoNameEntries)
		}
	})
}
