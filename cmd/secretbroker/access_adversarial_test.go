package main

import (
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
)

const strangerToken = "stranger-token-PLANTED-0b7e"

// adversarialBroker is a secured broker with three callers: the deployer
// (the staging environment, read on PAY_*), the admin (everything) and a
// stranger the policy names nowhere.
func adversarialBroker(t *testing.T) *broker {
	t.Helper()
	callers := writeFile(t, "callers.yaml", "callers:\n  - name: deployer\n    token_sha256: "+sha256Hex(deployerToken)+
		"\n  - name: admin\n    token_sha256: "+sha256Hex(adminToken)+
		"\n  - name: stranger\n    token_sha256: "+sha256Hex(strangerToken)+"\n")
	return startBroker(t, securedConfig(t, "--callers-file="+callers))
}

// TestAdversarialSpellings: a name spelled to look like, or decode to,
// one the deployer may not touch never lets it touch one: each is denied
// or refused as malformed, over gRPC and JSON alike, and the prod secret
// is left as the admin wrote it. A spelling that is the staging
// environment itself (a %-escaped letter, a lower-case secret name) is
// the staging secret, in its canonical name.
func TestAdversarialSpellings(t *testing.T) {
	b := adversarialBroker(t)
	svc := secretbrokerv1.NewSecretServiceClient(b.conn)
	dep := withBearer(t.Context(), deployerToken)
	admin := withBearer(t.Context(), adminToken)
	value := &secretbrokerv1.PutSecretRequest_Value{Value: accessValue}
	put, err := svc.PutSecret(admin, &secretbrokerv1.PutSecretRequest{Name: prodSecret, Payload: value})
	if err != nil {
		t.Fatal(err)
	}
	before, err := svc.GetSecret(admin, &secretbrokerv1.GetSecretRequest{Name: put.GetName()})
	if err != nil {
		t.Fatal(err)
	}

	const env = "repos/octo-org/hello-world/environments/"
	denied := []string{
		env + "prod%2feu/secrets/DB_PASSWORD",   // lower-case escape of the same name
		env + "Prod%2FEU/secrets/DB_PASSWORD",   // GitHub matches environments case-insensitively
		env + "prod%252Feu/secrets/DB_PASSWORD", // escaped twice
		"repos/Octo-Org/hello-world/environments/prod%2Feu/secrets/DB_PASSWORD",
		"repos/octo-org/HELLO-WORLD/environments/prod%2Feu/secrets/DB_PASSWORD",
		env + "Staging/secrets/DB_PASSWORD",              // a case variant of the allowed one: not matched
		env + "staging%20/secrets/DB_PASSWORD",           // trailing space
		env + "staging%2F/secrets/DB_PASSWORD",           // trailing slash
		env + "\u0455taging/secrets/DB_PASSWORD",         // Cyrillic dze for "s"
		env + "staging%E2%80%8B/secrets/DB_PASSWORD",     // zero-width space
		env + "staging/../prod%2Feu/secrets/DB_PASSWORD", // dot segments
		env + "staging%2F..%2Fprod%252Feu/secrets/DB_PASSWORD",
		env + "staging/secrets/DB_PASSWORD/../../../prod%2Feu/secrets/DB_PASSWORD",
		env + "staging/secrets/DB_PASSWORD%2F..",
		env + "staging /secrets/DB_PASSWORD",
		"repos/octo-org/hello-world/actions/secrets/PAY_A", // read only
		"repos/octo-org/hello-world/actions/secrets/pay_a",
		"repos/octo-org/hello-world./environments/staging/secrets/DB_PASSWORD",
		"repos/octo-org/hello-world.git/environments/staging/secrets/DB_PASSWORD",
		"repos/octo-org/hello-world%2Fx/environments/staging/secrets/DB_PASSWORD",
		"repos/octo-org/hello-world/environments/staging/secrets/*",
	}
	for _, name := range denied {
		_, err := svc.PutSecret(dep, &secretbrokerv1.PutSecretRequest{Name: name, Payload: value})
		if c := status.Code(err); c != codes.PermissionDenied && c != codes.InvalidArgument {
			t.Errorf("gRPC put %q: %v, want PermissionDenied or InvalidArgument", name, err)
		}
		_, err = svc.DeleteSecret(dep, &secretbrokerv1.DeleteSecretRequest{Name: name})
		if c := status.Code(err); c != codes.PermissionDenied && c != codes.InvalidArgument {
			t.Errorf("gRPC delete %q: %v, want PermissionDenied or InvalidArgument", name, err)
		}
		res, err := svc.BatchDeleteSecrets(dep, &secretbrokerv1.BatchDeleteSecretsRequest{Names: []string{name}})
		if err == nil {
			if c := res.GetResults()[0].GetCode().String(); c != "PERMISSION_DENIED" && c != "INVALID_ARGUMENT" {
				t.Errorf("gRPC batch delete %q: %s", name, c)
			}
		} else if status.Code(err) != codes.InvalidArgument {
			t.Errorf("gRPC batch delete %q: %v", name, err)
		}
	}
	v1 := "http://" + b.httpAddr + "/v1/"
	for _, path := range []string{
		env + "prod%252Feu/secrets/DB_PASSWORD",
		env + "prod%25252Feu/secrets/DB_PASSWORD",
		env + "Prod%252FEU/secrets/DB_PASSWORD",
		env + "prod%2Feu/secrets/DB_PASSWORD",
		env + "staging%2F..%2Fprod%252Feu/secrets/DB_PASSWORD",
		env + "staging/secrets/..%2F..%2Fprod%252Feu%2Fsecrets%2FDB_PASSWORD",
		"repos/Octo-Org/hello-world/environments/prod%252Feu/secrets/DB_PASSWORD",
		"repos/octo-org/hello-world/actions/secrets/PAY_A",
	} {
		for _, method := range []string{http.MethodPut, http.MethodDelete} {
			body := ""
			if method == http.MethodPut {
				body = `{"value":"` + accessValue + `"}`
			}
			if code, got := httpDo(t, b.http, method, v1+path, deployerToken, body); code != http.StatusForbidden && code != http.StatusBadRequest && code != http.StatusNotFound {
				t.Errorf("JSON %s %s: %d %s, want 403, 400 or 404", method, path, code, got)
			}
		}
	}
	// A body naming another secret than the path does not move the write.
	code, got := httpDo(t, b.http, http.MethodPut, v1+stagingSecret, deployerToken,
		`{"name":"`+prodSecret+`","value":"`+accessValue+`"}`)
	if code == http.StatusOK && !strings.Contains(got, stagingSecret) {
		t.Errorf("JSON put with another name in the body: %d %s", code, got)
	}

	after, err := svc.GetSecret(admin, &secretbrokerv1.GetSecretRequest{Name: put.GetName()})
	if err != nil {
		t.Fatalf("the prod secret is gone: %v", err)
	}
	if !after.GetUpdatedAt().AsTime().Equal(before.GetUpdatedAt().AsTime()) {
		t.Fatalf("the prod secret was written: updated_at %v, was %v", after.GetUpdatedAt().AsTime(), before.GetUpdatedAt().AsTime())
	}

	// The staging environment's own spellings are the staging secret.
	for _, name := range []string{env + "%73taging/secrets/db_password", env + "staging/secrets/Db_Password"} {
		resp, err := svc.PutSecret(dep, &secretbrokerv1.PutSecretRequest{Name: name, Payload: value})
		if err != nil || resp.GetName() != stagingSecret {
			t.Errorf("put %q: %v %q, want %q", name, err, resp.GetName(), stagingSecret)
		}
	}
}

