package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/emptypb"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
)

// diffRPCs are the RPCs FuzzGatewayAgainstGRPC sends, by the fuzz input's
// first byte.
var diffRPCs = []string{
	"GetPublicKey", "ListSecrets", "GetSecret", "PutSecret", "DeleteSecret",
	"ListSelectedRepositories", "SetSelectedRepositories", "AddSelectedRepository",
	"RemoveSelectedRepository", "ListRepositoryOrganizationSecrets", "BatchPutSecrets",
	"BatchDeleteSecrets", "DetectDrift", "SyncSecrets", "GetOperation", "ListOperations",
	"CancelOperation", "WaitOperation",
}

// diffInput is one fuzz input of FuzzGatewayAgainstGRPC.
type diffInput struct {
	rpc, scope                    uint8
	owner, repo, env, secret      string
	value, visibility, repos, tok string
	pageSize                      int32
	flags                         uint8
}

// Flags of diffInput.flags.
const (
	diffEncrypted = 1 << iota // encrypted_value (and key_id) instead of value
	diffForce
	diffPrune
	diffDryRun
	diffNotDone
	diffRepoID // Add/RemoveSelectedRepository: repository_id, not repository
	diffTwo    // batches and syncs: a second item
	// diffOp: operation RPCs: the broker's own operation, not the fuzzed
	// id; batches of puts and syncs: async, then (asyncFollowUp) an
	// operation RPC on the operation each side got.
	diffOp
)

