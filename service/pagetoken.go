package service

import (
	"context"
	"encoding/base64"
	"hash/fnv"
	"strconv"
	"strings"

	"github.com/secretbroker/secretbroker/upstream"
)

// Pagination follows AIP-158 on the broker's side and GitHub's page/per_page
// on the upstream side. A page token is opaque to callers; inside it holds
// the offset of the next item and a hash of the collection it belongs to,
// so a token cannot be replayed against another list, and a request for a
// following page may change page_size (AIP-158: the new size is honored).
//
// Token versions (the raw form, before encodeToken):
//
//	p2:<offset>:<hash>       the offset of the next item (issued now)
//	p1:<page>:<size>:<hash>  GitHub's page and per_page (issued before p2;
//	                         still accepted, as offset (page-1)*size)

const (
	defaultPageSize = 30 // GitHub's default per_page
	maxPageSize     = 100
	tokenVersion    = "p2"
	// legacyTokenVersion is the page-number token issued before offsets.
	legacyTokenVersion = "p1"
	// maxLegacyPage bounds a p1 token's page.
	maxLegacyPage = 1 << 20
	// maxOffset bounds a token's offset: every p1 token's offset is below.
	maxOffset = maxLegacyPage * maxPageSize
)

// window is one AIP-158 page of a list: size items (1 to maxPageSize) from
// offset (from 0).
type window struct {
	offset, size int
}

// end is the offset just past w.
func (w window) end() int { return w.offset + w.size }

// pageFor translates an AIP-158 request into the window of the list it
// asks for. collection names the list (its parent or name) and binds the
// token to it.
func pageFor(collection string, pageSize int32, token string) (window, error) {
	switch {
	case pageSize < 0:
		return window{}, invalidArg("page_size", "must not be negative")
	case pageSize == 0:
		pageSize = defaultPageSize
	case pageSize > maxPageSize:
		pageSize = maxPageSize // AIP-158: coerce to the maximum
	}
	if token == "" {
		return window{offset: 0, size: int(pageSize)}, nil
	}
	t, ok := decodePageToken(token)
	if !ok || t.sum != collectionHash(collection) {
		return window{}, invalidArg("page_token", "is not a token this list returned")
	}
	return window{offset: t.offset, size: int(pageSize)}, nil
}

// nextPageToken returns the token for the page after w, or "" when the
// list has no items after w (or w ends past maxOffset, where the broker
// pages no further: GitHub's lists are far shorter).
func nextPageToken(collection string, w window, hasNext bool) string {
	if !hasNext || w.end() > maxOffset {
		return ""
	}
	return encodeToken(pageToken{version: tokenVersion, offset: w.end(), sum: collectionHash(collection)}.raw())
}

// pageToken is a decoded page token. page and size are set for a p1 token
// only.
type pageToken struct {
	version    string
	offset     int
	page, size int
	sum        uint32
}

// raw is t's raw form, before encodeToken: the one spelling of t.
func (t pageToken) raw() string {
	sum := strconv.FormatUint(uint64(t.sum), 36)
	if t.version == legacyTokenVersion {
		return legacyTokenVersion + ":" + strconv.Itoa(t.page) + ":" + strconv.Itoa(t.size) + ":" + sum
	}
	return tokenVersion + ":" + strconv.Itoa(t.offset) + ":" + sum
}

