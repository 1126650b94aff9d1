package service

import (
	"strings"
	"testing"

	"github.com/secretbroker/secretbroker/upstream"
)

func TestPageFor(t *testing.T) {
	const coll = "orgs/acme/actions"
	next := nextPageToken(coll, upstream.Page{Page: 1, PerPage: 10}, true)
	tests := []struct {
		name     string
		size     int32
		token    string
		want     upstream.Page
		wantErr  string
		collName string
	}{
		{name: "default size", want: upstream.Page{Page: 1, PerPage: 30}},
		{name: "explicit size", size: 7, want: upstream.Page{Page: 1, PerPage: 7}},
		{name: "coerced to 100", size: 500, want: upstream.Page{Page: 1, PerPage: 100}},
		{name: "negative", size: -1, wantErr: "page_size: must not be negative"},
		{name: "next page", size: 10, token: next, want: upstream.Page{Page: 2, PerPage: 10}},
		{name: "size changed", size: 20, token: next, wantErr: "page_size: must stay 10"},
		{name: "other collection", size: 10, token: next, collName: "orgs/other/actions", wantErr: "page_token: is not a token"},
		{name: "garbage", size: 10, token: "!!!", wantErr: "page_token: is not a token"},
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
	if tok := nextPageToken(coll, upstream.Page{Page: 3, PerPage: 10}, false); tok != "" {
		t.Fatalf("last page has token %q", tok)
	}
}

func FuzzDecodePageToken(f *testing.F) {
	issued := nextPageToken("orgs/a/actions", upstream.Page{Page: 4, PerPage: 100}, true)
	f.Add(issued)
	f.Add("")
	f.Add("cDE6Mjo")
	f.Add(issued[:4] + "\n" + issued[4:]) // base64 decoders skip newlines
	f.Fuzz(func(t *testing.T, tok string) {
		page, size, sum, ok := decodePageToken(tok)
		if !ok {
			return
		}
		if page < 2 || size < 1 || size > maxPageSize {
			t.Fatalf("accepted out-of-range token %q: page %d size %d", tok, page, size)
		}
		// One token per page: what decodes is what the broker issues.
		if encodeToken(pageTokenRaw(page, size, sum)) != tok {
			t.Fatalf("accepted %q, which the broker never issues", tok)
		}
	})
}
