package service

import (
	"encoding/base64"
	"hash/fnv"
	"strconv"
	"strings"

	"github.com/secretbroker/secretbroker/upstream"
)

// Pagination follows AIP-158 on the broker's side and GitHub's page/per_page
// on the upstream side. A page token is opaque to callers; inside it holds
// GitHub's page number, the page size and a hash of the collection it
// belongs to, so a token cannot be replayed against another list.

const (
	defaultPageSize = 30 // GitHub's default per_page
	maxPageSize     = 100
	tokenVersion    = "p1"
)

// pageFor translates an AIP-158 request into GitHub's page and per_page.
// collection names the list (its parent or name) and binds the token to it.
func pageFor(collection string, pageSize int32, token string) (upstream.Page, error) {
	switch {
	case pageSize < 0:
		return upstream.Page{}, invalidArg("page_size", "must not be negative")
	case pageSize == 0:
		pageSize = defaultPageSize
	case pageSize > maxPageSize:
		pageSize = maxPageSize // AIP-158: coerce to the maximum
	}
	if token == "" {
		return upstream.Page{Page: 1, PerPage: int(pageSize)}, nil
	}
	page, size, sum, ok := decodePageToken(token)
	if !ok || sum != collectionHash(collection) {
		return upstream.Page{}, invalidArg("page_token", "is not a token this list returned")
	}
	if size != int(pageSize) {
		return upstream.Page{}, invalidArg("page_size", "must stay %d, the page_size the page_token was issued for", size)
	}
	return upstream.Page{Page: page, PerPage: size}, nil
}

// nextPageToken returns the token for the page after p, or "" when GitHub
// said there is none.
func nextPageToken(collection string, p upstream.Page, hasNext bool) string {
	if !hasNext {
		return ""
	}
	return encodeToken(pageTokenRaw(p.Page+1, p.PerPage, collectionHash(collection)))
}

// pageTokenRaw is a page token before encodeToken.
func pageTokenRaw(page, size int, sum uint32) string {
	return tokenVersion + ":" + strconv.Itoa(page) + ":" + strconv.Itoa(size) + ":" + strconv.FormatUint(uint64(sum), 36)
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

func decodePageToken(token string) (page, size int, sum uint32, ok bool) {
	raw, ok := decodeToken(token)
	if !ok {
		return 0, 0, 0, false
	}
	parts := strings.Split(raw, ":")
	if len(parts) != 4 || parts[0] != tokenVersion {
		return 0, 0, 0, false
	}
	page, err1 := strconv.Atoi(parts[1])
	size, err2 := strconv.Atoi(parts[2])
	h, err3 := strconv.ParseUint(parts[3], 36, 32)
	if err1 != nil || err2 != nil || err3 != nil || page < 2 || page > 1<<20 || size < 1 || size > maxPageSize ||
		pageTokenRaw(page, size, uint32(h)) != raw { // one spelling per token: no "+4" or "04"
		return 0, 0, 0, false
	}
	return page, size, uint32(h), true
}

func collectionHash(collection string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(strings.ToLower(collection)))
	return h.Sum32()
}