// encodeToken is the outer form of every page token the broker issues:
// unpadded URL-safe base64 of raw.
func encodeToken(raw string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

// decodeToken undoes encodeToken and accepts nothing else: Go's base64
// decoder skips CR and LF (even Strict), so without the check a token
// with a newline inside would decode like the token without it.
func decodeToken(token string) (string, bool) {
	if strings.ContainsAny(token, "\r\n") {
		return "", false
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(token)
	if err != nil {
		return "", false
	}
	return string(raw), true
}

// decodePageToken decodes a p2 token, or a p1 token into its offset. It
// accepts only what the broker issues: an offset from 1 to maxOffset, and
// one spelling per token (no "+4" or "04").
func decodePageToken(token string) (pageToken, bool) {
	raw, ok := decodeToken(token)
	if !ok {
		return pageToken{}, false
	}
	parts := strings.Split(raw, ":")
	var t pageToken
	var hash string
	switch {
	case len(parts) == 3 && parts[0] == tokenVersion:
		offset, err := strconv.Atoi(parts[1])
		if err != nil || offset < 1 || offset > maxOffset {
			return pageToken{}, false
		}
		t = pageToken{version: tokenVersion, offset: offset}
		hash = parts[2]
	case len(parts) == 4 && parts[0] == legacyTokenVersion:
		page, err1 := strconv.Atoi(parts[1])
		size, err2 := strconv.Atoi(parts[2])
		if err1 != nil || err2 != nil || page < 2 || page > maxLegacyPage || size < 1 || size > maxPageSize {
			return pageToken{}, false
		}
		t = pageToken{version: legacyTokenVersion, offset: (page - 1) * size, page: page, size: size}
		hash = parts[3]
	default:
		return pageToken{}, false
	}
	h, err := strconv.ParseUint(hash, 36, 32)
	if err != nil {
		return pageToken{}, false
	}
	t.sum = uint32(h)
	if t.raw() != raw {
		return pageToken{}, false
	}
	return t, true
}

func collectionHash(collection string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(strings.ToLower(collection)))
	return h.Sum32()
}

// upstreamPages returns the GitHub pages (per_page at most 100) that cover
// w, in order. When w.offset is a multiple of w.size, w is GitHub's page
// w.offset/w.size+1 of w.size: one request, the page a caller who kept
// page_size walks. Otherwise it is the smallest per_page from w.size to 100
// for which w lies within one GitHub page, or, when there is none, the two
// pages of w.size that w straddles.
func (w window) upstreamPages() []upstream.Page {
	for per := w.size; per <= maxPageSize; per++ {
		if first := w.offset / per; first == (w.end()-1)/per {
			return []upstream.Page{{Page: first + 1, PerPage: per}}
		}
	}
	first := w.offset / w.size
	return []upstream.Page{{Page: first + 1, PerPage: w.size}, {Page: first + 2, PerPage: w.size}}
}

// windowList is window w of a list: its items, the list's total_count, and
// whether items follow w.
type windowList[T any] struct {
	items   []T
	total   int
	hasNext bool
}

// fetchWindow reads window w of a list with fetch, which returns one GitHub
// page's items and the list's total_count. It reads w's upstream pages in
// order, and not the second when the first shows that the list ends within
// it. total_count is the last page's.
func fetchWindow[T any](ctx context.Context, w window, fetch func(context.Context, upstream.Page) ([]T, int, error)) (windowList[T], error) {
	var out windowList[T]
	for _, p := range w.upstreamPages() {
		items, total, err := fetch(ctx, p)
		if err != nil {
			return windowList[T]{}, err
		}
		out.total = total
		start := (p.Page - 1) * p.PerPage
		for i, it := range items {
			if at := start + i; at >= w.offset && at < w.end() {
				out.items = append(out.items, it)
			}
		}
		if start+p.PerPage >= total {
			break
		}
	}
	out.hasNext = w.end() < out.total
	return out, nil
}

// secretWindow reads window w of a list of scope's secrets with fetch.
func secretWindow(ctx context.Context, scope upstream.Scope, w window, fetch listFunc) (upstream.SecretList, error) {
	l, err := fetchWindow(ctx, w, func(ctx context.Context, p upstream.Page) ([]upstream.Secret, int, error) {
		list, err := fetch(ctx, scope, p)
		return list.Secrets, list.TotalCount, err
	})
	if err != nil {
		return upstream.SecretList{}, err
	}
	return upstream.SecretList{Secrets: l.items, TotalCount: l.total, HasNext: l.hasNext}, nil
}

// repositoryWindow reads window w of an organization secret's selected
// repositories.
func (s *Server) repositoryWindow(ctx context.Context, scope upstream.Scope, name string, w window) (upstream.RepositoryList, error) {
	l, err := fetchWindow(ctx, w, func(ctx context.Context, p upstream.Page) ([]upstream.Repository, int, error) {
		list, err := s.up.ListSelectedRepositories(ctx, scope, name, p)
		return list.Repositories, list.TotalCount, err
	})
	if err != nil {
		return upstream.RepositoryList{}, err
	}
	return upstream.RepositoryList{Repositories: l.items, TotalCount: l.total, HasNext: l.hasNext}, nil
}
