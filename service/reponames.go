package service

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/secretbroker/secretbroker/upstream"
)

// Repository names. Wherever a caller selects repositories for an
// organization secret it may name them in the secret's organization
// ("hello-world") instead of giving their ids. The broker resolves each
// name with GET /repos/{org}/{name}: identical lookups in flight are one
// request (share), a found id is cached for RepoNameTTL, a name that is
// not found is never cached (the repository may be created a moment
// later), and a batch resolves each distinct name once. A name that is
// not found is INVALID_ARGUMENT naming it, and nothing is written.
// Resolving needs no verb of its own: the policy applies to the secret.

// RepositoryGetter is what resolving repository names needs of GitHub.
// *upstream.Client satisfies it. An Upstream that does not implement it
// cannot resolve names: requests that give names are INVALID_ARGUMENT.
type RepositoryGetter interface {
	GetRepository(ctx context.Context, owner, repo string) (upstream.Repository, error)
}

// DefaultRepoNameTTL is Options.RepoNameTTL's default.
const DefaultRepoNameTTL = 10 * time.Minute

const (
	// maxRepoNames bounds the names one request (or batch item) may give.
	maxRepoNames = 1000
	// repoNameLookups is how many names one call resolves at once.
	repoNameLookups = 8
	// maxRepoNameEntries bounds the cache: when full, expired entries go
	// first, then any.
	maxRepoNameEntries = 10000
)

// repoNames resolves repository names to ids, with a cache. The cache reads
// the time with time.Now; its tests run in synctest bubbles.
type repoNames struct {
	get   RepositoryGetter // nil: names cannot be resolved
	ttl   time.Duration
	group upstream.Group[any]

	mu      sync.Mutex
	entries map[string]repoNameEntry // by repoNameKey
}

type repoNameEntry struct {
	id      int64
	expires time.Time
}

func newRepoNames(up Upstream, ttl time.Duration) *repoNames {
	if ttl <= 0 {
		ttl = DefaultRepoNameTTL
	}
	get, _ := up.(RepositoryGetter)
	return &repoNames{get: get, ttl: ttl, entries: map[string]repoNameEntry{}}
}

// repoNameKey is a name's cache key: GitHub's names are not case sensitive.
func repoNameKey(org, name string) string {
	return strings.ToLower(org) + "/" + strings.ToLower(name)
}

// repoNotFoundError is a name that GitHub does not know in the
// organization.
type repoNotFoundError struct{ org, name string }

func (e *repoNotFoundError) Error() string {
	return fmt.Sprintf("repository %q was not found in organization %q", e.name, e.org)
}

// checkRepoNames checks the names field of a request against every rule
// that needs no upstream call: at most maxRepoNames, each a valid
// repository name (no owner: names are in the secret's organization).
func checkRepoNames(field, org string, names []string) error {
	if len(names) > maxRepoNames {
		return invalidArg(field, "holds %d names; at most %d", len(names), maxRepoNames)
	}
	for _, n := range names {
		if strings.Contains(n, "/") {
			return invalidArg(field, "%q: give the repository's name in the secret's organization, without an owner", truncate(n, 110))
		}
		if err := checkRepo(field, org, n); err != nil {
			return err
		}
	}
	return nil
}

// cached returns the cached id of org/name, if it has not expired.
func (r *repoNames) cached(org, name string) (int64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.entries[repoNameKey(org, name)]
	if !ok || !time.Now().Before(e.expires) {
		return 0, false
	}
	return e.id, true
}

func (r *repoNames) store(org, name string, id int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.entries) >= maxRepoNameEntries {
		now := time.Now()
		for k, e := range r.entries {
			if !now.Before(e.expires) {
				delete(r.entries, k)
			}
		}
		for k := range r.entries {
			if len(r.entries) < maxRepoNameEntries {
				break
			}
			delete(r.entries, k)
		}
	}
	r.entries[repoNameKey(org, name)] = repoNameEntry{id: id, expires: time.Now().Add(r.ttl)}
}

