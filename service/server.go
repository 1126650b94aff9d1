package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/service/audit"
	"github.com/secretbroker/secretbroker/service/state"
	"github.com/secretbroker/secretbroker/upstream"
)

// Upstream is what the service needs of GitHub. *upstream.Client
// satisfies it, pacing and retrying every call; tests may wrap it. The
// service coalesces identical reads in flight before they reach it.
type Upstream interface {
	GetPublicKey(ctx context.Context, s upstream.Scope) (upstream.PublicKey, error)
	RevalidatePublicKey(ctx context.Context, s upstream.Scope, etag string) (pk upstream.PublicKey, notModified bool, err error)
	ListSecrets(ctx context.Context, s upstream.Scope, p upstream.Page) (upstream.SecretList, error)
	GetSecret(ctx context.Context, s upstream.Scope, name string) (upstream.Secret, error)
	// PutSecretFunc calls body once per attempt, when the upstream pacer
	// has admitted the write and just before it is sent.
	PutSecretFunc(ctx context.Context, s upstream.Scope, name string, body func() (upstream.PutSecretBody, error)) (upstream.Written, error)
	DeleteSecret(ctx context.Context, s upstream.Scope, name string) error
	ListSelectedRepositories(ctx context.Context, s upstream.Scope, name string, p upstream.Page) (upstream.RepositoryList, error)
	SetSelectedRepositories(ctx context.Context, s upstream.Scope, name string, ids []int64) error
	AddSelectedRepository(ctx context.Context, s upstream.Scope, name string, id int64) error
	RemoveSelectedRepository(ctx context.Context, s upstream.Scope, name string, id int64) error
	ListRepositoryOrganizationSecrets(ctx context.Context, s upstream.Scope, p upstream.Page) (upstream.SecretList, error)
}

// DefaultKeyTTL is Options.KeyTTL's default.
const DefaultKeyTTL = 10 * time.Minute

// Options tune the service. The zero value is usable.
type Options struct {
	// Logger receives one line per failed request (never a value).
	// Default: discard.
	Logger *slog.Logger
	// KeyTTL is how long a scope's public key is used before it is
	// revalidated with a conditional request (If-None-Match; GitHub's 304
	// costs no primary quota). A rotation GitHub reports (422) is picked up
	// at once whatever the TTL. Default: 10 minutes.
	KeyTTL time.Duration
	// Authorizer decides what each caller may do; every call then needs an
	// authenticated caller (identity.WithCaller). Default: nil, every call
	// is allowed (no authentication is configured).
	Authorizer Authorizer
	// Audit is the audit trail. Default: nil, no trail.
	Audit *audit.Log
	// AuditReads records successful reads in the audit trail too. Default
	// false: changes and denials only.
	AuditReads bool
	// RepoNameTTL is how long a repository name's id, once resolved, is
	// used without asking GitHub again (reponames.go). Default: 10 minutes.
	RepoNameTTL time.Duration
	// MeterProvider receives the service's metrics (metrics.go): the key
	// cache's lookups and entries, batch items and sizes, authorization
	// decisions. Default: nil, a no-op provider.
	MeterProvider metric.MeterProvider
	// MetricsCallerLabel adds the authenticated caller's identity as a
	// caller label to secretbroker_authz_decisions_total and
	// secretbroker_batch_items_total ("none" for a call without one). Off
	// by default: callers are unbounded, and each multiplies the series.
	MetricsCallerLabel bool
	// TracerProvider receives the service's spans (trace.go): the key
	// cache lookup and the sealing of a value. Default: nil,
	// OpenTelemetry's global provider.
	TracerProvider trace.TracerProvider
	// State is where the broker remembers what it wrote (record.go):
	// fingerprints, key_id, GitHub's updated_at and the owner of each
	// secret, to skip unchanged writes, detect drift and prune only what
	// an owner wrote. The caller closes it. Default: nil, a new memory
	// store, lost on exit.
	State state.Store
	// Operations tune the runner of long-running operations (async
	// SyncSecrets and BatchPutSecrets, operations.go), kept in State.
	// Call ResumeOperations at start-up and CloseOperations at shutdown.
	Operations OperationOptions
}

