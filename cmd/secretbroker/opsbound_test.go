package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
)

// TestCallerMaxOperationsFlag: --caller-max-operations reaches the
// operation runner. Writes are spaced an hour apart, so every accepted
// async batch (two writes) stays unfinished: with a bound of 2, the
// deployer's third is RESOURCE_EXHAUSTED naming the bound, also from
// another address, while the admin's, another caller's from the same
// address, is accepted. Without authentication (--dev, no callers file)
// a caller is counted by its address, as the front door counts its
// calls (the HTTP client's through the gateway): a client from another
// address has a bound of its own, while another connection from the
// same address, over gRPC or JSON, shares it.
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
	// from returns a client of b's gRPC listener on its own connection
	// from loopback address ip.
	from := func(t *testing.T, b *broker, ip net.IP) secretbrokerv1.SecretServiceClient {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}}
		conn, err := grpc.NewClient(b.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return secretbrokerv1.NewSecretServiceClient(conn)
	}
	// httpFrom returns a client of b's HTTP listener from loopback
	// address ip.
	httpFrom := func(ip net.IP) *http.Client {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}}
		return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: d.DialContext}}
	}
	const staging = "repos/octo-org/hello-world/environments/staging"
	bound := fmt.Sprintf("--caller-max-operations=%d", limit)
	first, second, third := net.IPv4(127, 0, 0, 1), net.IPv4(127, 0, 0, 2), net.IPv4(127, 0, 0, 3)

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
		// An authenticated caller is counted by its identity, not its
		// address: from another address it is still at its bound.
		_, err = batch(dep, from(t, b, second), staging, "DEP", limit+1)
		refusedOverBound(t, "deployer's async batch over the bound, from another address", err)
		name, err := batch(admin, svc, "repos/octo-org/hello-world/actions", "ADM", 0)
		if err != nil {
			t.Fatalf("admin's async batch while the deployer is at its bound: %v, want it accepted", err)
		}
		defer cancel(t, admin, svc, []string{name})
	})

	t.Run("unauthenticated callers by address", func(t *testing.T) {
		cfg, err := loadConfig([]string{"--dev", "--grpc-addr=127.0.0.1:0", "--http-addr=127.0.0.1:0", "--admin-addr=127.0.0.1:0",
			"--shutdown-timeout=5s", "--upstream-write-interval=1h", bound}, envMap(nil), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		b := startBroker(t, cfg)
		ctx := t.Context()
		svc := secretbrokerv1.NewSecretServiceClient(b.conn) // from 127.0.0.1
		var ops []string
		defer func() { cancel(t, ctx, svc, ops) }() // without authentication, anyone may cancel any
		jsonBatch := func(c *http.Client, prefix string) (int, string) {
			return httpDo(t, c, http.MethodPost, "http://"+b.httpAddr+"/v1/secrets:batchPut", "",
				fmt.Sprintf(`{"async":true,"requests":[{"name":"%s/secrets/%s_A","value":"v"},{"name":"%s/secrets/%s_B","value":"v"}]}`,
					staging, prefix, staging, prefix))
		}
		for _, c := range []struct {
			name string
			svc  secretbrokerv1.SecretServiceClient
		}{
			{"the first address", svc},
			{"another address", from(t, b, second)},
		} {
			for i := range limit {
				name, err := batch(ctx, c.svc, staging, strings.ReplaceAll(c.name, " ", "_"), i)
				if err != nil {
					t.Fatalf("async batch %d of %d from %s: %v, want it accepted (a bound of its own)", i+1, limit, c.name, err)
				}
				ops = append(ops, name)
			}
			_, err := batch(ctx, c.svc, staging, strings.ReplaceAll(c.name, " ", "_"), limit)
			refusedOverBound(t, "async batch over the bound from "+c.name, err)
		}
		// Another connection from an address at its bound shares it.
		_, err = batch(ctx, from(t, b, first), staging, "SAME", 0)
		refusedOverBound(t, "async batch from the first address on another connection", err)
		// Through the gateway, the HTTP client's address counts.
		if code, body := jsonBatch(httpFrom(first), "JSON_FIRST"); code != http.StatusTooManyRequests ||
			!strings.Contains(body, fmt.Sprintf("has %d unfinished operations", limit)) {
			t.Errorf("JSON async batch from the first address: %d %s, want 429 naming the bound", code, body)
		}
		code, body := jsonBatch(httpFrom(third), "JSON_THIRD")
		if code != http.StatusOK {
			t.Fatalf("JSON async batch from a third address: %d %s, want it accepted", code, body)
		}
		var resp struct{ Operation struct{ Name string } }
		if err := json.Unmarshal([]byte(body), &resp); err != nil || resp.Operation.Name == "" {
			t.Fatalf("JSON async batch's answer %s: %v", body, err)
		}
		ops = append(ops, resp.Operation.Name)
	})
}
