package service

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/upstream"
)

// pageRecorder records the GitHub pages the service asks its upstream for.
type pageRecorder struct {
	Upstream
	mu    sync.Mutex
	pages []upstream.Page
}

func (r *pageRecorder) record(p upstream.Page) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pages = append(r.pages, p)
}

// take returns the pages asked for since the last take.
func (r *pageRecorder) take() []upstream.Page {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.pages
	r.pages = nil
	return out
}

func (r *pageRecorder) ListSecrets(ctx context.Context, s upstream.Scope, p upstream.Page) (upstream.SecretList, error) {
	r.record(p)
	return r.Upstream.ListSecrets(ctx, s, p)
}

func (r *pageRecorder) ListSelectedRepositories(ctx context.Context, s upstream.Scope, name string, p upstream.Page) (upstream.RepositoryList, error) {
	r.record(p)
	return r.Upstream.ListSelectedRepositories(ctx, s, name, p)
}

func (r *pageRecorder) ListRepositoryOrganizationSecrets(ctx context.Context, s upstream.Scope, p upstream.Page) (upstream.SecretList, error) {
	r.record(p)
	return r.Upstream.ListRepositoryOrganizationSecrets(ctx, s, p)
}

// newRecordingHarness is newHarness with o and a pageRecorder around the
// upstream client.
func newRecordingHarness(t *testing.T, o harnessOpts) (*harness, *pageRecorder) {
	t.Helper()
	rec := &pageRecorder{}
	o.wrap = func(up Upstream) Upstream {
		rec.Upstream = up
		return rec
	}
	return newHarness(t, o), rec
}

// putSecrets puts n secrets named prefix00, prefix01, ... in parent (org
// secrets visible to all repositories) and returns their names in order.
func putSecrets(ctx context.Context, t *testing.T, h *harness, parent, prefix string, n int) []string {
	t.Helper()
	var names []string
	for i := range n {
		name := fmt.Sprintf("%s%02d", prefix, i)
		req := plain(parent+"/secrets/"+name, "v")
		if strings.HasPrefix(parent, "orgs/") {
			req.Visibility = "all"
		}
		if _, err := h.broker.PutSecret(ctx, req); err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
	}
	return names
}

// aPage is one page of one of the three lists, as ids.
type aPage struct {
	items []string
	total int32
	next  string
}

// secretsPage is a page of a list of secrets, by their secret ids.
func secretsPage(resp interface {
	GetTotalCount() int32
	GetNextPageToken() string
	GetSecrets() []*secretbrokerv1.Secret
}) aPage {
	p := aPage{total: resp.GetTotalCount(), next: resp.GetNextPageToken()}
	for _, s := range resp.GetSecrets() {
		p.items = append(p.items, s.GetSecretId())
	}
	return p
}

// paginated is one of the broker's paginated lists.
type paginated struct {
	name string
	// seed fills the list (23 items) and returns its items in order.
	seed func(ctx context.Context, t *testing.T, h *harness) []string
	list func(ctx context.Context, h *harness, size int32, token string) (aPage, error)
}

const pagedSecret = "orgs/octo-org/actions/secrets/PAGED"