// Server implements secretbroker.v1.SecretService.
type Server struct {
	secretbrokerv1.UnimplementedSecretServiceServer

	// up is the Upstream given to New, its identical reads in flight
	// shared (sharedReads) and GitHub's 404s named by what each call
	// asked for (namingUpstream).
	up Upstream
	// fresh is up's own Upstream, unshared: for the reads that judge a
	// write unchanged, which must not take the answer of a read in
	// flight since before the call (a write made straight at GitHub
	// meanwhile would be missed). Its 404s are named too.
	fresh Upstream
	keys  *keyCache
	log   *slog.Logger
	authz Authorizer
	audit *audit.Log
	// auditReads records successful reads too.
	auditReads bool
	// sealers bounds the values sealed at once (see sealSlots).
	sealers chan struct{}
	// metrics records the service's series; nil records nothing.
	metrics *metrics
	// repos resolves repository names to ids (reponames.go).
	repos *repoNames
	// tracer starts the service's spans.
	tracer trace.Tracer
	// state is what the broker remembers of its writes (record.go).
	state *stateOf
	// ops runs long-running operations (operations.go).
	ops *operations
	// valueOptional reports whether the upstream's GitHub takes a PUT of
	// a secret of the scope without encrypted_value and key_id
	// (upstream.Client.PutValueOptional); false for an Upstream that
	// does not say.
	valueOptional func(upstream.Scope) bool
}

// valueOptionalUpstream is an Upstream that says where a PUT may leave the
// value out (upstream.Client.PutValueOptional).
type valueOptionalUpstream interface {
	PutValueOptional(s upstream.Scope) bool
}

// valueOptionalOf returns up's PutValueOptional, or a function that says
// false when up does not have one.
func valueOptionalOf(up Upstream) func(upstream.Scope) bool {
	if vo, ok := up.(valueOptionalUpstream); ok {
		return vo.PutValueOptional
	}
	return func(upstream.Scope) bool { return false }
}

// sealSlots is how many values the broker seals at once: one core fewer
// than it has (at least one), so that a flood of writes, whose sealing is
// most of their CPU, always leaves a core for other callers' reads.
func sealSlots() int { return max(1, runtime.GOMAXPROCS(0)-1) }

// New returns the service, talking to GitHub through up.
func New(up Upstream, opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.KeyTTL == 0 {
		opts.KeyTTL = DefaultKeyTTL
	}
	keys := newKeyCache(up, opts.KeyTTL)
	m, err := newMetrics(opts.MeterProvider, keys)
	if err != nil {
		// The instruments' names and options are fixed; only a provider
		// that refuses everything fails here. Count nothing then.
		opts.Logger.Warn("service metrics disabled", slog.Any("error", err))
		m = nil
	}
	if m != nil {
		m.callerLabel = opts.MetricsCallerLabel
	}
	keys.metrics = m
	tracer := tracerOf(opts.TracerProvider)
	keys.tracer = tracer
	if opts.State == nil {
		// A memory store with a generated key cannot fail to open.
		st, err := state.NewMemory(state.Options{})
		if err != nil {
			panic(fmt.Sprintf("service: memory state store: %v", err))
		}
		opts.State = st
	}
	s := &Server{
		state:   &stateOf{store: opts.State},
		tracer:  tracer,
		metrics: m,
		up:      namingUpstream{&sharedReads{Upstream: up}},
		fresh:   namingUpstream{up},
		keys:    keys,
		log:     opts.Logger,
		authz:   opts.Authorizer,
		audit:   opts.Audit,

		auditReads: opts.AuditReads,
		sealers:    make(chan struct{}, sealSlots()),
		repos:      newRepoNames(up, opts.RepoNameTTL),

		valueOptional: valueOptionalOf(up),
	}
	s.ops = newOperations(s, up, opts.State, opts.Operations)
	return s
}