// pathSafe is s as a URL path may hold it: a byte a path cannot hold
// as it is (a space, '?', '#', a control or non-ASCII byte) and a '%'
// that starts no escape are escaped. What stays is s exactly: the fuzzer
// keeps its own escapes ("prod%2Feu", "%252F") and slashes.
func pathSafe(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			b.WriteByte(c)
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			strings.IndexByte("-._~!$&'()*+,;=:@/", c) >= 0:
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// parent is the input's scope, in one of the README's forms (or, form 5,
// the owner field as a whole parent), each segment made path-safe; the
// scope byte's two high bits are flags (pathInBody, idsAsNumbers).
func (in diffInput) parent() string {
	o, r, e := pathSafe(in.owner), pathSafe(in.repo), pathSafe(in.env)
	switch (in.scope & 0x3f) % 6 {
	case 0:
		return "orgs/" + o + "/actions"
	case 1:
		return "orgs/" + o + "/agents"
	case 2:
		return "repos/" + o + "/" + r + "/actions"
	case 3:
		return "repos/" + o + "/" + r + "/agents"
	case 4:
		return "repos/" + o + "/" + r + "/environments/" + e
	}
	return o
}

func (in diffInput) name() string { return in.parent() + "/secrets/" + pathSafe(in.secret) }

// selection splits repos at commas into ids (digits) and names.
func (in diffInput) selection() (ids []int64, names []string) {
	if in.repos == "" {
		return nil, nil
	}
	for p := range strings.SplitSeq(in.repos, ",") {
		if id, err := strconv.ParseInt(p, 10, 64); err == nil {
			ids = append(ids, id)
		} else {
			names = append(names, p)
		}
	}
	return ids, names
}

func (in diffInput) put(name string) *secretbrokerv1.PutSecretRequest {
	ids, names := in.selection()
	r := &secretbrokerv1.PutSecretRequest{Name: name, Visibility: in.visibility,
		SelectedRepositoryIds: ids, SelectedRepositories: names, Force: in.flags&diffForce != 0}
	switch {
	case in.flags&diffEncrypted != 0:
		r.Payload = &secretbrokerv1.PutSecretRequest_EncryptedValue{EncryptedValue: in.value}
		r.KeyId = in.tok
	case in.value != "" || in.flags&diffNotDone != 0:
		// diffNotDone (else ListOperations') sets an empty value.
		r.Payload = &secretbrokerv1.PutSecretRequest_Value{Value: in.value}
	}
	return r
}

func (in diffInput) opName(op string) string {
	if in.flags&diffOp != 0 {
		return op
	}
	return "operations/" + pathSafe(in.secret)
}

// pathInBody, in diffInput.scope, has the body set its path's field;
// idsAsNumbers has it give repository ids as JSON numbers.
const (
	pathInBody   = 0x80
	idsAsNumbers = 0x40
)

// idList matches a JSON body's list of repository ids.
var idList = regexp.MustCompile(`"selected_repository_ids":\s*\[[^\]]*\]`)

// diffRequest is one request as gRPC takes it and as the README's JSON
// route for it.
type diffRequest struct {
	rpc    string
	msg    proto.Message // the gRPC request
	out    proto.Message // a zero answer
	method string
	path   string // after /v1/
	query  url.Values
	body   proto.Message // nil: no body
	// pathInBody: the body sets the field the path gives, which the
	// gateway refuses whatever its value.
	pathInBody bool
	// idsAsNumbers: the body's repository ids are JSON numbers.
	idsAsNumbers bool
}

// build returns the input's request; op is the broker's operation name
// (the same on both sides for the gRPC request; each broker's own in the
// JSON path, see send).
func (in diffInput) build(op string) diffRequest {
	rpc := diffRPCs[int(in.rpc)%len(diffRPCs)]
	page := func(q url.Values) url.Values {
		if in.pageSize != 0 {
			q.Set("page_size", strconv.FormatInt(int64(in.pageSize), 10))
		}
		if in.tok != "" {
			q.Set("page_token", in.tok)
		}
		return q
	}
	d := diffRequest{rpc: rpc, query: url.Values{}, idsAsNumbers: in.scope&idsAsNumbers != 0}
	withoutPath := func(m proto.Message, field protoreflect.Name) proto.Message {
		c := proto.Clone(m)
		if in.scope&pathInBody != 0 && c.ProtoReflect().Get(c.ProtoReflect().Descriptor().Fields().ByName(field)).String() != "" {
			d.pathInBody = true // the body sets its path's field too
			return c
		}
		c.ProtoReflect().Clear(c.ProtoReflect().Descriptor().Fields().ByName(field))
		return c
	}
	switch rpc {
	case "GetPublicKey":
		d.msg, d.out = &secretbrokerv1.GetPublicKeyRequest{Parent: in.parent()}, &secretbrokerv1.PublicKey{}
		d.method, d.path = http.MethodGet, in.parent()+"/secrets/public-key"
	case "ListSecrets":
		d.msg = &secretbrokerv1.ListSecretsRequest{Parent: in.parent(), PageSize: in.pageSize, PageToken: in.tok}
		d.out = &secretbrokerv1.ListSecretsResponse{}
		d.method, d.path, d.query = http.MethodGet, in.parent()+"/secrets", page(url.Values{})
	case "GetSecret":
		d.msg, d.out = &secretbrokerv1.GetSecretRequest{Name: in.name()}, &secretbrokerv1.Secret{}
		d.method, d.path = http.MethodGet, in.name()
	case "PutSecret":
		d.msg, d.out = in.put(in.name()), &secretbrokerv1.PutSecretResponse{}
		d.method, d.path, d.body = http.MethodPut, in.name(), withoutPath(d.msg, "name")
	case "DeleteSecret":
		d.msg, d.out = &secretbrokerv1.DeleteSecretRequest{Name: in.name()}, &emptypb.Empty{}
		d.method, d.path = http.MethodDelete, in.name()
	case "ListSelectedRepositories":
		d.msg = &secretbrokerv1.ListSelectedRepositoriesRequest{Name: in.name(), PageSize: in.pageSize, PageToken: in.tok}
		d.out = &secretbrokerv1.ListSelectedRepositoriesResponse{}
		d.method, d.path, d.query = http.MethodGet, in.name()+"/repositories", page(url.Values{})
	case "SetSelectedRepositories":
		ids, names := in.selection()
		d.msg = &secretbrokerv1.SetSelectedRepositoriesRequest{Name: in.name(), SelectedRepositoryIds: ids, SelectedRepositories: names}
		d.out = &emptypb.Empty{}
		d.method, d.path, d.body = http.MethodPut, in.name()+"/repositories", withoutPath(d.msg, "name")
	case "AddSelectedRepository", "RemoveSelectedRepository":
		seg := in.repos
		var id int64
		if in.flags&diffRepoID != 0 {
			id = int64(in.pageSize)
			seg = strconv.FormatInt(id, 10)
		}
		if rpc == "AddSelectedRepository" {
			r := &secretbrokerv1.AddSelectedRepositoryRequest{Name: in.name(), RepositoryId: id}
			if id == 0 && in.flags&diffRepoID == 0 {
				r.Repository = in.repos
			}
			d.msg, d.method = r, http.MethodPut
		} else {
			r := &secretbrokerv1.RemoveSelectedRepositoryRequest{Name: in.name(), RepositoryId: id}
			if id == 0 && in.flags&diffRepoID == 0 {
				r.Repository = in.repos
			}
			d.msg, d.method = r, http.MethodDelete
		}
		d.out = &emptypb.Empty{}
		d.path = in.name() + "/repositories/" + url.PathEscape(seg)
	case "ListRepositoryOrganizationSecrets":
		d.msg = &secretbrokerv1.ListRepositoryOrganizationSecretsRequest{Parent: in.parent(), PageSize: in.pageSize, PageToken: in.tok}
		d.out = &secretbrokerv1.ListRepositoryOrganizationSecretsResponse{}
		d.method, d.path, d.query = http.MethodGet, in.parent()+"/organization-secrets", page(url.Values{})
	case "BatchPutSecrets":
		items := []*secretbrokerv1.PutSecretRequest{in.put(in.name())}
		if in.flags&diffTwo != 0 {
			items = append(items, in.put("orgs/octo-org/actions/secrets/"+pathSafe(in.env)))
		}
		d.msg = &secretbrokerv1.BatchPutSecretsRequest{Requests: items, Async: in.flags&diffOp != 0}
		d.out = &secretbrokerv1.BatchPutSecretsResponse{}
		d.method, d.path, d.body = http.MethodPost, "secrets:batchPut", d.msg
	case "BatchDeleteSecrets":
		names := []string{in.name()}
		if in.flags&diffTwo != 0 {
			names = append(names, in.name())
		}
		d.msg, d.out = &secretbrokerv1.BatchDeleteSecretsRequest{Names: names}, &secretbrokerv1.BatchDeleteSecretsResponse{}
		d.method, d.path, d.body = http.MethodPost, "secrets:batchDelete", d.msg
	case "DetectDrift":
		d.msg, d.out = &secretbrokerv1.DetectDriftRequest{Parent: in.parent()}, &secretbrokerv1.DetectDriftResponse{}
		d.method, d.path = http.MethodGet, in.parent()+"/secrets:detectDrift"
	case "SyncSecrets":
		ids, _ := in.selection()
		r := &secretbrokerv1.SyncSecretsRequest{Parent: in.parent(), Secrets: map[string]string{in.secret: in.value},
			Prune: in.flags&diffPrune != 0, DryRun: in.flags&diffDryRun != 0, Force: in.flags&diffForce != 0,
			Owner: in.tok, Visibility: in.visibility, SelectedRepositoryIds: ids, Async: in.flags&diffOp != 0}
		if in.flags&diffTwo != 0 {
			r.Secrets[in.env] = in.value
		}
		if r.Prune && in.repos != "" {
			r.ExpectedDeletes = &secretbrokerv1.ExpectedDeletes{SecretNames: strings.Split(in.repos, ",")}
		}
		d.msg, d.out = r, &secretbrokerv1.SyncSecretsResponse{}
		d.method, d.path, d.body = http.MethodPost, in.parent()+"/secrets:sync", withoutPath(r, "parent")
	case "GetOperation":
		d.msg, d.out = &secretbrokerv1.GetOperationRequest{Name: in.opName(op)}, &secretbrokerv1.Operation{}
		d.method, d.path = http.MethodGet, in.opName(op)
	case "ListOperations":
		d.msg = &secretbrokerv1.ListOperationsRequest{PageSize: in.pageSize, PageToken: in.tok, NotDone: in.flags&diffNotDone != 0}
		d.out = &secretbrokerv1.ListOperationsResponse{}
		d.method, d.path, d.query = http.MethodGet, "operations", page(url.Values{})
		if in.flags&diffNotDone != 0 {
			d.query.Set("not_done", "true")
		}
	case "CancelOperation":
		d.msg, d.out = &secretbrokerv1.CancelOperationRequest{Name: in.opName(op)}, &secretbrokerv1.Operation{}
		d.method, d.path, d.body = http.MethodPost, in.opName(op)+":cancel", &secretbrokerv1.CancelOperationRequest{}
	case "WaitOperation":
		r := &secretbrokerv1.WaitOperationRequest{Name: in.opName(op)}
		if in.pageSize != 0 {
			r.Timeout = durationpb.New(time.Duration(in.pageSize%5) * time.Second)
		}
		d.msg, d.out = r, &secretbrokerv1.Operation{}
		d.method, d.path, d.body = http.MethodPost, in.opName(op)+":wait", withoutPath(r, "name")
	}
	return d
}

// refusedURL is routedTo's answer for a URL the gateway refuses before
// routing (checkRequestURL).
const refusedURL = "(refused URL)"

// diffBroker is one side's broker and its operation.
type diffBroker struct {
	b  *broker
	op string // "operations/..."
}

// startDiffBroker starts a --dev broker (no rate limits) and gives it
// FuzzGatewayAgainstGRPC's initial state, over gRPC: secrets in each
// scope form and one finished operation.
func startDiffBroker(t *testing.T) diffBroker {
	t.Helper()
	cfg, err := loadConfig([]string{"--dev", "--dev-limits=off", "--grpc-addr=127.0.0.1:0", "--http-addr=127.0.0.1:0",
		"--admin-addr=127.0.0.1:0", "--shutdown-timeout=5s"}, envMap(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	b := startBroker(t, cfg)
	svc := secretbrokerv1.NewSecretServiceClient(b.conn)
	ctx := t.Context()
	for _, p := range []*secretbrokerv1.PutSecretRequest{
		{Name: "orgs/octo-org/actions/secrets/ORG_SELECTED", Visibility: "selected", SelectedRepositoryIds: []int64{1296269}},
		{Name: "orgs/octo-org/actions/secrets/ORG_ALL", Visibility: "all"},
		{Name: "orgs/octo-org/agents/secrets/AGENT_PRIVATE", Visibility: "private"},
		{Name: "repos/octo-org/hello-world/actions/secrets/REPO_TOKEN"},
		{Name: "repos/octo-org/hello-world/agents/secrets/REPO_AGENT"},
		{Name: "repos/octo-org/hello-world/environments/prod%2Feu/secrets/ENV_TOKEN"},
		{Name: "repos/octo-org/hello-world/environments/staging/secrets/STAGING_TOKEN"},
	} {
		p.Payload = &secretbrokerv1.PutSecretRequest_Value{Value: "initial-value"}
		if _, err := svc.PutSecret(ctx, p); err != nil {
			t.Fatalf("initial state: %s: %v", p.GetName(), err)
		}
	}
	resp, err := svc.BatchPutSecrets(ctx, &secretbrokerv1.BatchPutSecretsRequest{Async: true, Requests: []*secretbrokerv1.PutSecretRequest{
		{Name: "repos/octo-org/docs/actions/secrets/DOCS_TOKEN", Payload: &secretbrokerv1.PutSecretRequest_Value{Value: "initial-value"}},
	}})
	if err != nil {
		t.Fatalf("initial operation: %v", err)
	}
	op := resp.GetOperation().GetName()
	for {
		o, err := svc.WaitOperation(ctx, &secretbrokerv1.WaitOperationRequest{Name: op, Timeout: durationpb.New(10 * time.Second)})
		if err != nil {
			t.Fatalf("initial operation: %v", err)
		}
		if o.GetDone() {
			break
		}
	}
	return diffBroker{b: b, op: op}
}

// readmeStatus is the README's HTTP status for a gRPC error ("Errors",
// "Resource names"): GitHub's 409 (FAILED_PRECONDITION with ErrorInfo
// GITHUB_CONFLICT) and ABORTED are 409, the broker's own
// FAILED_PRECONDITION 400; codes the README does not name keep
// grpc-gateway's mapping.
func readmeStatus(st *status.Status) int {
	switch st.Code() {
	case codes.OK:
		return http.StatusOK
	case codes.InvalidArgument:
		return http.StatusBadRequest
	case codes.FailedPrecondition:
		for _, d := range st.Details() {
			if ei, ok := d.(*errdetails.ErrorInfo); ok && ei.GetReason() == "GITHUB_CONFLICT" {
				return http.StatusConflict
			}
		}
		return http.StatusBadRequest
	case codes.NotFound:
		return http.StatusNotFound
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	case codes.Aborted:
		return http.StatusConflict
	}
	return runtime.HTTPStatusFromCode(st.Code())
}

// errorShape is what an error must keep across the two sides: its code,
// its ErrorInfo reasons and its BadRequest fields.
func errorShape(st *spb.Status) string {
	var reasons, fields []string
	for _, a := range st.GetDetails() {
		m, err := a.UnmarshalNew()
		if err != nil {
			continue
		}
		switch d := m.(type) {
		case *errdetails.ErrorInfo:
			reasons = append(reasons, d.GetReason())
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				fields = append(fields, v.GetField())
			}
		}
	}
	return fmt.Sprintf("%s reasons=%q fields=%q", codes.Code(st.GetCode()), reasons, fields)
}

// natural clears what differs between two brokers by nature: each
// emulator has its own random keys (key_id, key) and address (the host of
// selected_repositories_url), each broker its own
// operation ids, page-token key and clock (timestamps); a next page token
// is compared for being there only.
func natural(m proto.Message) {
	var walk func(protoreflect.Message)
	walk = func(m protoreflect.Message) {
		m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			switch {
			case fd.Name() == "key_id" || fd.Name() == "key":
				m.Set(fd, protoreflect.ValueOfString("K"))
			case fd.Name() == "selected_repositories_url":
				// GitHub's URL: each emulator has its own address.
				if u, err := url.Parse(v.String()); err == nil {
					m.Set(fd, protoreflect.ValueOfString(u.Path))
				}
			case fd.Name() == "next_page_token":
				m.Set(fd, protoreflect.ValueOfString("T"))
			case fd.Message() != nil && fd.Message().FullName() == "google.protobuf.Timestamp":
				m.Clear(fd)
			case fd.Name() == "name" && m.Descriptor().FullName() == "secretbroker.v1.Operation":
				m.Clear(fd)
			case fd.Message() != nil && fd.IsList():
				l := v.List()
				for i := range l.Len() {
					walk(l.Get(i).Message())
				}
			case fd.Message() != nil && !fd.IsMap():
				walk(v.Message())
			}
			return true
		})
	}
	walk(m.ProtoReflect())
}