var paginatedLists = []paginated{
	{
		name: "ListSecrets",
		seed: func(ctx context.Context, t *testing.T, h *harness) []string {
			return putSecrets(ctx, t, h, repoScope, "S", 23)
		},
		list: func(ctx context.Context, h *harness, size int32, token string) (aPage, error) {
			resp, err := h.broker.ListSecrets(ctx, &secretbrokerv1.ListSecretsRequest{Parent: repoScope, PageSize: size, PageToken: token})
			return secretsPage(resp), err
		},
	},
	{
		name: "ListRepositoryOrganizationSecrets",
		seed: func(ctx context.Context, t *testing.T, h *harness) []string {
			return putSecrets(ctx, t, h, orgScope, "O", 23)
		},
		list: func(ctx context.Context, h *harness, size int32, token string) (aPage, error) {
			resp, err := h.broker.ListRepositoryOrganizationSecrets(ctx, &secretbrokerv1.ListRepositoryOrganizationSecretsRequest{Parent: repoScope, PageSize: size, PageToken: token})
			return secretsPage(resp), err
		},
	},
	{
		name: "ListSelectedRepositories",
		seed: func(ctx context.Context, t *testing.T, h *harness) []string {
			var ids []int64
			var want []string
			for i := range 23 {
				id := h.emu.AddRepo("octo-org", fmt.Sprintf("repo-%02d", i), false)
				ids = append(ids, id)
				want = append(want, fmt.Sprint(id))
			}
			req := plain(pagedSecret, "v")
			req.Visibility, req.SelectedRepositoryIds = "selected", ids
			if _, err := h.broker.PutSecret(ctx, req); err != nil {
				t.Fatal(err)
			}
			return want
		},
		list: func(ctx context.Context, h *harness, size int32, token string) (aPage, error) {
			resp, err := h.broker.ListSelectedRepositories(ctx, &secretbrokerv1.ListSelectedRepositoriesRequest{Name: pagedSecret, PageSize: size, PageToken: token})
			p := aPage{total: resp.GetTotalCount(), next: resp.GetNextPageToken()}
			for _, r := range resp.GetRepositories() {
				p.items = append(p.items, fmt.Sprint(r.GetId()))
			}
			return p, err
		},
	},
}

// walk lists every page, with the page sizes of sizes in turn (cycling),
// and returns the items and the GitHub pages asked for each page.
func walk(ctx context.Context, t *testing.T, h *harness, rec *pageRecorder, l paginated, sizes []int32) ([]string, [][]upstream.Page) {
	t.Helper()
	rec.take()
	var items []string
	var asked [][]upstream.Page
	token := ""
	for i := 0; ; i++ {
		if i > 50 {
			t.Fatal("the list does not end")
		}
		p, err := l.list(ctx, h, sizes[i%len(sizes)], token)
		if err != nil {
			t.Fatalf("page %d (page_size %d): %v", i, sizes[i%len(sizes)], err)
		}
		asked = append(asked, rec.take())
		items = append(items, p.items...)
		if token = p.next; token == "" {
			return items, asked
		}
	}
}

// TestPageSizeMayChange: AIP-158 — a request for a following page may
// change page_size, and the walk still returns every item once, in order.
func TestPageSizeMayChange(t *testing.T) {
	walks := []struct {
		name  string
		sizes []int32
	}{
		{"2, 3, 5, 30", []int32{2, 3, 5, 30}},
		{"2, 3, 5, default", []int32{2, 3, 5, 0}},
		{"5, 3, 2", []int32{5, 3, 2}},
		{"1, 7, 4", []int32{1, 7, 4}},
		{"3, 2", []int32{3, 2}},
		{"4, above max", []int32{4, 500}},
		{"1, 99: a page ending at 100", []int32{1, 99}},
		{"100", []int32{100}},
		{"constant 2", []int32{2}},
		{"constant default", []int32{0}},
	}
	for _, l := range paginatedLists {
		t.Run(l.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h, rec := newRecordingHarness(t, harnessOpts{})
				ctx := t.Context()
				want := l.seed(ctx, t, h)
				for _, w := range walks {
					got, asked := walk(ctx, t, h, rec, l, w.sizes)
					if !slices.Equal(got, want) {
						t.Errorf("%s: walk returned %v, want %v", w.name, got, want)
					}
					for i, a := range asked {
						if len(a) != 1 {
							t.Errorf("%s: page %d asked GitHub for %+v, want one page", w.name, i, a)
						}
					}
				}
			})
		})
	}
}