// The full gRPC method names, for audit records.
const (
	rpcGetPublicKey       = secretbrokerv1.SecretService_GetPublicKey_FullMethodName
	rpcListSecrets        = secretbrokerv1.SecretService_ListSecrets_FullMethodName
	rpcGetSecret          = secretbrokerv1.SecretService_GetSecret_FullMethodName
	rpcPutSecret          = secretbrokerv1.SecretService_PutSecret_FullMethodName
	rpcDeleteSecret       = secretbrokerv1.SecretService_DeleteSecret_FullMethodName
	rpcBatchPut           = secretbrokerv1.SecretService_BatchPutSecrets_FullMethodName
	rpcBatchDelete        = secretbrokerv1.SecretService_BatchDeleteSecrets_FullMethodName
	rpcListSelected       = secretbrokerv1.SecretService_ListSelectedRepositories_FullMethodName
	rpcSetSelected        = secretbrokerv1.SecretService_SetSelectedRepositories_FullMethodName
	rpcAddSelected        = secretbrokerv1.SecretService_AddSelectedRepository_FullMethodName
	rpcRemoveSelected     = secretbrokerv1.SecretService_RemoveSelectedRepository_FullMethodName
	rpcListRepoOrgSecrets = secretbrokerv1.SecretService_ListRepositoryOrganizationSecrets_FullMethodName
	rpcDetectDrift        = secretbrokerv1.SecretService_DetectDrift_FullMethodName
	rpcSyncSecrets        = secretbrokerv1.SecretService_SyncSecrets_FullMethodName
)

// GetPublicKey returns the scope's current public key. It exists to seal a
// value, so it needs write on some secret of the scope.
func (s *Server) GetPublicKey(ctx context.Context, req *secretbrokerv1.GetPublicKeyRequest) (*secretbrokerv1.PublicKey, error) {
	scope, err := parseParent("parent", req.GetParent())
	if err == nil {
		err = s.check(ctx, rpcGetPublicKey, nil, verbWrite, scopeName(scope), s.maySome(ctx, verbWrite, scopeName(scope)))
	}
	if err != nil {
		return nil, s.toStatus(ctx, "GetPublicKey", err)
	}
	k, err := s.keys.get(ctx, scope)
	if err != nil {
		return nil, s.toStatus(ctx, "GetPublicKey", err)
	}
	s.readDone(ctx, rpcGetPublicKey, scopeName(scope))
	return &secretbrokerv1.PublicKey{KeyId: string(k.id), Key: k.encoded}, nil
}

// ListSecrets lists one page of a scope's secrets: those the caller may
// read.
func (s *Server) ListSecrets(ctx context.Context, req *secretbrokerv1.ListSecretsRequest) (*secretbrokerv1.ListSecretsResponse, error) {
	scope, err := parseParent("parent", req.GetParent())
	if err != nil {
		return nil, s.toStatus(ctx, "ListSecrets", err)
	}
	page, err := pageFor(req.GetParent(), req.GetPageSize(), req.GetPageToken())
	if err == nil {
		err = s.check(ctx, rpcListSecrets, nil, verbRead, scopeName(scope), s.maySome(ctx, verbRead, scopeName(scope)))
	}
	if err != nil {
		return nil, s.toStatus(ctx, "ListSecrets", err)
	}
	list, err := s.readableWindow(ctx, scope, scope, page, s.up.ListSecrets)
	if err != nil {
		return nil, s.toStatus(ctx, "ListSecrets", err)
	}
	s.readDone(ctx, rpcListSecrets, scopeName(scope))
	return &secretbrokerv1.ListSecretsResponse{
		Secrets:       toSecrets(scope, list.Secrets),
		TotalCount:    int32(list.TotalCount),
		NextPageToken: nextPageToken(req.GetParent(), page, list.HasNext),
	}, nil
}