// gwOutcome is the gateway's answer.
type gwOutcome struct {
	status int
	body   []byte
	header http.Header
}

// sendGRPC sends d over gRPC.
func sendGRPC(ctx context.Context, b diffBroker, d diffRequest) (proto.Message, *status.Status) {
	out := d.out.ProtoReflect().New().Interface()
	err := b.b.conn.Invoke(ctx, "/secretbroker.v1.SecretService/"+d.rpc, d.msg, out)
	return out, status.Convert(err)
}

// bodyMode is how sendJSON sends a request's body: as it is, or in one
// of the ways the gateway refuses before gRPC sees the call (or, on a
// route that takes no body, ignores). It is the fuzz input's rpc byte
// over len(diffRPCs), so the seeds (rpc < len(diffRPCs)) send bodies as
// they are.
type bodyMode uint8

const (
	bodyAsIs bodyMode = iota
	// bodyTooLarge declares a Content-Length over maxRequestBytes and
	// sends only the JSON: the gateway refuses it by the length (413).
	bodyTooLarge
	// bodyTextPlain, bodyForm, bodyNoType, bodyTwoTypes and bodyJSONLike
	// send the JSON with a Content-Type that is not JSON's (415).
	bodyTextPlain
	bodyForm
	bodyNoType
	bodyTwoTypes
	bodyJSONLike
	// bodyTruncated cuts the JSON short; bodyTrailing sends a second
	// value after it; bodyUnknownField adds a field the request does not
	// have, first (400).
	bodyTruncated
	bodyTrailing
	bodyUnknownField
	bodyModes
)

// unknownField is the field bodyUnknownField adds: no request has it.
const unknownField = "zz_not_a_field"

// mode is the input's bodyMode.
func (in diffInput) mode() bodyMode {
	if m := bodyMode(int(in.rpc) / len(diffRPCs)); m < bodyModes {
		return m
	}
	return bodyAsIs
}

// wrongType reports whether m sends a Content-Type that is not JSON's.
func (m bodyMode) wrongType() bool { return bodyTextPlain <= m && m <= bodyJSONLike }