// resolve returns the id of the repository name in org: from the cache, or
// from one GET /repos/{org}/{name} shared by everyone asking at the time.
// A repository that GitHub does not find, or finds under another owner
// (a transferred repository's redirect), is a *repoNotFoundError.
func (r *repoNames) resolve(ctx context.Context, org, name string) (int64, error) {
	if id, ok := r.cached(org, name); ok {
		return id, nil
	}
	return share(ctx, &r.group, "repo "+repoNameKey(org, name), func(ctx context.Context) (int64, error) {
		if id, ok := r.cached(org, name); ok {
			return id, nil // a lookup that just finished stored it
		}
		repo, err := r.get.GetRepository(ctx, org, name)
		switch {
		case isStatus(err, http.StatusNotFound) || isRedirect(err):
			// A redirect: renamed or transferred, reached by its
			// current name only.
			return 0, &repoNotFoundError{org: org, name: name}
		case err != nil:
			return 0, err
		}
		owner, _, _ := strings.Cut(repo.FullName, "/")
		if repo.ID <= 0 || !strings.EqualFold(owner, org) {
			return 0, &repoNotFoundError{org: org, name: name}
		}
		r.store(org, name, repo.ID)
		return repo.ID, nil
	})
}

// resolveAll resolves names in org, each distinct name once, up to
// repoNameLookups at a time, and returns their ids in the order of the
// names, without repeats. Names that are not found make one
// INVALID_ARGUMENT on field naming each of them; any other failure
// (GitHub unavailable, a rate limit) is returned as it is.
func (r *repoNames) resolveAll(ctx context.Context, field, org string, names []string) ([]int64, error) {
	results, err := r.lookupAll(ctx, field, org, names)
	if err != nil {
		return nil, err
	}
	return idsFrom(results, field, org, names)
}

// notFoundNames is the INVALID_ARGUMENT for the quoted names not found in
// org.
func notFoundNames(field, org string, quoted []string) error {
	if len(quoted) == 1 {
		return invalidArg(field, "repository %s was not found in organization %q", quoted[0], org)
	}
	return invalidArg(field, "repositories %s were not found in organization %q", strings.Join(quoted, ", "), org)
}

// repoLookup is one name's id, or why there is none.
type repoLookup struct {
	id  int64
	err error
}

// lookupAll resolves every distinct name of names in org, up to
// repoNameLookups at a time, and returns the results by repoNameKey. It
// fails only when ctx ends, or, as an INVALID_ARGUMENT on field, when the
// broker cannot resolve names at all.
func (r *repoNames) lookupAll(ctx context.Context, field, org string, names []string) (map[string]repoLookup, error) {
	if r.get == nil {
		return nil, invalidArg(field, "this broker cannot resolve repository names; give repository ids")
	}
	type job struct{ key, name string }
	var jobs []job
	seen := map[string]bool{}
	for _, n := range names {
		k := repoNameKey(org, n)
		if !seen[k] {
			seen[k] = true
			jobs = append(jobs, job{k, n})
		}
	}
	var (
		mu  sync.Mutex
		out = make(map[string]repoLookup, len(jobs))
		wg  sync.WaitGroup
		sem = make(chan struct{}, repoNameLookups)
	)
	for _, j := range jobs {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return nil, ctx.Err()
		}
		wg.Go(func() {
			defer func() { <-sem }()
			id, err := r.resolve(ctx, org, j.name)
			mu.Lock()
			out[j.key] = repoLookup{id, err}
			mu.Unlock()
		})
	}
	wg.Wait()
	return out, nil
}

// withNames returns ids followed by the ids of names in org, without
// repeats; ids alone when there are no names.
func (r *repoNames) withNames(ctx context.Context, field, org string, ids []int64, names []string) ([]int64, error) {
	if len(names) == 0 {
		return ids, nil
	}
	resolved, err := r.resolveAll(ctx, field, org, names)
	if err != nil {
		return nil, err
	}
	return mergeIDs(ids, resolved), nil
}