// GetSecret returns one secret's metadata.
func (s *Server) GetSecret(ctx context.Context, req *secretbrokerv1.GetSecretRequest) (*secretbrokerv1.Secret, error) {
	scope, name, err := parseSecretName("name", req.GetName())
	if err == nil {
		res := secretResourceName(scope, name)
		err = s.check(ctx, rpcGetSecret, nil, verbRead, res, s.may(ctx, verbRead, res))
	}
	if err != nil {
		return nil, s.toStatus(ctx, "GetSecret", err)
	}
	sec, err := s.up.GetSecret(ctx, scope, name)
	if err != nil {
		return nil, s.toStatus(ctx, "GetSecret", err)
	}
	s.readDone(ctx, rpcGetSecret, secretResourceName(scope, name))
	return toSecret(scope, sec), nil
}

// DeleteSecret deletes a secret, and the broker's record of it.
func (s *Server) DeleteSecret(ctx context.Context, req *secretbrokerv1.DeleteSecretRequest) (*emptypb.Empty, error) {
	err := s.mutate(ctx, rpcDeleteSecret, req.GetName(), verbDelete, parseSecretName,
		func(ctx context.Context, scope upstream.Scope, name string) error {
			return s.deleteRecorded(ctx, scope, name, nil)
		})
	if err != nil {
		return nil, s.toStatus(ctx, "DeleteSecret", err)
	}
	return &emptypb.Empty{}, nil
}

// mutate runs one audited, authorized change of the secret named raw:
// parse it, check verb, write the intent record, apply do, write the
// outcome record.
func (s *Server) mutate(ctx context.Context, rpc, raw, verb string,
	parse func(field, s string) (upstream.Scope, string, error),
	do func(ctx context.Context, scope upstream.Scope, name string) error,
) error {
	scope, name, err := parse("name", raw)
	if err != nil {
		s.rejected(ctx, rpc, nil, raw, err)
		return err
	}
	res := secretResourceName(scope, name)
	if err := s.check(ctx, rpc, nil, verb, res, s.may(ctx, verb, res)); err != nil {
		return err
	}
	ctx, ch, err := s.begin(ctx, rpc, nil, res, nil)
	if err != nil {
		return err
	}
	defer ch.endOnPanic(ctx)
	err = do(ctx, scope, name)
	ch.end(ctx, err)
	return err
}

// ListSelectedRepositories lists one page of an organization secret's
// selected repositories.
func (s *Server) ListSelectedRepositories(ctx context.Context, req *secretbrokerv1.ListSelectedRepositoriesRequest) (*secretbrokerv1.ListSelectedRepositoriesResponse, error) {
	scope, name, err := parseOrgSecretName("name", req.GetName())
	if err != nil {
		return nil, s.toStatus(ctx, "ListSelectedRepositories", err)
	}
	page, err := pageFor(req.GetName(), req.GetPageSize(), req.GetPageToken())
	if err == nil {
		res := secretResourceName(scope, name)
		err = s.check(ctx, rpcListSelected, nil, verbRead, res, s.may(ctx, verbRead, res))
	}
	if err != nil {
		return nil, s.toStatus(ctx, "ListSelectedRepositories", err)
	}
	list, err := s.repositoryWindow(ctx, scope, name, page)
	if err != nil {
		return nil, s.toStatus(ctx, "ListSelectedRepositories", err)
	}
	s.readDone(ctx, rpcListSelected, secretResourceName(scope, name))
	resp := &secretbrokerv1.ListSelectedRepositoriesResponse{
		TotalCount:    int32(list.TotalCount),
		NextPageToken: nextPageToken(req.GetName(), page, list.HasNext),
	}
	for _, r := range list.Repositories {
		resp.Repositories = append(resp.Repositories, &secretbrokerv1.Repository{
			Id: r.ID, Name: r.Name, FullName: r.FullName, Private: r.Private,
		})
	}
	return resp, nil
}