// sendJSON sends d as the README's JSON route to b's gateway, its body as
// mode says; a request without a body gets one, the value as a JSON
// object, in a mode other than bodyAsIs. The operation's name in the
// path is b's own (the gRPC side sends its own too: see
// FuzzGatewayAgainstGRPC).
func sendJSON(t *testing.T, b diffBroker, d diffRequest, mode bodyMode, value string) gwOutcome {
	var raw []byte
	switch {
	case d.body != nil:
		opts := protojson.MarshalOptions{UseProtoNames: true}
		if d.rpc == "SetSelectedRepositories" {
			// An empty selection is sent as [] (clear), as the README's
			// route takes it.
			opts.EmitUnpopulated = true
		}
		msg := proto.Clone(d.body)
		invalid := placeInvalid(msg.ProtoReflect())
		var err error
		raw, err = opts.Marshal(msg)
		if err != nil {
			t.Fatal(err)
		}
		// A string that is not UTF-8 goes as its bytes, as a JSON client
		// that does not check may send it.
		for i, v := range invalid {
			raw = bytes.Replace(raw, []byte(strconv.Quote(invalidPlaceholder(i))), rawJSONString(v), 1)
		}
		if d.idsAsNumbers {
			// int64s are "accepted as numbers or strings".
			raw = idList.ReplaceAllFunc(raw, func(l []byte) []byte {
				i := bytes.IndexByte(l, '[')
				return append(l[:i:i], bytes.ReplaceAll(l[i:], []byte(`"`), nil)...)
			})
		}
	case mode != bodyAsIs:
		raw = append(append([]byte(`{"value":`), rawJSONString(value)...), '}')
	}
	header := http.Header{}
	if raw != nil {
		header.Set("Content-Type", "application/json")
	}
	switch mode {
	case bodyTextPlain:
		header.Set("Content-Type", "text/plain")
	case bodyForm:
		header.Set("Content-Type", "application/x-www-form-urlencoded")
	case bodyNoType:
		header.Del("Content-Type")
	case bodyTwoTypes:
		header.Add("Content-Type", "application/json")
	case bodyJSONLike:
		header.Set("Content-Type", "application/json-patch+json")
	case bodyTruncated:
		// Any strict prefix of a JSON object but the empty one (no body).
		raw = raw[:1+len(value)%(len(raw)-1)]
	case bodyTrailing:
		raw = append(raw, ` {}`...)
	case bodyUnknownField:
		raw = append(append(append([]byte(`{"`+unknownField+`":`), rawJSONString(value)...), ','), bytes.TrimPrefix(bytes.TrimSpace(raw), []byte("{"))...)
		if bytes.HasSuffix(raw, []byte(",}")) { // the body was {}
			raw = append(raw[:len(raw)-2], '}')
		}
	}
	target := "/v1/" + d.path
	if q := d.query.Encode(); q != "" {
		target += "?" + q
	}
	if mode == bodyTooLarge {
		// The JSON, then nothing: the gateway must answer by the
		// Content-Length alone, before it reads a byte.
		head := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d",
			d.method, target, b.b.httpAddr, maxRequestBytes+1)
		a := sendRaw(t, b.b.httpAddr, head, bytes.NewReader(raw))
		return gwOutcome{status: a.code, body: []byte(a.raw), header: a.header}
	}
	var body io.Reader
	if raw != nil {
		body = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(t.Context(), d.method, "http://"+b.b.httpAddr, body)
	if err != nil {
		t.Fatal(err)
	}
	// The request line carries the path exactly as written.
	req.URL.Opaque = "/v1/" + d.path
	req.URL.RawQuery = d.query.Encode()
	req.Header = header
	resp, err := b.b.http.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", d.method, target, err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return gwOutcome{status: resp.StatusCode, body: got, header: resp.Header}
}

// invalidPlaceholder is the text placeInvalid puts for the i-th string
// that is not UTF-8.
func invalidPlaceholder(i int) string { return fmt.Sprintf("@INVALID_UTF8_%d@", i) }

// placeInvalid replaces, in m, each string (map keys included) that is
// not UTF-8 by a placeholder, and returns them in order.
func placeInvalid(m protoreflect.Message) []string {
	var out []string
	repl := func(v string) string {
		if utf8.ValidString(v) {
			return v
		}
		out = append(out, v)
		return invalidPlaceholder(len(out) - 1)
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsMap():
			old := v.Map()
			n := m.NewField(fd).Map()
			old.Range(func(k protoreflect.MapKey, v protoreflect.Value) bool {
				key := protoreflect.ValueOfString(repl(k.String())).MapKey()
				if fd.MapValue().Kind() == protoreflect.StringKind {
					v = protoreflect.ValueOfString(repl(v.String()))
				}
				n.Set(key, v)
				return true
			})
			m.Set(fd, protoreflect.ValueOfMap(n))
		case fd.IsList():
			l := v.List()
			for i := range l.Len() {
				switch {
				case fd.Kind() == protoreflect.StringKind:
					l.Set(i, protoreflect.ValueOfString(repl(l.Get(i).String())))
				case fd.Message() != nil:
					out = append(out, placeInvalidFrom(l.Get(i).Message(), len(out))...)
				}
			}
		case fd.Kind() == protoreflect.StringKind:
			m.Set(fd, protoreflect.ValueOfString(repl(v.String())))
		case fd.Message() != nil:
			out = append(out, placeInvalidFrom(v.Message(), len(out))...)
		}
		return true
	})
	return out
}

// placeInvalidFrom is placeInvalid for a nested message, numbering its
// placeholders from n.
func placeInvalidFrom(m protoreflect.Message, n int) []string {
	got := placeInvalid(m)
	// Renumber: placeInvalid numbered them from 0.
	for i := len(got) - 1; i >= 0; i-- {
		renumber(m, invalidPlaceholder(i), invalidPlaceholder(n+i))
	}
	return got
}

// renumber replaces the placeholder from by to in m's strings.
func renumber(m protoreflect.Message, from, to string) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Kind() == protoreflect.StringKind:
			l := v.List()
			for i := range l.Len() {
				if l.Get(i).String() == from {
					l.Set(i, protoreflect.ValueOfString(to))
				}
			}
		case !fd.IsList() && !fd.IsMap() && fd.Kind() == protoreflect.StringKind && v.String() == from:
			m.Set(fd, protoreflect.ValueOfString(to))
		}
		return true
	})
}