// TestAdversarialForgedCallers: the gateway's caller metadata sent by
// anyone but the gateway, over gRPC or as Grpc-Metadata-* headers over
// JSON, names no caller, and a second credential beside one's own never
// makes a caller someone else.
func TestAdversarialForgedCallers(t *testing.T) {
	b := adversarialBroker(t)
	svc := secretbrokerv1.NewSecretServiceClient(b.conn)
	value := &secretbrokerv1.PutSecretRequest_Value{Value: accessValue}
	forged := []string{
		mdX509, "x509:spiffe://example.org/ns/ci/sa/deployer",
		mdGateway, "0123456789abcdef0123456789abcdef",
		mdCaller, "127.0.0.1",
	}
	grpcCases := []struct {
		name string
		md   []string
		want []codes.Code
	}{
		{"forged gateway metadata alone", forged, []codes.Code{codes.Unauthenticated}},
		{"forged x509 beside the deployer's token", append([]string{"authorization", "Bearer " + deployerToken}, forged...),
			[]codes.Code{codes.PermissionDenied}},
		{"a second authorization value", []string{"authorization", "Bearer " + deployerToken, "authorization", "Bearer " + adminToken},
			[]codes.Code{codes.Unauthenticated}},
		{"the admin's token hash as the token", []string{"authorization", "Bearer " + sha256Hex(adminToken)}, []codes.Code{codes.Unauthenticated}},
		{"an unsigned JWT", []string{"authorization", "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9."}, []codes.Code{codes.Unauthenticated}},
		{"basic scheme", []string{"authorization", "Basic " + adminToken}, []codes.Code{codes.Unauthenticated}},
		{"token with trailing junk", []string{"authorization", "Bearer " + adminToken + "x"}, []codes.Code{codes.Unauthenticated}},
	}
	for _, tt := range grpcCases {
		ctx := metadata.AppendToOutgoingContext(t.Context(), tt.md...)
		_, err := svc.PutSecret(ctx, &secretbrokerv1.PutSecretRequest{Name: prodSecret, Payload: value})
		ok := false
		for _, c := range tt.want {
			ok = ok || status.Code(err) == c
		}
		if !ok {
			t.Errorf("gRPC %s: %v, want %v", tt.name, err, tt.want)
		}
	}

	v1 := "http://" + b.httpAddr + "/v1/"
	httpCases := []struct {
		name    string
		headers [][2]string
		want    int
	}{
		{"forged gateway headers alone", [][2]string{
			{"Grpc-Metadata-X-Secretbroker-X509", "x509:spiffe://example.org/ns/ci/sa/deployer"},
			{"Grpc-Metadata-X-Secretbroker-Gateway", "0123456789abcdef0123456789abcdef"},
			{"X-Secretbroker-X509", "x509:spiffe://example.org/ns/ci/sa/deployer"},
		}, http.StatusUnauthorized},
		{"Grpc-Metadata-Authorization beside the deployer's", [][2]string{
			{"Authorization", "Bearer " + deployerToken},
			{"Grpc-Metadata-Authorization", "Bearer " + adminToken},
		}, http.StatusForbidden},
		{"Grpc-Metadata-Authorization alone", [][2]string{
			{"Grpc-Metadata-Authorization", "Bearer " + adminToken},
		}, http.StatusUnauthorized},
		{"two Authorization headers", [][2]string{
			{"Authorization", "Bearer " + deployerToken},
			{"Authorization", "Bearer " + adminToken},
		}, http.StatusUnauthorized},
	}
	for _, tt := range httpCases {
		req, err := http.NewRequest(http.MethodPut, v1+prodSecret, strings.NewReader(`{"value":"`+accessValue+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		for _, h := range tt.headers {
			req.Header.Add(h[0], h[1])
		}
		resp, err := b.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("JSON %s: %d, want %d", tt.name, resp.StatusCode, tt.want)
		}
	}
}

// TestAdversarialOperations: an operation the deployer started is not
// the stranger's to read, wait for, cancel or list, and a caller that may
// read its items but not write them may not cancel it.
func TestAdversarialOperations(t *testing.T) {
	b := adversarialBroker(t)
	svc := secretbrokerv1.NewSecretServiceClient(b.conn)
	dep := withBearer(t.Context(), deployerToken)
	stranger := withBearer(t.Context(), strangerToken)
	value := &secretbrokerv1.PutSecretRequest_Value{Value: accessValue}
	resp, err := svc.BatchPutSecrets(dep, &secretbrokerv1.BatchPutSecretsRequest{Async: true, Requests: []*secretbrokerv1.PutSecretRequest{
		{Name: stagingSecret, Payload: value}, {Name: prodSecret, Payload: value},
	}})
	if err != nil {
		t.Fatal(err)
	}
	name := resp.GetOperation().GetName()
	if name == "" {
		t.Fatalf("no operation: %v", resp)
	}
	if _, err := svc.GetOperation(stranger, &secretbrokerv1.GetOperationRequest{Name: name}); status.Code(err) != codes.NotFound {
		t.Errorf("stranger GetOperation: %v, want NotFound", err)
	}
	if _, err := svc.WaitOperation(stranger, &secretbrokerv1.WaitOperationRequest{Name: name}); status.Code(err) != codes.NotFound {
		t.Errorf("stranger WaitOperation: %v, want NotFound", err)
	}
	if _, err := svc.CancelOperation(stranger, &secretbrokerv1.CancelOperationRequest{Name: name}); status.Code(err) != codes.NotFound {
		t.Errorf("stranger CancelOperation: %v, want NotFound", err)
	}
	list, err := svc.ListOperations(stranger, &secretbrokerv1.ListOperationsRequest{})
	if err != nil || len(list.GetOperations()) != 0 {
		t.Errorf("stranger ListOperations: %v, %v; want none", list, err)
	}
	v1 := "http://" + b.httpAddr + "/v1/"
	for _, c := range []struct{ method, path string }{
		{http.MethodGet, name}, {http.MethodPost, name + ":cancel"}, {http.MethodPost, name + ":wait"},
	} {
		body := ""
		if c.method == http.MethodPost {
			body = "{}"
		}
		if code, got := httpDo(t, b.http, c.method, v1+c.path, strangerToken, body); code != http.StatusNotFound {
			t.Errorf("JSON stranger %s %s: %d %s, want 404", c.method, c.path, code, got)
		}
	}
	if code, got := httpDo(t, b.http, http.MethodGet, v1+"operations", strangerToken, ""); code != http.StatusOK || strings.Contains(got, name) {
		t.Errorf("JSON stranger list: %d %s", code, got)
	}
	done, err := svc.WaitOperation(dep, &secretbrokerv1.WaitOperationRequest{Name: name})
	if err != nil || !done.GetDone() {
		t.Fatalf("wait: %v %v", done, err)
	}
	prodDenied := false
	for _, r := range done.GetResponse().GetBatchPutResults() {
		if r.GetName() == prodSecret {
			prodDenied = r.GetCode().String() == "PERMISSION_DENIED"
		}
	}
	if !prodDenied {
		t.Errorf("the prod item is not PERMISSION_DENIED in the results: %v", done.GetResponse().GetBatchPutResults())
	}

	// The admin's batch of PAY_A, which the deployer may read, not write:
	// the deployer sees the operation but may not cancel it (the check
	// comes before the operation's state is looked at, so it holds
	// whether or not the batch is done by then).
	admin := withBearer(t.Context(), adminToken)
	const payA = "repos/octo-org/hello-world/actions/secrets/PAY_A"
	aresp, err := svc.BatchPutSecrets(admin, &secretbrokerv1.BatchPutSecretsRequest{Async: true, Requests: []*secretbrokerv1.PutSecretRequest{
		{Name: payA, Payload: value},
	}})
	if err != nil {
		t.Fatal(err)
	}
	aname := aresp.GetOperation().GetName()
	if _, err := svc.GetOperation(dep, &secretbrokerv1.GetOperationRequest{Name: aname}); err != nil {
		t.Errorf("deployer GetOperation of a batch of PAY_A it may read: %v, want it", err)
	}
	if _, err := svc.CancelOperation(dep, &secretbrokerv1.CancelOperationRequest{Name: aname}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("deployer CancelOperation of a batch of PAY_A it may only read: %v, want PermissionDenied", err)
	}
	if code, got := httpDo(t, b.http, http.MethodPost, v1+aname+":cancel", deployerToken, "{}"); code != http.StatusForbidden {
		t.Errorf("JSON deployer cancel of a batch of PAY_A it may only read: %d %s, want 403", code, got)
	}
	adone, err := svc.WaitOperation(admin, &secretbrokerv1.WaitOperationRequest{Name: aname})
	if err != nil || !adone.GetDone() || adone.GetError() != nil {
		t.Errorf("the admin's batch: %v %v, want done, not cancelled", adone, err)
	}
}

// TestAdversarialOrgAccessChange: a caller with write but not
// manage_repositories on an organization secret cannot change its
// visibility or selection by any write path (PutSecret, a batch, a sync,
// an async sync), over gRPC or JSON, while the writes that keep them, and
// the creation of new secrets, go through.
func TestAdversarialOrgAccessChange(t *testing.T) {
	const policy = `
rules:
  - callers: ["token:deployer"]
    verbs: [read, write, delete]
    resources: ["orgs/octo-org/actions/secrets/APP_*"]
  - callers: ["token:admin"]
    verbs: [read, write, delete, manage_repositories]
    resources: ["**"]
`
	callers := writeFile(t, "callers.yaml", "callers:\n  - name: deployer\n    token_sha256: "+sha256Hex(deployerToken)+
		"\n  - name: admin\n    token_sha256: "+sha256Hex(adminToken)+"\n")
	b := startBroker(t, securedConfigWith(t, writeFile(t, "policy.yaml", policy), "--callers-file="+callers))
	svc := secretbrokerv1.NewSecretServiceClient(b.conn)
	dep := withBearer(t.Context(), deployerToken)
	admin := withBearer(t.Context(), adminToken)
	value := &secretbrokerv1.PutSecretRequest_Value{Value: accessValue}
	const (
		org  = "orgs/octo-org/actions"
		appA = org + "/secrets/APP_A"
	)
	if _, err := svc.PutSecret(admin, &secretbrokerv1.PutSecretRequest{Name: appA, Payload: value, Visibility: "selected",
		SelectedRepositoryIds: []int64{1296269}}); err != nil {
		t.Fatal(err)
	}
	still := func(what string) {
		t.Helper()
		sec, err := svc.GetSecret(admin, &secretbrokerv1.GetSecretRequest{Name: appA})
		if err != nil {
			t.Fatal(err)
		}
		repos, err := svc.ListSelectedRepositories(admin, &secretbrokerv1.ListSelectedRepositoriesRequest{Name: appA})
		if err != nil {
			t.Fatal(err)
		}
		if sec.GetVisibility() != "selected" || len(repos.GetRepositories()) != 1 || repos.GetRepositories()[0].GetId() != 1296269 {
			t.Fatalf("after %s: visibility %q, repositories %v", what, sec.GetVisibility(), repos.GetRepositories())
		}
	}

	_, err := svc.PutSecret(dep, &secretbrokerv1.PutSecretRequest{Name: appA, Payload: value, Visibility: "all"})
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("put visibility all: %v", err)
	}
	still("put visibility all")
	_, err = svc.PutSecret(dep, &secretbrokerv1.PutSecretRequest{Name: appA, Payload: value, Visibility: "selected", SelectedRepositories: []string{"docs"}})
	if c := status.Code(err); c != codes.PermissionDenied && c != codes.InvalidArgument {
		t.Errorf("put selected by name: %v", err)
	}
	still("put selected by name")
	batch, err := svc.BatchPutSecrets(dep, &secretbrokerv1.BatchPutSecretsRequest{Requests: []*secretbrokerv1.PutSecretRequest{
		{Name: appA, Payload: value, Visibility: "private"}, {Name: org + "/secrets/APP_NEW", Payload: value, Visibility: "all"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if c0, c1 := batch.GetResults()[0].GetCode().String(), batch.GetResults()[1].GetCode().String(); c0 != "PERMISSION_DENIED" || c1 != "OK" {
		t.Errorf("batch: %s, %s; want PERMISSION_DENIED, OK", c0, c1)
	}
	still("batch")
	sync, err := svc.SyncSecrets(dep, &secretbrokerv1.SyncSecretsRequest{Parent: org, Visibility: "all", Force: true,
		Secrets: map[string]string{"APP_A": "x", "APP_B": "y"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range sync.GetResults() {
		if strings.HasSuffix(r.GetName(), "/APP_A") && r.GetCode().String() != "PERMISSION_DENIED" {
			t.Errorf("sync APP_A: %s %s", r.GetCode(), r.GetMessage())
		}
	}
	still("sync")
	async, err := svc.SyncSecrets(dep, &secretbrokerv1.SyncSecretsRequest{Parent: org, Visibility: "private", Force: true, Async: true,
		Secrets: map[string]string{"APP_A": "z"}})
	if err != nil {
		t.Fatal(err)
	}
	done, err := svc.WaitOperation(dep, &secretbrokerv1.WaitOperationRequest{Name: async.GetOperation().GetName()})
	if err != nil || !done.GetDone() {
		t.Fatalf("wait: %v %v", done, err)
	}
	for _, r := range done.GetResponse().GetSyncResults() {
		if strings.HasSuffix(r.GetName(), "/APP_A") && r.GetCode().String() != "PERMISSION_DENIED" {
			t.Errorf("async sync APP_A: %s %s", r.GetCode(), r.GetMessage())
		}
	}
	still("async sync")
	v1 := "http://" + b.httpAddr + "/v1/"
	if code, got := httpDo(t, b.http, http.MethodPut, v1+appA, deployerToken, `{"value":"v","visibility":"all"}`); code != http.StatusForbidden {
		t.Errorf("JSON put visibility all: %d %s", code, got)
	}
	for _, c := range []struct{ method, path, body string }{
		{http.MethodPut, appA + "/repositories", `{"selected_repository_ids":[1296269,1296270]}`},
		{http.MethodPut, appA + "/repositories/docs", ""},
		{http.MethodDelete, appA + "/repositories/1296269", ""},
	} {
		if code, got := httpDo(t, b.http, c.method, v1+c.path, deployerToken, c.body); code != http.StatusForbidden {
			t.Errorf("JSON %s %s: %d %s", c.method, c.path, code, got)
		}
	}
	still("JSON")
	// A write that keeps the visibility and selection goes through.
	if _, err := svc.PutSecret(dep, &secretbrokerv1.PutSecretRequest{Name: appA, Payload: value}); err != nil {
		t.Errorf("put keeping the settings: %v", err)
	}
	still("put keeping the settings")
}