// SetSelectedRepositories replaces an organization secret's selected
// repositories.
func (s *Server) SetSelectedRepositories(ctx context.Context, req *secretbrokerv1.SetSelectedRepositoriesRequest) (*emptypb.Empty, error) {
	ids := req.GetSelectedRepositoryIds()
	if ids == nil {
		ids = []int64{} // an empty list clears the selection
	}
	names := req.GetSelectedRepositories()
	parse := func(field, raw string) (upstream.Scope, string, error) {
		scope, name, err := parseOrgSecretName(field, raw)
		if err == nil {
			err = checkRepositoryIDs("selected_repository_ids", ids)
		}
		if err == nil {
			err = checkRepoNames("selected_repositories", scope.Org, names)
		}
		return scope, name, err
	}
	err := s.mutate(ctx, rpcSetSelected, req.GetName(), verbManage, parse,
		func(ctx context.Context, scope upstream.Scope, name string) error {
			all, err := s.repos.withNames(ctx, "selected_repositories", scope.Org, ids, names)
			if err != nil {
				return err
			}
			return s.changingSelection(ctx, scope, name, func(ctx context.Context) error {
				return s.up.SetSelectedRepositories(ctx, scope, name, all)
			})
		})
	if err != nil {
		return nil, s.toStatus(ctx, "SetSelectedRepositories", err)
	}
	return &emptypb.Empty{}, nil
}

// AddSelectedRepository adds a repository to an organization secret.
func (s *Server) AddSelectedRepository(ctx context.Context, req *secretbrokerv1.AddSelectedRepositoryRequest) (*emptypb.Empty, error) {
	return s.changeSelection(ctx, "AddSelectedRepository", rpcAddSelected, req.GetName(), req.GetRepositoryId(), req.GetRepository(), s.up.AddSelectedRepository)
}

// RemoveSelectedRepository removes a repository from an organization secret.
func (s *Server) RemoveSelectedRepository(ctx context.Context, req *secretbrokerv1.RemoveSelectedRepositoryRequest) (*emptypb.Empty, error) {
	return s.changeSelection(ctx, "RemoveSelectedRepository", rpcRemoveSelected, req.GetName(), req.GetRepositoryId(), req.GetRepository(), s.up.RemoveSelectedRepository)
}

// changeSelection adds or removes one repository of an organization
// secret's selection, given by id or by repository (a name or an id).
func (s *Server) changeSelection(ctx context.Context, op, rpc, secret string, id int64, repository string,
	change func(context.Context, upstream.Scope, string, int64) error,
) (*emptypb.Empty, error) {
	var repoName string
	parse := func(field, raw string) (upstream.Scope, string, error) {
		scope, name, err := parseOrgSecretName(field, raw)
		if err == nil {
			id, repoName, err = parseRepository(scope.Org, id, repository)
		}
		return scope, name, err
	}
	err := s.mutate(ctx, rpc, secret, verbManage, parse,
		func(ctx context.Context, scope upstream.Scope, name string) error {
			if repoName != "" {
				ids, err := s.repos.resolveAll(ctx, "repository", scope.Org, []string{repoName})
				if err != nil {
					return err
				}
				id = ids[0]
			}
			return s.changingSelection(ctx, scope, name, func(ctx context.Context) error {
				return change(ctx, scope, name, id)
			})
		})
	if err != nil {
		return nil, s.toStatus(ctx, op, err)
	}
	return &emptypb.Empty{}, nil
}

// ListRepositoryOrganizationSecrets lists the organization secrets shared
// with a repository: those the caller may read, by their organization
// resource names. It needs read on some secret of the repository's scope or
// of the organization's.
func (s *Server) ListRepositoryOrganizationSecrets(ctx context.Context, req *secretbrokerv1.ListRepositoryOrganizationSecretsRequest) (*secretbrokerv1.ListRepositoryOrganizationSecretsResponse, error) {
	scope, err := parseRepoParent("parent", req.GetParent())
	if err != nil {
		return nil, s.toStatus(ctx, "ListRepositoryOrganizationSecrets", err)
	}
	// The repository's owner is the organization the secrets belong to.
	org := upstream.Scope{App: scope.App, Org: scope.Owner}
	page, err := pageFor(req.GetParent()+"/organization-secrets", req.GetPageSize(), req.GetPageToken())
	if err == nil {
		ok := s.maySome(ctx, verbRead, scopeName(scope)) || s.maySome(ctx, verbRead, scopeName(org))
		err = s.check(ctx, rpcListRepoOrgSecrets, nil, verbRead, scopeName(scope), ok)
	}
	if err != nil {
		return nil, s.toStatus(ctx, "ListRepositoryOrganizationSecrets", err)
	}
	list, err := s.readableWindow(ctx, scope, org, page, s.up.ListRepositoryOrganizationSecrets)
	if err != nil {
		return nil, s.toStatus(ctx, "ListRepositoryOrganizationSecrets", err)
	}
	s.readDone(ctx, rpcListRepoOrgSecrets, scopeName(scope))
	return &secretbrokerv1.ListRepositoryOrganizationSecretsResponse{
		Secrets:       toSecrets(org, list.Secrets),
		TotalCount:    int32(list.TotalCount),
		NextPageToken: nextPageToken(req.GetParent()+"/organization-secrets", page, list.HasNext),
	}, nil
}