// rawJSONString is s as a JSON string with its bytes as they are: only
// '"', '\\' and control characters are escaped.
func rawJSONString(s string) []byte {
	b := []byte{'"'}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20:
			b = fmt.Appendf(b, "\\u%04x", c)
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

// routedTo returns the RPC whose route the gateway matches for d's
// method and path, or "" when none does (the gateway's 404 or 405), or
// refusedURL when the gateway refuses the URL before routing it.
func routedTo(t *testing.T, probe *routeProbe, d diffRequest) (string, bool) {
	u, err := url.ParseRequestURI("/v1/" + d.path)
	if err != nil {
		t.Fatalf("%q is no request URI: %v", d.path, err)
	}
	if checkRequestURL(u) != nil {
		return refusedURL, true
	}
	req := (&http.Request{Method: d.method, URL: u, Header: http.Header{}}).WithContext(t.Context())
	res := probe.match(req, d.method)
	if !res.matched {
		return "", false
	}
	for _, rpc := range diffRPCs {
		for _, rt := range methodRoutes("/" + secretbrokerv1.SecretService_ServiceDesc.ServiceName + "/" + rpc) {
			if routeKey(rt.method, rt.path) == d.method+" "+res.pat.String() {
				return rpc, true
			}
		}
	}
	return "", true
}

// FuzzGatewayAgainstGRPC builds one request of a SecretService RPC from
// the fuzz input and sends it over gRPC to one fresh --dev broker and as
// the README's JSON route to another, both given the same initial state
// (startDiffBroker). The outcomes are the same: the HTTP status is the
// README's for the gRPC code (201 for a created secret, 204 for an empty
// answer); an answer decodes, with the gateway's JSON options, to the gRPC
// answer but for what differs by nature (natural: key ids, timestamps,
// operation ids, page tokens); an error keeps its code, ErrorInfo reasons
// and BadRequest fields, and neither side's message holds the value.
//
// Where the sides may differ by a documented gateway rule, it is named:
//   - a path no route matches is the gateway's 404 or 405 ("A path no route
//     matches is a 404 ... A path a route takes with another method is a
//     405"): the name is then one gRPC refuses too (INVALID_ARGUMENT);
//   - a path another RPC's route matches (a secret named "public-key",
//     a segment ending ":sync"): the name is one gRPC refuses for its RPC
//     (secret names hold letters, digits and _), and the gateway's answer
//     is not compared;
//   - an Add/RemoveSelectedRepository given by repository_id over gRPC is
//     the id's digits in the path ("digits only are an id");
//   - a body that sets the field its path gives (pathInBody) is a 400
//     whatever gRPC answers ("So is a body that sets the field its path
//     gives (name, or parent for a sync), whatever its value");
//   - a request with a string that is not UTF-8, which no gRPC client
//     sends, is the gateway's 400 (or 404/405 when no route takes its
//     path): "a malformed request is INVALID_ARGUMENT (400";
//   - a path that does not decode to UTF-8 is the gateway's 400 before
//     any route (checkRequestURL), where gRPC refuses the name itself.
//
// Async batches and syncs (diffOp) are compared but for what depends on
// how far the operation ran (unsettled); followOperation then compares the
// two operations once done and one more operation RPC on them.
//
// Bodies the gateway refuses before gRPC sees them (bodyMode: 413 by
// Content-Length, 415, malformed JSON, an unknown field) have no gRPC
// twin: bodyRefusal gives the documented status and message, and
// checkRefusal the JSON error shape, without the value. A body on a route
// that takes none is ignored, and the call compared as any other.
func FuzzGatewayAgainstGRPC(f *testing.F) {
	type seed struct {
		rpc, scope                   uint8
		owner, repo, env, sec, value string
		vis, repos, tok              string
		page                         int32
		flags                        uint8
	}
	idx := func(rpc string) uint8 { return uint8(slices.Index(diffRPCs, rpc)) }
	diffN := uint8(len(diffRPCs))
	for _, s := range []seed{
		{idx("GetPublicKey"), 4, "octo-org", "hello-world", "prod%2Feu", "", "", "", "", "", 0, 0},
		{idx("ListSecrets"), 0, "octo-org", "", "", "", "", "", "", "", 1, 0},
		{idx("GetSecret"), 4, "octo-org", "hello-world", "prod%2Feu", "ENV_TOKEN", "", "", "", "", 0, 0},
		{idx("PutSecret"), 0, "octo-org", "", "", "NEW_ONE", "fuzz-value", "selected", "1296270,docs", "", 0, 0},
		{idx("DeleteSecret"), 2, "octo-org", "hello-world", "", "REPO_TOKEN", "", "", "", "", 0, 0},
		{idx("ListSelectedRepositories"), 0, "octo-org", "", "", "ORG_SELECTED", "", "", "", "", 10, 0},
		{idx("SetSelectedRepositories"), 0, "octo-org", "", "", "ORG_SELECTED", "", "", "1296271,hello-world", "", 0, 0},
		{idx("AddSelectedRepository"), 0, "octo-org", "", "", "ORG_SELECTED", "", "", "secret-sauce", "", 0, 0},
		{idx("RemoveSelectedRepository"), 0, "octo-org", "", "", "ORG_SELECTED", "", "", "", "", 1296269, diffRepoID},
		{idx("ListRepositoryOrganizationSecrets"), 2, "octo-org", "hello-world", "", "", "", "", "", "", 0, 0},
		{idx("BatchPutSecrets"), 4, "octo-org", "hello-world", "staging", "BATCHED", "fuzz-value", "", "", "", 0, diffTwo},
		{idx("BatchDeleteSecrets"), 3, "octo-org", "hello-world", "", "REPO_AGENT", "", "", "", "", 0, 0},
		{idx("DetectDrift"), 0, "octo-org", "", "", "", "", "", "", "", 0, 0},
		{idx("SyncSecrets"), 2, "octo-org", "hello-world", "OTHER", "SYNCED", "fuzz-value", "", "", "me", 0, diffDryRun | diffPrune | diffTwo},
		{idx("GetOperation"), 0, "", "", "", "", "", "", "", "", 0, diffOp},
		{idx("ListOperations"), 0, "", "", "", "", "", "", "", "", 5, diffNotDone},
		{idx("CancelOperation"), 0, "", "", "", "", "", "", "", "", 0, diffOp},
		{idx("WaitOperation"), 0, "", "", "", "no-such-op", "", "", "", "", 1, 0},
		// Escapes, case, ids and names, settings-only puts.
		{idx("GetSecret"), 4, "octo-org", "hello-world", "prod%252Feu", "env_token", "", "", "", "", 0, 0},
		{idx("GetSecret"), 4, "Octo-Org", "Hello-World", "STAGING", "staging_token", "", "", "", "", 0, 0},
		{idx("PutSecret"), 4, "octo-org", "hello-world", "caf%C3%A9", "X", "fuzz-value", "", "", "", 0, 0},
		{idx("PutSecret"), 0, "octo-org", "", "", "ORG_ALL", "", "private", "", "", 0, 0},
		{idx("PutSecret"), 0, "octo-org", "", "", "ORG_SELECTED", "bm90IGEgYm94", "selected", "hello-world,1296271", "123", 0, diffEncrypted | diffForce},
		{idx("PutSecret"), 2, "octo-org", "hello-world", "", "REPO_TOKEN", "fuzz-value", "all", "1296269", "", 0, 0},
		{idx("AddSelectedRepository"), 1, "octo-org", "", "", "AGENT_PRIVATE", "", "", "1296271", "", 0, 0},
		{idx("AddSelectedRepository"), 0, "octo-org", "", "", "ORG_SELECTED", "", "", "a/b c", "", 0, 0},
		{idx("RemoveSelectedRepository"), 0, "octo-org", "", "", "ORG_ALL", "", "", "docs", "", 0, 0},
		{idx("SetSelectedRepositories"), 0, "octo-org", "", "", "ORG_SELECTED", "", "", "", "", 0, 0},
		{idx("ListSecrets"), 4, "octo-org", "hello-world", "prod%2Feu", "", "", "", "", "garbage", -1, 0},
		{idx("ListOperations"), 0, "", "", "", "", "", "", "", "", 1000, 0},
		{idx("SyncSecrets"), 0, "octo-org", "", "NEXT", "ORG_ALL", "fuzz-value", "selected", "1296269", "", 0, diffPrune | diffTwo},
		{idx("BatchDeleteSecrets"), 0, "octo-org", "", "", "ORG_ALL", "", "", "", "", 0, diffTwo},
		{idx("WaitOperation"), 0, "", "", "", "", "", "", "", "", 3, diffOp},
		{idx("DetectDrift"), 5, "repos/octo-org/hello-world/environments/prod%2Feu", "", "", "", "", "", "", "", 0, 0},
		// Dot segments, empty segments, an empty value set.
		{idx("AddSelectedRepository"), 0, "octo-org", "", "", "ORG_SELECTED", "", "", "..", "", 0, 0},
		{idx("RemoveSelectedRepository"), 0, "octo-org", "", "", "ORG_SELECTED", "", "", ".", "", 0, 0},
		{idx("GetSecret"), 4, "octo-org", "hello-world", "..", "X", "", "", "", "", 0, 0},
		{idx("GetSecret"), 4, "octo-org", "hello-world", "%2E%2E", "X", "", "", "", "", 0, 0},
		{idx("GetSecret"), 2, "octo-org", "..", "", "X", "", "", "", "", 0, 0},
		{idx("ListSecrets"), 4, "octo-org", "hello-world", "", "", "", "", "", "", 0, 0},
		{idx("PutSecret"), 2, "octo-org", "hello-world", "", "REPO_TOKEN", "", "", "", "", 0, diffNotDone},
		{idx("PutSecret"), 2, "octo-org", "hello-world", "", "REPO_TOKEN", "", "", "", "", 0, diffNotDone | diffEncrypted},
		{idx("GetOperation"), 0, "", "", "", "..", "", "", "", "", 0, 0},
		{idx("CancelOperation"), 0, "", "", "", "a:b", "", "", "", "", 0, 0},
		// The body sets its path's field.
		{idx("PutSecret"), 2 | pathInBody, "octo-org", "hello-world", "", "REPO_TOKEN", "fuzz-value", "", "", "", 0, 0},
		{idx("SyncSecrets"), 2 | pathInBody, "octo-org", "hello-world", "", "X", "fuzz-value", "", "", "", 0, diffDryRun},
		{idx("WaitOperation"), pathInBody, "", "", "", "", "", "", "", "", 0, diffOp},
		// Repository ids as JSON numbers.
		{idx("SetSelectedRepositories"), idsAsNumbers, "octo-org", "", "", "ORG_SELECTED", "", "", "1296271,1296270", "", 0, 0},
		{idx("PutSecret"), idsAsNumbers, "octo-org", "", "", "NUMBERED", "fuzz-value", "selected", "1296271,-1,docs", "", 0, 0},
		{idx("BatchPutSecrets"), idsAsNumbers, "octo-org", "", "", "NUMBERED", "fuzz-value", "selected", "1296271,9223372036854775807", "", 0, diffTwo},
		// Async batches and syncs, then an operation RPC on the operation
		// (asyncFollowUps by the page size).
		{idx("BatchPutSecrets"), 2, "octo-org", "hello-world", "", "ASYNC_ONE", "fuzz-value", "", "", "", 0, diffOp},
		{idx("BatchPutSecrets"), 0, "octo-org", "", "NEXT", "ASYNC_TWO", "fuzz-value", "all", "", "", 1, diffOp | diffTwo},
		{idx("BatchPutSecrets"), 0, "octo-org", "", "", "ORG_ALL", "", "", "", "", 2, diffOp | diffNotDone},
		{idx("SyncSecrets"), 2, "octo-org", "hello-world", "OTHER", "SYNCED", "fuzz-value", "", "", "", 3, diffOp | diffPrune | diffTwo},
		{idx("SyncSecrets"), 0, "octo-org", "", "", "ORG_ALL", "fuzz-value", "all", "", "", 0, diffOp | diffDryRun},
		// Bodies the gateway refuses before gRPC sees them, and bodies on
		// routes that take none (ignored).
		{idx("PutSecret") + uint8(bodyTooLarge)*diffN, 2, "octo-org", "hello-world", "", "BIG", "fuzz-value", "", "", "", 0, 0},
		{idx("GetSecret") + uint8(bodyTooLarge)*diffN, 2, "octo-org", "hello-world", "", "REPO_TOKEN", "fuzz-value", "", "", "", 0, 0},
		{idx("PutSecret") + uint8(bodyTextPlain)*diffN, 2, "octo-org", "hello-world", "", "PLAIN", "fuzz-value", "", "", "", 0, 0},
		{idx("BatchPutSecrets") + uint8(bodyForm)*diffN, 2, "octo-org", "hello-world", "", "FORM", "fuzz-value", "", "", "", 0, 0},
		{idx("CancelOperation") + uint8(bodyNoType)*diffN, 0, "", "", "", "", "", "", "", "", 0, diffOp},
		{idx("SyncSecrets") + uint8(bodyTwoTypes)*diffN, 2, "octo-org", "hello-world", "", "TWO", "fuzz-value", "", "", "", 0, diffDryRun},
		{idx("AddSelectedRepository") + uint8(bodyJSONLike)*diffN, 0, "octo-org", "", "", "ORG_SELECTED", "fuzz-value", "", "docs", "", 0, 0},
		{idx("DeleteSecret") + uint8(bodyForm)*diffN, 2, "octo-org", "hello-world", "", "REPO_TOKEN", "fuzz-value", "", "", "", 0, 0},
		{idx("PutSecret") + uint8(bodyTruncated)*diffN, 2, "octo-org", "hello-world", "", "CUT", "fuzz-value", "", "", "", 0, 0},
		{idx("WaitOperation") + uint8(bodyTrailing)*diffN, 0, "", "", "", "", "", "", "", "", 1, diffOp},
		{idx("SetSelectedRepositories") + uint8(bodyUnknownField)*diffN, 0, "octo-org", "", "", "ORG_SELECTED", "fuzz-value", "", "1296271", "", 0, 0},
		{idx("CancelOperation") + uint8(bodyUnknownField)*diffN, 0, "", "", "", "", "fuzz-value", "", "", "", 0, diffOp},
		{idx("ListSecrets") + uint8(bodyUnknownField)*diffN, 0, "octo-org", "", "", "", "fuzz-value", "", "", "", 2, 0},
	} {
		f.Add(s.rpc, s.scope, s.owner, s.repo, s.env, s.sec, s.value, s.vis, s.repos, s.tok, s.page, s.flags)
	}
	probe, err := newRouteProbe(serviceRoutes())
	if err != nil {
		f.Fatal(err)
	}
	bodyRoutes := map[string]bool{}
	for _, rt := range serviceBodyRoutes() {
		bodyRoutes[routeKey(rt.method, rt.path)] = true
	}
	f.Fuzz(func(t *testing.T, rpc, scope uint8, owner, repo, env, sec, value, vis, repos, tok string, page int32, flags uint8) {
		in := diffInput{rpc: rpc, scope: scope, owner: owner, repo: repo, env: env, secret: sec, value: value,
			visibility: vis, repos: repos, tok: tok, pageSize: page, flags: flags}
		gb, jb := startDiffBroker(t), startDiffBroker(t)
		dg, dj := in.build(gb.op), in.build(jb.op)
		mode := in.mode()
		ctx := t.Context()
		if _, err := proto.Marshal(dg.msg); err != nil {
			// Not valid UTF-8: no gRPC client sends it (proto3 strings
			// are UTF-8), and the gateway refuses it with a 400 ("a
			// malformed request is INVALID_ARGUMENT (400"; "value: is not
			// valid UTF-8"; a path or query that does not decode to
			// UTF-8), or a 404 when no route takes the path, or first
			// refuses its body (bodyRefusal).
			gw := sendJSON(t, jb, dj, mode, value)
			desc := fmt.Sprintf("%s %s (body %d): gRPC cannot send it (%v), the gateway answered %d %s", dj.method, dj.path, mode, err, gw.status, gw.body)
			if want, msg, ok := bodyRefusal(t, probe, bodyRoutes, dj, mode); ok {
				checkRefusal(t, gw, want, msg, value, desc)
				return
			}
			if gw.status != http.StatusBadRequest && gw.status != http.StatusNotFound && gw.status != http.StatusMethodNotAllowed {
				t.Fatal(desc)
			}
			return
		}
		gotMsg, gotSt := sendGRPC(ctx, gb, dg)
		gw := sendJSON(t, jb, dj, mode, value)
		desc := fmt.Sprintf("%s: gRPC %v; JSON %s /v1/%s?%s (body %d) = %d %s", dg.rpc, gotSt.Err(), dj.method, dj.path, dj.query.Encode(), mode, gw.status, gw.body)

		// No value in either message.
		if len(value) >= 6 && !strings.Contains(dg.path, value) && !strings.Contains(in.repos+in.tok+in.visibility+in.secret+in.env, value) {
			if strings.Contains(gotSt.Message(), value) || (gw.status >= 400 && bytes.Contains(gw.body, []byte(value))) {
				t.Fatalf("an error holds the value: %s", desc)
			}
		}

		routed, matched := routedTo(t, probe, dj)
		if routed == refusedURL {
			// A path that does not decode to UTF-8 is the gateway's 400
			// before any route ("a malformed request is INVALID_ARGUMENT
			// (400"); gRPC refuses the name too, for its own reason.
			if gotSt.Code() != codes.InvalidArgument || gw.status != http.StatusBadRequest {
				t.Fatalf("the gateway refuses the URL (400), gRPC: %s", desc)
			}
			return
		}
		if want, msg, ok := bodyRefusal(t, probe, bodyRoutes, dj, mode); ok {
			// Refused before gRPC sees it: no gRPC twin.
			checkRefusal(t, gw, want, msg, value, desc)
			return
		}
		if routed != dj.rpc {
			// Documented gateway rules: no route (404/405), or another
			// RPC's route. gRPC must refuse the name.
			if gotSt.Code() != codes.InvalidArgument && gotSt.Code() != codes.NotFound {
				t.Fatalf("the gateway routes this to %q (matched %v), gRPC answered it: %s", routed, matched, desc)
			}
			if !matched && gw.status != http.StatusNotFound && gw.status != http.StatusMethodNotAllowed {
				t.Fatalf("no route, want 404 or 405: %s", desc)
			}
			return
		}

		if dj.pathInBody {
			// "So is a body that sets the field its path gives (name, or
			// parent for a sync), whatever its value": a 400 whatever
			// gRPC answers.
			var st spb.Status
			if gw.status != http.StatusBadRequest || protojson.Unmarshal(gw.body, &st) != nil || codes.Code(st.GetCode()) != codes.InvalidArgument {
				t.Fatalf("the body sets its path's field, want 400: %s", desc)
			}
			return
		}
		// From here on the gateway called gRPC (a body on a route that
		// takes none is ignored: gateway.go's gateway, DESIGN.md "any
		// other route ... leaves a body unread").
		jsonMsg := compareAnswers(t, dg, gotMsg, gotSt, gw, desc)
		if jsonMsg == nil || in.flags&diffOp == 0 || (dg.rpc != "BatchPutSecrets" && dg.rpc != "SyncSecrets") {
			return
		}
		followOperation(t, in, gb, jb, gotMsg, jsonMsg, value)
	})
}

// compareAnswers checks the gateway's answer gw against gRPC's (gotMsg,
// gotSt) to the same call d: the README's status, the error's shape, or
// the same answer but for what differs by nature. It returns the JSON
// answer when both succeeded (as the gateway gave it), else nil.
func compareAnswers(t *testing.T, d diffRequest, gotMsg proto.Message, gotSt *status.Status, gw gwOutcome, desc string) proto.Message {
	t.Helper()
	want := readmeStatus(gotSt)
	if gotSt.Code() == codes.OK {
		switch m := gotMsg.(type) {
		case *emptypb.Empty:
			want = http.StatusNoContent
		case *secretbrokerv1.PutSecretResponse:
			if m.GetCreated() {
				want = http.StatusCreated
			}
		}
	}
	if gw.status != want {
		t.Fatalf("HTTP %d, want %d: %s", gw.status, want, desc)
	}
	if gotSt.Code() != codes.OK {
		var st spb.Status
		if err := protojson.Unmarshal(gw.body, &st); err != nil {
			t.Fatalf("error body does not decode: %v: %s", err, desc)
		}
		if g, j := errorShape(gotSt.Proto()), errorShape(&st); g != j {
			t.Fatalf("error gRPC %s, JSON %s: %s", g, j, desc)
		}
		return nil
	}
	jsonMsg := d.out.ProtoReflect().New().Interface()
	if want != http.StatusNoContent {
		if err := newJSONMarshaler().Unmarshal(gw.body, jsonMsg); err != nil {
			t.Fatalf("answer does not decode: %v: %s", err, desc)
		}
	} else if len(gw.body) != 0 {
		t.Fatalf("204 with a body: %s", desc)
	}
	g, j := proto.Clone(gotMsg), proto.Clone(jsonMsg)
	natural(g)
	natural(j)
	unsettled(g)
	unsettled(j)
	if !proto.Equal(g, j) {
		t.Fatalf("answers differ:\ngRPC %v\nJSON %v\n%s", prototext.Format(g), prototext.Format(j), desc)
	}
	return jsonMsg
}

// unsettled clears, in an async batch's or sync's answer, what depends on
// how far its operation ran when the answer was sent: all but the kind
// and the total of its items.
func unsettled(m proto.Message) {
	var op *secretbrokerv1.Operation
	switch r := m.(type) {
	case *secretbrokerv1.BatchPutSecretsResponse:
		op = r.GetOperation()
	case *secretbrokerv1.SyncSecretsResponse:
		op = r.GetOperation()
	}
	if op == nil {
		return
	}
	md := op.GetMetadata()
	op.Reset()
	if md != nil {
		op.Metadata = &secretbrokerv1.OperationMetadata{Kind: md.GetKind(), Total: md.GetTotal()}
	}
}

// asyncFollowUps are the operation RPCs followOperation sends, by the
// input's page size.
var asyncFollowUps = []string{"GetOperation", "WaitOperation", "ListOperations", "CancelOperation"}

// followOperation waits for the operation each side's async call
// started (gRPC's over gRPC, the gateway's over JSON) and compares the
// two once done: done, error, metadata counts, per-item results (ids and
// times differ by nature). Then it sends one more operation RPC on it,
// by in's page size, and compares the answers as any call's.
func followOperation(t *testing.T, in diffInput, gb, jb diffBroker, gotMsg, jsonMsg proto.Message, value string) {
	t.Helper()
	opOf := func(m proto.Message) string {
		switch r := m.(type) {
		case *secretbrokerv1.BatchPutSecretsResponse:
			return r.GetOperation().GetName()
		case *secretbrokerv1.SyncSecretsResponse:
			return r.GetOperation().GetName()
		}
		return ""
	}
	gop, jop := opOf(gotMsg), opOf(jsonMsg)
	if gop == "" || jop == "" {
		if gop != jop {
			t.Fatalf("an operation on one side only: gRPC %q, JSON %q", gop, jop)
		}
		return // a dry run: no operation
	}
	ctx := t.Context()
	svc := secretbrokerv1.NewSecretServiceClient(gb.b.conn)
	var gDone *secretbrokerv1.Operation
	for range 30 {
		o, err := svc.WaitOperation(ctx, &secretbrokerv1.WaitOperationRequest{Name: gop, Timeout: durationpb.New(10 * time.Second)})
		if err != nil {
			t.Fatalf("gRPC WaitOperation(%s): %v", gop, err)
		}
		if gDone = o; o.GetDone() {
			break
		}
	}
	var jDone *secretbrokerv1.Operation
	wait := diffRequest{rpc: "WaitOperation", method: http.MethodPost, path: jop + ":wait",
		body: &secretbrokerv1.WaitOperationRequest{Timeout: durationpb.New(10 * time.Second)}}
	for range 30 {
		gw := sendJSON(t, jb, wait, bodyAsIs, "")
		jDone = &secretbrokerv1.Operation{}
		if gw.status != http.StatusOK {
			t.Fatalf("POST /v1/%s = %d %s", wait.path, gw.status, gw.body)
		}
		if err := newJSONMarshaler().Unmarshal(gw.body, jDone); err != nil {
			t.Fatalf("POST /v1/%s: %v: %s", wait.path, err, gw.body)
		}
		if jDone.GetDone() {
			break
		}
	}
	if !gDone.GetDone() || !jDone.GetDone() {
		t.Fatalf("not done after 30 waits: gRPC %v, JSON %v", gDone, jDone)
	}
	g, j := proto.Clone(gDone), proto.Clone(jDone)
	natural(g)
	natural(j)
	if !proto.Equal(g, j) {
		t.Fatalf("operations differ once done:\ngRPC %v\nJSON %v", prototext.Format(g), prototext.Format(j))
	}
	if len(value) >= 6 && (strings.Contains(prototext.Format(gDone), value) || strings.Contains(prototext.Format(jDone), value)) {
		t.Fatalf("an operation holds the value: gRPC %v, JSON %v", gDone, jDone)
	}

	next := diffInput{rpc: uint8(slices.Index(diffRPCs, asyncFollowUps[int(uint32(in.pageSize)%uint32(len(asyncFollowUps)))])), flags: diffOp}
	dg, dj := next.build(gop), next.build(jop)
	gotMsg2, gotSt := sendGRPC(ctx, gb, dg)
	gw := sendJSON(t, jb, dj, bodyAsIs, "")
	compareAnswers(t, dg, gotMsg2, gotSt, gw,
		fmt.Sprintf("after the operation: %s: gRPC %v; JSON %s /v1/%s?%s = %d %s", dg.rpc, gotSt.Err(), dj.method, dj.path, dj.query.Encode(), gw.status, gw.body))
}

// bodyRefusal is the gateway's answer, by the README and DESIGN.md, to d
// with its body sent in mode m, when the gateway refuses the body before
// gRPC sees the call: the HTTP status and the message (exactly for 413
// and 415, a part of it for 400). ok is false when the call goes on as
// any other: mode bodyAsIs; a URL the gateway refuses first (400) or no
// route (404, 405); a route that takes no body, which ignores it
// (gateway.go's gateway: "answered as if it had no body").
func bodyRefusal(t *testing.T, probe *routeProbe, bodyRoutes map[string]bool, d diffRequest, m bodyMode) (int, string, bool) {
	if m == bodyAsIs {
		return 0, "", false
	}
	u, err := url.ParseRequestURI("/v1/" + d.path)
	if err != nil {
		t.Fatalf("%q is no request URI: %v", d.path, err)
	}
	if checkRequestURL(u) != nil {
		return 0, "", false
	}
	// README: "A request body must be sent as Content-Type:
	// application/json ...; any other type is 415"; DESIGN.md: before
	// the mux, whatever the route.
	if m.wrongType() && (d.method == http.MethodPost || d.method == http.MethodPut) {
		return http.StatusUnsupportedMediaType, "the request body must be JSON, sent with Content-Type: application/json", true
	}
	req := (&http.Request{Method: d.method, URL: u, Header: http.Header{}}).WithContext(t.Context())
	res := probe.match(req, d.method)
	if !res.matched || !bodyRoutes[d.method+" "+res.pat.String()] {
		return 0, "", false
	}
	switch m {
	case bodyTooLarge:
		// README: "A larger request is INVALID_ARGUMENT (HTTP 413)
		// naming the limit".
		return http.StatusRequestEntityTooLarge, "request body is larger than the 16 MiB limit", true
	case bodyTruncated, bodyTrailing:
		// README: "A body that does not decode is a 400".
		return http.StatusBadRequest, "request body", true
	case bodyUnknownField:
		return http.StatusBadRequest, `unknown field "` + unknownField + `"`, true
	}
	// A right Content-Type but no right method: a GET or DELETE, whose
	// routes take no body.
	return 0, "", false
}

// checkRefusal checks the gateway's refusal gw of a body: the status,
// the JSON error shape (code INVALID_ARGUMENT, message, details), and
// that nothing of the value is in it.
func checkRefusal(t *testing.T, gw gwOutcome, want int, msg, value, desc string) {
	t.Helper()
	if gw.status != want {
		t.Fatalf("HTTP %d, want %d: %s", gw.status, want, desc)
	}
	if ct := gw.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q, want application/json: %s", ct, desc)
	}
	var shape struct {
		Code    *int              `json:"code"`
		Message *string           `json:"message"`
		Details []json.RawMessage `json:"details"`
	}
	dec := json.NewDecoder(bytes.NewReader(gw.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&shape); err != nil || shape.Code == nil || shape.Message == nil || shape.Details == nil {
		t.Fatalf("not the JSON error shape (%v): %s", err, desc)
	}
	if codes.Code(*shape.Code) != codes.InvalidArgument {
		t.Fatalf("code %d, want INVALID_ARGUMENT: %s", *shape.Code, desc)
	}
	exact := want != http.StatusBadRequest
	if exact && *shape.Message != msg || !exact && !strings.Contains(*shape.Message, msg) {
		t.Fatalf("message %q, want %q: %s", *shape.Message, msg, desc)
	}
	if len(value) >= 6 && bytes.Contains(gw.body, []byte(value)) && !strings.Contains(msg, value) {
		t.Fatalf("the refusal holds the value: %s", desc)
	}
}
