package service

import (
	"context"
	"errors"

	"github.com/secretbroker/secretbroker/upstream"
)

// maxFilteredPages bounds the GitHub pages read to filter one list for a
// caller who may read only some of its secrets: 100 pages of 100 secrets.
const maxFilteredPages = 100

// listFunc reads one page of a list of secrets from GitHub.
type listFunc func(ctx context.Context, s upstream.Scope, p upstream.Page) (upstream.SecretList, error)

// readableWindow returns window w of the list that fetch reads for scope,
// holding only the secrets the caller may read, as secrets of owner (the
// scope they belong to). When the caller may read every secret of owner,
// w is read from GitHub's pages as they are (secretWindow); otherwise
// every page is read (coalesced with other callers' identical reads) and
// filtered, and w is cut from the filtered list, so that total_count and
// the page tokens count only what the caller may see.
func (s *Server) readableWindow(ctx context.Context, scope, owner upstream.Scope, w window, fetch listFunc) (upstream.SecretList, error) {
	if s.mayEvery(ctx, verbRead, scopeName(owner)) {
		return secretWindow(ctx, scope, w, fetch)
	}
	var readable []upstream.Secret
	for page := 1; ; page++ {
		list, err := fetch(ctx, scope, upstream.Page{Page: page, PerPage: maxPageSize})
		if err != nil {
			return upstream.SecretList{}, err
		}
		for _, sec := range list.Secrets {
			if s.may(ctx, verbRead, secretResourceName(owner, sec.Name)) {
				readable = append(readable, sec)
			}
		}
		if !list.HasNext || len(list.Secrets) == 0 {
			break
		}
		if page >= maxFilteredPages {
			return upstream.SecretList{}, errors.New("the list spans more pages than the broker filters for one caller")
		}
	}
	from := min(w.offset, len(readable))
	to := min(w.end(), len(readable))
	return upstream.SecretList{Secrets: readable[from:to], TotalCount: len(readable), HasNext: to < len(readable)}, nil
}