func checkRepositoryIDs(field string, ids []int64) error {
	for _, id := range ids {
		if id <= 0 {
			return invalidArg(field, "repository id %d is not a positive GitHub repository id", id)
		}
	}
	return nil
}

func toSecrets(scope upstream.Scope, in []upstream.Secret) []*secretbrokerv1.Secret {
	out := make([]*secretbrokerv1.Secret, 0, len(in))
	for _, sec := range in {
		out = append(out, toSecret(scope, sec))
	}
	return out
}

func toSecret(scope upstream.Scope, sec upstream.Secret) *secretbrokerv1.Secret {
	out := &secretbrokerv1.Secret{
		Name:                    secretResourceName(scope, sec.Name),
		SecretId:                sec.Name,
		Visibility:              sec.Visibility,
		SelectedRepositoriesUrl: sec.SelectedRepositoriesURL,
	}
	if !sec.CreatedAt.IsZero() {
		out.CreatedAt = timestamppb.New(sec.CreatedAt)
	}
	if !sec.UpdatedAt.IsZero() {
		out.UpdatedAt = timestamppb.New(sec.UpdatedAt)
	}
	return out
}

// isStatus reports whether err is an upstream answer with that HTTP status.
func isStatus(err error, code int) bool {
	var ue *upstream.Error
	return errors.As(err, &ue) && ue.StatusCode == code
}

// isRedirect reports whether err is GitHub's redirect (3xx), which the
// client does not follow.
func isRedirect(err error) bool {
	var ue *upstream.Error
	return errors.As(err, &ue) && ue.StatusCode >= 300 && ue.StatusCode <= 399 && ue.StatusCode != http.StatusNotModified
}

// deleteRecorded deletes a secret at GitHub and, when it is gone (deleted
// now, or already: 404), the broker's record of it. It is a write of the
// secret: it holds the secret's write lock and is counted where replicas
// share the store (trackWrite), so that a put of the secret on another
// replica meanwhile is not recorded as if the secret were still there;
// the record is distrusted before the DELETE is sent. check, when not
// nil, is given the record as read after the delete began, with the
// context that holds the secret's lease (for what it reads), and may
// refuse it (a prune's owner check): its error is returned and nothing is
// deleted.
func (s *Server) deleteRecorded(ctx context.Context, scope upstream.Scope, name string, check func(context.Context, *state.Record) error) (err error) {
	need := leaseIfUp
	if check != nil {
		need = leaseRequired // a prune's: never without the lease
	}
	held, unlock, cur, err := s.lockSecret(ctx, scope, name, need)
	if err != nil {
		return err
	}
	defer unlock(&err)
	ctx = held
	key := secretKey(scope, name)
	tw, cur := s.trackWrite(ctx, key, cur)
	defer tw.end(ctx)
	if check != nil {
		if err := check(ctx, cur.rec); err != nil {
			return err
		}
	}
	s.distrustRecord(ctx, key, cur.rec, cur.readOK)
	err = s.up.DeleteSecret(ctx, scope, name)
	if err == nil || isStatus(err, http.StatusNotFound) {
		s.dropRecord(ctx, key)
		if legacy := legacyRecordName(scope, name); legacy != "" {
			s.dropRecord(ctx, legacy)
		}
	}
	return err
}