// TestAlignedPagesCostOneRequest: a caller who keeps page_size costs one
// GitHub request per page, for GitHub's page of that size, as before page
// tokens held offsets.
func TestAlignedPagesCostOneRequest(t *testing.T) {
	for _, l := range paginatedLists {
		t.Run(l.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h, rec := newRecordingHarness(t, harnessOpts{})
				ctx := t.Context()
				want := l.seed(ctx, t, h)
				before := len(h.upstream.calls("GET"))
				got, asked := walk(ctx, t, h, rec, l, []int32{5})
				if !slices.Equal(got, want) {
					t.Fatalf("walk returned %v, want %v", got, want)
				}
				wantAsked := [][]upstream.Page{
					{{Page: 1, PerPage: 5}}, {{Page: 2, PerPage: 5}}, {{Page: 3, PerPage: 5}}, {{Page: 4, PerPage: 5}}, {{Page: 5, PerPage: 5}},
				}
				if !slices.EqualFunc(asked, wantAsked, slices.Equal) {
					t.Fatalf("GitHub pages asked = %+v, want %+v", asked, wantAsked)
				}
				if sent := len(h.upstream.calls("GET")) - before; sent != len(wantAsked) {
					t.Fatalf("%d GET requests reached GitHub for %d pages", sent, len(wantAsked))
				}
			})
		})
	}
}

// TestUnalignedPageCost: a page that starts off GitHub's pages of its size
// is one request for a larger per_page that holds it, or two pages when
// none up to 100 does.
func TestUnalignedPageCost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, rec := newRecordingHarness(t, harnessOpts{})
		ctx := t.Context()
		names := putSecrets(ctx, t, h, repoScope, "S", 65)
		steps := []struct {
			size  int32
			want  []string
			asked []upstream.Page
		}{
			{size: 2, want: names[0:2], asked: []upstream.Page{{Page: 1, PerPage: 2}}},
			{size: 3, want: names[2:5], asked: []upstream.Page{{Page: 1, PerPage: 5}}},
			{size: 36, want: names[5:41], asked: []upstream.Page{{Page: 1, PerPage: 41}}},
			{size: 60, want: names[41:65], asked: []upstream.Page{{Page: 1, PerPage: 60}, {Page: 2, PerPage: 60}}},
		}
		l := paginatedLists[0]
		token := ""
		for i, s := range steps {
			rec.take()
			before := len(h.upstream.calls("GET"))
			p, err := l.list(ctx, h, s.size, token)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(p.items, s.want) || p.total != 65 {
				t.Fatalf("step %d: page %v (total %d), want %v (total 65)", i, p.items, p.total, s.want)
			}
			if asked := rec.take(); !slices.Equal(asked, s.asked) {
				t.Fatalf("step %d: GitHub pages asked = %+v, want %+v", i, asked, s.asked)
			}
			if sent := len(h.upstream.calls("GET")) - before; sent != len(s.asked) {
				t.Fatalf("step %d: %d GET requests reached GitHub, want %d", i, sent, len(s.asked))
			}
			if last := i == len(steps)-1; (p.next == "") != last {
				t.Fatalf("step %d: next_page_token %q", i, p.next)
			}
			token = p.next
		}
	})
}

// TestFilteredPageSizeMayChange: a caller who may read only some secrets
// walks those, in order, whatever page sizes they ask for; total_count and
// the tokens count only those.
func TestFilteredPageSizeMayChange(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, _ := newRecordingHarness(t, harnessOpts{authz: mustPolicy(t)})
		admin := as(t.Context(), "token:admin")
		pay := as(t.Context(), "token:pay")
		var want []string
		for i := range 23 {
			name := fmt.Sprintf("OTHER_%02d", i)
			if i%3 != 0 {
				name = fmt.Sprintf("PAY_%02d", i)
				want = append(want, name)
			}
			if _, err := h.broker.PutSecret(admin, plain(repoScope+"/secrets/"+name, "v")); err != nil {
				t.Fatal(err)
			}
		}
		slices.Sort(want)
		for _, sizes := range [][]int32{{2, 3, 5, 30}, {5, 3, 2}, {1, 7, 4}, {4}, {1, 99}, {100}, {0}} {
			var got []string
			token := ""
			for i := 0; ; i++ {
				resp, err := h.broker.ListSecrets(pay, &secretbrokerv1.ListSecretsRequest{Parent: repoScope, PageSize: sizes[i%len(sizes)], PageToken: token})
				if err != nil {
					t.Fatal(err)
				}
				if resp.GetTotalCount() != int32(len(want)) {
					t.Fatalf("total_count = %d, want %d", resp.GetTotalCount(), len(want))
				}
				for _, s := range resp.GetSecrets() {
					got = append(got, s.GetSecretId())
				}
				if token = resp.GetNextPageToken(); token == "" || i > 30 {
					break
				}
			}
			if !slices.Equal(got, want) {
				t.Errorf("sizes %v: walk returned %v, want %v", sizes, got, want)
			}
		}
	})
}

