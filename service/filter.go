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

// readableList returns page p of the list that fetch reads for scope,
// holding only the secrets the caller may read, as secrets of owner (the
// scope they belong to). When the caller may read every secret of owner,
// GitHub's page is passed through as it is; otherwise every page is read
// (coalesced with other callers' identical reads) and filtered, and p is cut
// from the filtered list, so that total_count and the page tokens count
// only what the caller may see.
func (s *Server) readableList(ctx context.Context, scope, owner upstream.Scope, p upstream.Page, fetch listFunc) (upstream.SecretList, error) {
	if s.mayEvery(ctx, verbRead, scopeName(owner)) {
		return fetch(ctx, scope, p)
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
	from := min((p.Page-1)*p.PerPage, len(readable))
	to := min(from+p.PerPage, len(readable))
	return upstream.SecretList{Secrets: readable[from:to], TotalCount: len(readable), HasNext: to < len(readable)}, nil
}
