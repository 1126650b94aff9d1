package service

import (
	"context"
	"encoding/base64"
	"errors"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/secretbroker/secretbroker/upstream"
)

// legacyToken is a p1 token as the broker issued them before offsets.
func legacyToken(coll string, page, size int) string {
	return encodeToken(pageToken{version: legacyTokenVersion, page: page, size: size, sum: collectionHash(coll)}.raw())
}

func TestPageFor(t *testing.T) {
	const coll = "orgs/acme/actions"
	next := nextPageToken(coll, window{offset: 0, size: 10}, true)
	tests := []struct {
		name     string
		size     int32
		token    string
		want     window
		wantErr  string
		collName string
	}{
		{name: "default size", want: window{0, 30}},
		{name: "explicit size", size: 7, want: window{0, 7}},
		{name: "coerced to 100", size: 500, want: window{0, 100}},
		{name: "negative", size: -1, wantErr: "page_size: must not be negative"},
		{name: "next page", size: 10, token: next, want: window{10, 10}},
		{name: "size changed", size: 20, token: next, want: window{10, 20}},
		{name: "size changed to default", token: next, want: window{10, 30}},
		{name: "size changed above max", size: 101, token: next, want: window{10, 100}},
		{name: "negative with token", size: -3, token: next, wantErr: "page_size: must not be negative"},
		{name: "p1 token", size: 10, token: legacyToken(coll, 3, 10), want: window{20, 10}},
		{name: "p1 token, size changed", size: 7, token: legacyToken(coll, 4, 5), want: window{15, 7}},
		{name: "p1 token of another list", size: 10, token: legacyToken("orgs/other/actions", 3, 10), wantErr: "page_token: is not a token"},
		{name: "collection case-insensitive", size: 10, token: next, collName: "orgs/ACME/actions", want: window{10, 10}},
		{name: "other collection", size: 10, token: next, collName: "orgs/other/actions", wantErr: "page_token: is not a token"},
		{name: "garbage", size: 10, token: "!!!", wantErr: "page_token: is not a token"},
		{name: "unknown version", size: 10, token: encodeToken("p3:10:" + strings.Split(mustRaw(t, next), ":")[2]), wantErr: "page_token: is not a token"},
		{name: "offset zero", size: 10, token: encodeToken("p2:0:" + strings.Split(mustRaw(t, next), ":")[2]), wantErr: "page_token: is not a token"},
		{name: "offset with sign", size: 10, token: encodeToken("p2:+10:" + strings.Split(mustRaw(t, next), ":")[2]), wantErr: "page_token: is not a token"},
		{name: "offset with leading zero", size: 10, token: encodeToken("p2:010:" + strings.Split(mustRaw(t, next), ":")[2]), wantErr: "page_token: is not a token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := coll
			if tt.collName != "" {
				c = tt.collName
			}
			got, err := pageFor(c, tt.size, tt.token)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("pageFor = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
	if tok := nextPageToken(coll, window{offset: 20, size: 10}, false); tok != "" {
		t.Fatalf("last page has token %q", tok)
	}
}

func mustRaw(t *testing.T, token string) string {
	t.Helper()
	raw, ok := decodeToken(token)
	if !ok {
		t.Fatalf("cannot decode %q", token)
	}
	return raw
}

func TestTokenFormat(t *testing.T) {
	const coll = "orgs/acme/actions"
	raw := mustRaw(t, nextPageToken(coll, window{offset: 40, size: 20}, true))
	if want := "p2:60:" + strconv.FormatUint(uint64(collectionHash(coll)), 36); raw != want {
		t.Fatalf("raw token = %q, want %q", raw, want)
	}
}

func TestUpstreamPages(t *testing.T) {
	tests := []struct {
		w    window
		want []upstream.Page
	}{
		// Aligned: GitHub's page of size, exactly as before offsets.
		{window{0, 30}, []upstream.Page{{Page: 1, PerPage: 30}}},
		{window{20, 10}, []upstream.Page{{Page: 3, PerPage: 10}}},
		{window{200, 100}, []upstream.Page{{Page: 3, PerPage: 100}}},
		{window{0, 1}, []upstream.Page{{Page: 1, PerPage: 1}}},
		// Unaligned, within one page of a larger per_page: the smallest.
		{window{2, 3}, []upstream.Page{{Page: 1, PerPage: 5}}},
		{window{5, 5}, []upstream.Page{{Page: 2, PerPage: 5}}},
		{window{7, 3}, []upstream.Page{{Page: 2, PerPage: 5}}},
		{window{10, 30}, []upstream.Page{{Page: 1, PerPage: 40}}},
		{window{99, 2}, []upstream.Page{{Page: 34, PerPage: 3}}},
		{window{95, 30}, []upstream.Page{{Page: 3, PerPage: 42}}},
		// Unaligned, no per_page up to 100 holds it: two pages of size.
		{window{50, 100}, []upstream.Page{{Page: 1, PerPage: 100}, {Page: 2, PerPage: 100}}},
		{window{41, 60}, []upstream.Page{{Page: 1, PerPage: 60}, {Page: 2, PerPage: 60}}},
	}
	for _, tt := range tests {
		got := tt.w.upstreamPages()
		if !slices.Equal(got, tt.want) {
			t.Errorf("%+v.upstreamPages() = %+v, want %+v", tt.w, got, tt.want)
		}
	}
}

// TestUpstreamPagesCover checks every window of a list of 1000: its pages
// have per_page 1 to 100, are at most two, and hold it.
func TestUpstreamPagesCover(t *testing.T) {
	for size := 1; size <= maxPageSize; size++ {
		for offset := 0; offset < 1000; offset++ {
			w := window{offset, size}
			pages := w.upstreamPages()
			if len(pages) == 0 || len(pages) > 2 {
				t.Fatalf("%+v: %d pages", w, len(pages))
			}
			lo, hi := -1, -1
			for _, p := range pages {
				if p.Page < 1 || p.PerPage < size || p.PerPage > maxPageSize {
					t.Fatalf("%+v: page %+v", w, p)
				}
				start := (p.Page - 1) * p.PerPage
				if hi != -1 && start != hi {
					t.Fatalf("%+v: pages %+v do not touch", w, pages)
				}
				if lo == -1 {
					lo = start
				}
				hi = start + p.PerPage
			}
			if lo > w.offset || hi < w.end() {
				t.Fatalf("%+v: pages %+v cover [%d, %d)", w, pages, lo, hi)
			}
			if offset%size == 0 && (len(pages) != 1 || pages[0] != (upstream.Page{Page: offset/size + 1, PerPage: size})) {
				t.Fatalf("aligned %+v: pages %+v", w, pages)
			}
		}
	}
}

// fakeList answers like GitHub for a list of n items 0..n-1, recording
// the pages asked for.
type fakeList struct {
	n     int
	asked []upstream.Page
	fail  error
}

func (f *fakeList) fetch(_ context.Context, p upstream.Page) ([]int, int, error) {
	f.asked = append(f.asked, p)
	if f.fail != nil {
		return nil, 0, f.fail
	}
	var out []int
	for i := (p.Page - 1) * p.PerPage; i < min(p.Page*p.PerPage, f.n); i++ {
		out = append(out, i)
	}
	return out, f.n, nil
}

func TestFetchWindow(t *testing.T) {
	tests := []struct {
		name     string
		n        int
		w        window
		want     []int
		wantNext bool
		requests int
	}{
		{name: "first page", n: 23, w: window{0, 5}, want: []int{0, 1, 2, 3, 4}, wantNext: true, requests: 1},
		{name: "aligned last page", n: 23, w: window{20, 5}, want: []int{20, 21, 22}, requests: 1},
		{name: "aligned exact end", n: 25, w: window{20, 5}, want: []int{20, 21, 22, 23, 24}, requests: 1},
		{name: "unaligned in one page", n: 23, w: window{2, 3}, want: []int{2, 3, 4}, wantNext: true, requests: 1},
		{name: "unaligned, larger per_page", n: 200, w: window{95, 30}, want: seq(95, 125), wantNext: true, requests: 1},
		{name: "two pages", n: 200, w: window{41, 60}, want: seq(41, 101), wantNext: true, requests: 2},
		{name: "two pages, list ends in the second", n: 70, w: window{41, 60}, want: seq(41, 70), requests: 2},
		{name: "two pages, list ends in the first", n: 55, w: window{41, 60}, want: seq(41, 55), requests: 1},
		{name: "two pages of 100", n: 300, w: window{50, 100}, want: seq(50, 150), wantNext: true, requests: 2},
		{name: "past the end", n: 23, w: window{40, 5}, want: nil, requests: 1},
		{name: "empty list", n: 0, w: window{0, 30}, want: nil, requests: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeList{n: tt.n}
			got, err := fetchWindow(t.Context(), tt.w, f.fetch)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got.items, tt.want) || got.hasNext != tt.wantNext || got.total != tt.n {
				t.Fatalf("fetchWindow = %+v, want items %v, hasNext %v, total %d", got, tt.want, tt.wantNext, tt.n)
			}
			if len(f.asked) != tt.requests {
				t.Fatalf("asked %+v, want %d requests", f.asked, tt.requests)
			}
		})
	}
	boom := errors.New("boom")
	if _, err := fetchWindow(t.Context(), window{0, 5}, (&fakeList{fail: boom}).fetch); !errors.Is(err, boom) {
		t.Fatalf("error = %v, want %v", err, boom)
	}
}

func seq(lo, hi int) []int {
	var out []int
	for i := lo; i < hi; i++ {
		out = append(out, i)
	}
	return out
}

// pageTokenRaw is the raw form of every page token the broker accepts.
var pageTokenRaw = regexp.MustCompile(`^(?:p2:[1-9][0-9]{0,8}|p1:[1-9][0-9]{0,6}:[1-9][0-9]{0,2}):(?:0|[1-9a-z][0-9a-z]{0,6})$`)

func FuzzDecodePageToken(f *testing.F) {
	issued := nextPageToken("orgs/a/actions", window{offset: 300, size: 100}, true)
	f.Add(issued)
	f.Add(legacyToken("orgs/a/actions", 4, 100))
	f.Add("")
	f.Add("cDE6Mjo")
	f.Add(encodeToken("p2:-5:abc"))
	f.Add(encodeToken("p1:2:0:abc"))
	f.Add(issued[:4] + "\n" + issued[4:]) // base64 decoders skip newlines
	sum := strconv.FormatUint(uint64(collectionHash("orgs/a/actions")), 36)
	for _, raw := range []string{
		"p2:0400:" + sum, "p2:+400:" + sum, "p2:400:" + strings.ToUpper(sum), "p2:400:0" + sum, "p2:400:" + sum + ":",
		"p2:104857601:" + sum, "p2:104857600:" + sum, "p1:2:100:" + sum, "p1:1048577:100:" + sum, "p1:2:101:" + sum,
		"p2: 400:" + sum, "P2:400:" + sum, "p3:400:" + sum, "p2:400:-" + sum,
	} {
		f.Add(encodeToken(raw))
	}
	f.Add(base64.StdEncoding.EncodeToString([]byte("p2:400:" + sum)))
	f.Add(base64.URLEncoding.EncodeToString([]byte("p2:300:" + sum)))
	f.Add(issued + "=")
	f.Fuzz(func(t *testing.T, tok string) {
		// Any one bit of an issued token flipped: refused, or a token for
		// another page or list, never the same one.
		if tok == issued {
			want, _ := decodePageToken(issued)
			for i := range len(tok) * 8 {
				b := []byte(tok)
				b[i/8] ^= 1 << (i % 8)
				if got, ok := decodePageToken(string(b)); ok && got.offset == want.offset && got.sum == want.sum {
					t.Fatalf("%q, one bit off %q, decodes as the same token", b, tok)
				}
			}
		}
		pt, ok := decodePageToken(tok)
		if !ok {
			return
		}
		if pt.offset < 1 || pt.offset > maxOffset {
			t.Fatalf("accepted out-of-range token %q: offset %d", tok, pt.offset)
		}
		if pt.version == legacyTokenVersion && (pt.page < 2 || pt.size < 1 || pt.size > maxPageSize || pt.offset != (pt.page-1)*pt.size) {
			t.Fatalf("accepted p1 token %q: %+v", tok, pt)
		}
		// One token per page: what decodes is what the broker issues.
		if encodeToken(pt.raw()) != tok {
			t.Fatalf("accepted %q, which the broker never issues", tok)
		}
		// Written apart from the decoder: the token is unpadded URL-safe
		// base64 of one of the two raw forms, numbers without sign or
		// leading zero, the hash in lower-case base 36.
		raw, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil || !pageTokenRaw.Match(raw) || strings.ContainsAny(tok, "=+/\r\n") {
			t.Fatalf("accepted %q (raw %q, %v)", tok, raw, err)
		}
		// The token opens only the list it was issued for (any spelling
		// of that list's name: GitHub's names are case-insensitive).
		for _, c := range []string{"orgs/a/actions", "orgs/A/actions", "orgs/b/actions", "repos/a/r/actions"} {
			_, err := pageFor(c, 10, tok)
			if want := collectionHash(c) == pt.sum; (err == nil) != want {
				t.Fatalf("token %q for list %q: %v", tok, c, err)
			}
		}
	})
}