// TestPageTokens: the request from the issue (a token issued for
// page_size 2 used with 3, and with none), a token from another list, and
// a token issued before offsets (p1).
func TestPageTokens(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, rec := newRecordingHarness(t, harnessOpts{})
		ctx := t.Context()
		names := putSecrets(ctx, t, h, repoScope, "S", 23)
		ls := paginatedLists[0]
		first, err := ls.list(ctx, h, 2, "")
		if err != nil || first.next == "" {
			t.Fatalf("first page: %+v, %v", first, err)
		}
		putSecrets(ctx, t, h, orgScope, "O", 2)
		orgTok, err := h.broker.ListSecrets(ctx, &secretbrokerv1.ListSecretsRequest{Parent: orgScope, PageSize: 1})
		if err != nil || orgTok.GetNextPageToken() == "" {
			t.Fatalf("organization list: %+v, %v", orgTok, err)
		}

		tests := []struct {
			name     string
			list     paginated
			size     int32
			token    string
			want     []string
			wantNext bool
			asked    []upstream.Page
			code     codes.Code
		}{
			{name: "page_size changed", list: ls, size: 3, token: first.next, want: names[2:5], wantNext: true, asked: []upstream.Page{{Page: 1, PerPage: 5}}},
			{name: "page_size left out", list: ls, token: first.next, want: names[2:23], asked: []upstream.Page{{Page: 1, PerPage: 32}}},
			{name: "page_size kept", list: ls, size: 2, token: first.next, want: names[2:4], wantNext: true, asked: []upstream.Page{{Page: 2, PerPage: 2}}},
			{name: "token of another scope", list: ls, size: 2, token: orgTok.GetNextPageToken(), code: codes.InvalidArgument},
			{name: "token of another list", list: paginatedLists[1], size: 2, token: first.next, code: codes.InvalidArgument},
			{name: "p1 token, same size", list: ls, size: 5, token: legacyToken(repoScope, 3, 5), want: names[10:15], wantNext: true, asked: []upstream.Page{{Page: 3, PerPage: 5}}},
			{name: "p1 token, other size", list: ls, size: 3, token: legacyToken(repoScope, 3, 5), want: names[10:13], wantNext: true, asked: []upstream.Page{{Page: 3, PerPage: 5}}},
			{name: "p1 token, default size", list: ls, token: legacyToken(repoScope, 3, 5), want: names[10:23], asked: []upstream.Page{{Page: 1, PerPage: 40}}},
			{name: "p1 token of another list", list: ls, size: 5, token: legacyToken(orgScope, 3, 5), code: codes.InvalidArgument},
			{name: "negative page_size", list: ls, size: -1, token: first.next, code: codes.InvalidArgument},
		}
		for _, tt := range tests {
			rec.take()
			p, err := tt.list.list(ctx, h, tt.size, tt.token)
			if tt.code != codes.OK {
				if got := status.Code(err); got != tt.code {
					t.Errorf("%s: code = %v (%v), want %v", tt.name, got, err, tt.code)
				}
				if asked := rec.take(); len(asked) != 0 {
					t.Errorf("%s: a refused request asked GitHub for %+v", tt.name, asked)
				}
				continue
			}
			if err != nil {
				t.Errorf("%s: %v", tt.name, err)
				continue
			}
			if !slices.Equal(p.items, tt.want) || (p.next != "") != tt.wantNext || p.total != 23 {
				t.Errorf("%s: page %v (total %d, next %q), want %v (next: %v)", tt.name, p.items, p.total, p.next, tt.want, tt.wantNext)
			}
			if asked := rec.take(); !slices.Equal(asked, tt.asked) {
				t.Errorf("%s: GitHub pages asked = %+v, want %+v", tt.name, asked, tt.asked)
			}
		}
	})
}