// mergeIDs returns a followed by the ids of b not in a, keeping a's own
// order and repeats.
func mergeIDs(a, b []int64) []int64 {
	out := slices.Clone(a)
	if out == nil {
		out = []int64{}
	}
	for _, id := range b {
		if !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}

// parseRepository reads AddSelectedRepository's and
// RemoveSelectedRepository's repository: digits only are an id, anything
// else a name in org. It checks that exactly one of id and repository was
// given.
func parseRepository(org string, id int64, repository string) (int64, string, error) {
	switch {
	case repository == "" && id == 0:
		return 0, "", invalidArg("repository_id", "give the repository: by id in repository_id, or by name or id in repository")
	case repository != "" && id != 0:
		return 0, "", invalidArg("repository", "give repository or repository_id, not both")
	case repository == "":
		return id, "", checkRepositoryIDs("repository_id", []int64{id})
	}
	if isDigits(repository) {
		n, err := strconv.ParseInt(repository, 10, 64)
		if err != nil || n <= 0 {
			return 0, "", invalidArg("repository", "%q is not a positive GitHub repository id", truncate(repository, 30))
		}
		return n, "", nil
	}
	if err := checkRepoNames("repository", org, []string{repository}); err != nil {
		return 0, "", err
	}
	return 0, repository, nil
}

func isDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

// resolvePutNames fills in p.repoIDs from p.repoNames, once per call.
func (s *Server) resolvePutNames(ctx context.Context, p *putPlan) error {
	if len(p.repoNames) == 0 {
		return nil
	}
	ids, err := s.repos.withNames(ctx, "selected_repositories", p.scope.Org, p.repoIDs, p.repoNames)
	if err != nil {
		return err
	}
	p.repoIDs, p.repoNames = ids, nil
	return nil
}

// resolveBatchNames resolves the names of every plan of a batch, each
// distinct name of an organization once, and fills in each plan's ids. It
// returns the index and the error of each plan that failed, in the order
// of the plans (an async batch's refused items are results in that
// order); a plan without names is left alone.
func (s *Server) resolveBatchNames(ctx context.Context, plans []*putPlan) iter.Seq2[int, error] {
	failed := s.resolveBatchNamesByIndex(ctx, plans)
	return func(yield func(int, error) bool) {
		for _, i := range slices.Sorted(maps.Keys(failed)) {
			if !yield(i, failed[i]) {
				return
			}
		}
	}
}

// resolveBatchNamesByIndex is resolveBatchNames, its errors by index.
func (s *Server) resolveBatchNamesByIndex(ctx context.Context, plans []*putPlan) map[int]error {
	byOrg := map[string][]string{}
	for _, p := range plans {
		if p != nil && len(p.repoNames) > 0 {
			byOrg[p.scope.Org] = append(byOrg[p.scope.Org], p.repoNames...)
		}
	}
	if len(byOrg) == 0 {
		return nil
	}
	failed := map[int]error{}
	for org, names := range byOrg {
		results, err := s.repos.lookupAll(ctx, "selected_repositories", org, names)
		for i, p := range plans {
			if p == nil || len(p.repoNames) == 0 || p.scope.Org != org {
				continue
			}
			if err != nil {
				failed[i] = err
				continue
			}
			ids, err := idsFrom(results, "selected_repositories", org, p.repoNames)
			if err != nil {
				failed[i] = err
				continue
			}
			p.repoIDs, p.repoNames = mergeIDs(p.repoIDs, ids), nil
		}
	}
	return failed
}

// idsFrom returns the ids of names in org, in their order and without
// repeats, from results of lookupAll; names not found make one
// INVALID_ARGUMENT on field naming each.
func idsFrom(results map[string]repoLookup, field, org string, names []string) ([]int64, error) {
	var (
		out     []int64
		missing []string
	)
	for _, n := range names {
		res := results[repoNameKey(org, n)]
		var nf *repoNotFoundError
		switch {
		case errors.As(res.err, &nf):
			if q := strconv.Quote(n); !slices.Contains(missing, q) {
				missing = append(missing, q)
			}
		case res.err != nil:
			return nil, res.err
		case !slices.Contains(out, res.id):
			out = append(out, res.id)
		}
	}
	if len(missing) > 0 {
		return nil, notFoundNames(field, org, missing)
	}
	return out, nil
}
