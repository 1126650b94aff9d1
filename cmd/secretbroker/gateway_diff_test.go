package main

import (
	"bytes"
	"context"
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
	diffOp     // operation RPCs: the broker's own operation, not the fuzzed id
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
		d.msg, d.out = &secretbrokerv1.BatchPutSecretsRequest{Requests: items}, &secretbrokerv1.BatchPutSecretsResponse{}
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
			Owner: in.tok, Visibility: in.visibility, SelectedRepositoryIds: ids}
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
}

// sendGRPC sends d over gRPC.
func sendGRPC(ctx context.Context, b diffBroker, d diffRequest) (proto.Message, *status.Status) {
	out := d.out.ProtoReflect().New().Interface()
	err := b.b.conn.Invoke(ctx, "/secretbroker.v1.SecretService/"+d.rpc, d.msg, out)
	return out, status.Convert(err)
}

// sendJSON sends d as the README's JSON route to b's gateway. The
// operation's name in the path is b's own (the gRPC side sends its own
// too: see FuzzGatewayAgainstGRPC).
func sendJSON(t *testing.T, b diffBroker, d diffRequest) gwOutcome {
	var body io.Reader
	if d.body != nil {
		opts := protojson.MarshalOptions{UseProtoNames: true}
		if d.rpc == "SetSelectedRepositories" {
			// An empty selection is sent as [] (clear), as the README's
			// route takes it.
			opts.EmitUnpopulated = true
		}
		msg := proto.Clone(d.body)
		invalid := placeInvalid(msg.ProtoReflect())
		raw, err := opts.Marshal(msg)
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
		body = bytes.NewReader(raw)
	}
	target := "/v1/" + d.path
	req, err := http.NewRequestWithContext(t.Context(), d.method, "http://"+b.b.httpAddr, body)
	if err != nil {
		t.Fatal(err)
	}
	// The request line carries the path exactly as written.
	req.URL.Opaque = target
	req.URL.RawQuery = d.query.Encode()
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := b.b.http.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", d.method, target, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return gwOutcome{status: resp.StatusCode, body: raw}
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
// Not sent: bodies over 16 MiB (413) and bodies that are not JSON (415),
// which the gateway tests cover; async batches and syncs, whose answers
// depend on when the operation runs.
func FuzzGatewayAgainstGRPC(f *testing.F) {
	type seed struct {
		rpc, scope                   uint8
		owner, repo, env, sec, value string
		vis, repos, tok              string
		page                         int32
		flags                        uint8
	}
	idx := func(rpc string) uint8 { return uint8(slices.Index(diffRPCs, rpc)) }
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
	} {
		f.Add(s.rpc, s.scope, s.owner, s.repo, s.env, s.sec, s.value, s.vis, s.repos, s.tok, s.page, s.flags)
	}
	probe, err := newRouteProbe(serviceRoutes())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, rpc, scope uint8, owner, repo, env, sec, value, vis, repos, tok string, page int32, flags uint8) {
		in := diffInput{rpc: rpc, scope: scope, owner: owner, repo: repo, env: env, secret: sec, value: value,
			visibility: vis, repos: repos, tok: tok, pageSize: page, flags: flags}
		gb, jb := startDiffBroker(t), startDiffBroker(t)
		dg, dj := in.build(gb.op), in.build(jb.op)
		ctx := t.Context()
		if _, err := proto.Marshal(dg.msg); err != nil {
			// Not valid UTF-8: no gRPC client sends it (proto3 strings
			// are UTF-8), and the gateway refuses it with a 400 ("a
			// malformed request is INVALID_ARGUMENT (400"; "value: is not
			// valid UTF-8"; a path or query that does not decode to
			// UTF-8), or a 404 when no route takes the path.
			gw := sendJSON(t, jb, dj)
			if gw.status != http.StatusBadRequest && gw.status != http.StatusNotFound && gw.status != http.StatusMethodNotAllowed {
				t.Fatalf("%s %s: gRPC cannot send it (%v), the gateway answered %d %s", dj.method, dj.path, err, gw.status, gw.body)
			}
			return
		}
		gotMsg, gotSt := sendGRPC(ctx, gb, dg)
		gw := sendJSON(t, jb, dj)
		desc := fmt.Sprintf("%s: gRPC %v; JSON %s /v1/%s?%s = %d %s", dg.rpc, gotSt.Err(), dj.method, dj.path, dj.query.Encode(), gw.status, gw.body)

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
			return
		}
		jsonMsg := dj.out.ProtoReflect().New().Interface()
		if want != http.StatusNoContent {
			if err := newJSONMarshaler().Unmarshal(gw.body, jsonMsg); err != nil {
				t.Fatalf("answer does not decode: %v: %s", err, desc)
			}
		} else if len(gw.body) != 0 {
			t.Fatalf("204 with a body: %s", desc)
		}
		natural(gotMsg)
		natural(jsonMsg)
		if !proto.Equal(gotMsg, jsonMsg) {
			t.Fatalf("answers differ:\ngRPC %v\nJSON %v\n%s", prototext.Format(gotMsg), prototext.Format(jsonMsg), desc)
		}
	})
}
