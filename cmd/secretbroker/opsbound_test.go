package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
)

// TestCallerMaxOperationsFlag: --caller-max-operations reaches the
// operation runner. Writes are spaced an hour apart, so every accepted
// async batch (two writes) stays unfinished: with a bound of 2, the
// deployer's third is RESOURCE_EXHAUSTED naming the bound, while the
// admin's, another caller's, is accepted. Without authentication (--dev,
// no callers file) every call has the same, empty, caller: a second
// client is refused once a first holds the bound.
func TestCallerMaxOperationsFlag(t *testing.T) {
	const limit = 2
	batch := func(ctx context.Context, svc secretbrokerv1.SecretServiceClient, scope, prefix string, i int) (string, error) {
		resp, err := svc.BatchPutSecrets(ctx, &secretbrokerv1.BatchPutSecretsRequest{Async: true, Requests: []*secretbrokerv1.PutSecretRequest{
			{Name: fmt.Sprintf("%s/secrets/%s_A_%d", scope, prefix, i), Payload: &secretbrokerv1.PutSecretRequest_Value{Value: accessValue}},
			{Name: fmt.Sprintf("%s/secrets/%s_B_%d", scope, prefix, i), Payload: &secretbrokerv1.PutSecretRequest_Value{Value: accessValue}},
		}})
		return resp.GetOperation().GetName(), err
	}
	// cancel ends the accepted operations, whose writes wait an hour,
	// so that the broker stops at once.
	cancel := func(t *testing.T, ctx context.Context, svc secretbrokerv1.SecretServiceClient, names []string) {
		t.Helper()
		for _, name := range names {
			if _, err := svc.CancelOperation(ctx, &secretbrokerv1.CancelOperationRequest{Name: name}); err != nil {
				t.Errorf("cancel %s: %v", name, err)
			}
		}
	}
	refusedOverBound := func(t *testing.T, what string, err error) {
		t.Helper()
		st, _ := status.FromError(err)
		if st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), fmt.Sprintf("has %d unfinished operations", limit)) {
			t.Errorf("%s: %v, want RESOURCE_EXHAUSTED naming the bound of %d", what, err, limit)
		}
	}
	const staging = "repos/octo-org/hello-world/environments/staging"
	bound := fmt.Sprintf("--caller-max-operations=%d", limit)

	t.Run("per caller", func(t *testing.T) {
		callers := writeFile(t, "callers.yaml", "callers:\n  - name: deployer\n    token_sha256: "+sha256Hex(deployerToken)+
			"\n  - name: admin\n    token_sha256: "+sha256Hex(adminToken)+"\n")
		cfg := securedConfig(t, "--callers-file="+callers, "--upstream-write-interval=1h", bound)
		b := startBroker(t, cfg)
		svc := secretbrokerv1.NewSecretServiceClient(b.conn)
		dep := withBearer(t.Context(), deployerToken)
		admin := withBearer(t.Context(), adminToken)
		var depOps []string
		for i := range limit {
			name, err := batch(dep, svc, staging, "DEP", i)
			if err != nil {
				t.Fatalf("deployer's async batch %d of %d: %v", i+1, limit, err)
			}
			depOps = append(depOps, name)
		}
		defer cancel(t, dep, svc, depOps)
		_, err := batch(dep, svc, staging, "DEP", limit)
		refusedOverBound(t, "deployer's async batch over the bound", err)
		name, err := batch(admin, svc, "repos/octo-org/hello-world/actions", "ADM", 0)
		if err != nil {
			t.Fatalf("admin's async batch while the deployer is at its bound: %v, want it accepted", err)
		}
		defer cancel(t, admin, svc, []string{name})
	})

	t.Run("unauthenticated callers share one bound", func(t *testing.T) {
		cfg, err := loadConfig([]string{"--dev", "--grpc-addr=127.0.0.1:0", "--http-addr=127.0.0.1:0", "--admin-addr=127.0.0.1:0",
			"--shutdown-timeout=5s", "--upstream-write-interval=1h", bound}, envMap(nil), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		b := startBroker(t, cfg)
		svc := secretbrokerv1.NewSecretServiceClient(b.conn)
		ctx := t.Context()
		var ops []string
		for i := range limit {
			name, err := batch(ctx, svc, staging, "ONE", i)
			if err != nil {
				t.Fatalf("first client's async batch %d of %d: %v", i+1, limit, err)
			}
			ops = append(ops, name)
		}
		defer cancel(t, ctx, svc, ops)
		// Another client, on its own connection, with its own names.
		conn, err := grpc.NewClient(b.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_, err = batch(ctx, secretbrokerv1.NewSecretServiceClient(conn), staging, "TWO", 0)
		refusedOverBound(t, "another unauthenticated client's async batch", err)
	})
}
