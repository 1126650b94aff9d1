package service

import (
	"strings"
	"testing"
	"testing/synctest"

	"google.golang.org/grpc/codes"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/upstream/emulator"
)

// TestSecretKey checks the identity repeats and write locks are keyed by:
// GitHub's organization, owner, repository and environment names in any
// case, and the secret's name upper-case, are one secret.
func TestSecretKey(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		same bool
	}{
		{"repos/octo-org/hello-world/actions/secrets/DUP", "repos/Octo-Org/Hello-World/actions/secrets/DUP", true},
		{"repos/octo-org/hello-world/actions/secrets/DUP", "repos/octo-org/hello-world/actions/secrets/dup", true},
		{"orgs/octo-org/actions/secrets/DUP", "orgs/OCTO-ORG/actions/secrets/Dup", true},
		{"repos/octo-org/hello-world/environments/prod/secrets/DUP", "repos/OCTO-ORG/hello-WORLD/environments/prod/secrets/DUP", true},
		// "Environment names are not case sensitive" (GitHub's docs,
		// "Managing environments for deployment").
		{"repos/octo-org/hello-world/environments/prod/secrets/DUP", "repos/octo-org/hello-world/environments/Prod/secrets/DUP", true},
		{"repos/octo-org/hello-world/environments/prod/secrets/DUP", "repos/octo-org/hello-world/environments/prod-eu/secrets/DUP", false},
		{"repos/octo-org/hello-world/actions/secrets/DUP", "repos/octo-org/hello-world/agents/secrets/DUP", false},
		{"repos/octo-org/hello-world/actions/secrets/DUP", "repos/octo-org/hello-worlds/actions/secrets/DUP", false},
		{"orgs/octo-org/actions/secrets/DUP", "repos/octo-org/actions/actions/secrets/DUP", false},
	} {
		sa, na, err := parseSecretName("name", tc.a)
		if err != nil {
			t.Fatalf("%s: %v", tc.a, err)
		}
		sb, nb, err := parseSecretName("name", tc.b)
		if err != nil {
			t.Fatalf("%s: %v", tc.b, err)
		}
		if got := secretKey(sa, na) == secretKey(sb, nb); got != tc.same {
			t.Errorf("secretKey(%s) == secretKey(%s): %v, want %v", tc.a, tc.b, got, tc.same)
		}
	}
}

// dupSpellings are two spellings of one repository secret.
var dupSpellings = []string{
	"repos/octo-org/hello-world/actions/secrets/DUP",
	"repos/Octo-Org/Hello-World/actions/secrets/dup",
}

// TestBatchRefusesCaseVariants sends one secret twice, spelled in two
// cases: both items are refused as repeats and nothing is written (before,
// both were written and answered OK while GitHub kept one).
func TestBatchRefusesCaseVariants(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, harnessOpts{})
		resp, err := h.broker.BatchPutSecrets(t.Context(), &secretbrokerv1.BatchPutSecretsRequest{Requests: []*secretbrokerv1.PutSecretRequest{
			plain(dupSpellings[0], plantedSecret), plain(dupSpellings[1], "value-two"), plain(repoScope+"/secrets/OTHER", "value-three"),
		}})
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range resp.GetResults()[:2] {
			if c := codes.Code(r.GetCode()); c != codes.InvalidArgument || !strings.Contains(r.GetMessage(), "same secret") {
				t.Errorf("item %d (%s): %v %q, want InvalidArgument naming the repeat", i, r.GetName(), c, r.GetMessage())
			}
		}
		if c := codes.Code(resp.GetResults()[2].GetCode()); c != codes.OK {
			t.Errorf("the other item: %v, want OK", c)
		}
		if n := h.emu.Count(emulator.RoutePutRepoSecret); n != 1 {
			t.Errorf("%d PUTs, want 1 (the other item only)", n)
		}
		if _, err := h.emu.Open(repoScope, "DUP"); err == nil {
			t.Errorf("a repeated item was written")
		}
	})
}

// TestAsyncBatchRefusesCaseVariants: an async batch holding one secret in
// two spellings is refused as a whole, naming the repeat, and starts no
// operation.
func TestAsyncBatchRefusesCaseVariants(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, harnessOpts{})
		closeOps(t, h.server)
		_, err := h.broker.BatchPutSecrets(t.Context(), &secretbrokerv1.BatchPutSecretsRequest{Async: true, Requests: []*secretbrokerv1.PutSecretRequest{
			plain(dupSpellings[0], plantedSecret), plain(dupSpellings[1], "value-two"),
		}})
		if statusCode(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "requests[1].name") {
			t.Fatalf("async batch with case variants: %v, want InvalidArgument for requests[1].name", err)
		}
		ops, err := h.broker.ListOperations(t.Context(), &secretbrokerv1.ListOperationsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if len(ops.GetOperations()) != 0 {
			t.Errorf("operations after a refused batch: %v", ops.GetOperations())
		}
		if n := h.emu.Count(emulator.RoutePutRepoSecret); n != 0 {
			t.Errorf("%d PUTs, want none", n)
		}
	})
}

// TestBatchDeleteRefusesCaseVariants: deletes of one secret in two
// spellings are repeats too.
func TestBatchDeleteRefusesCaseVariants(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, harnessOpts{})
		if _, err := h.broker.PutSecret(t.Context(), plain(dupSpellings[0], plantedSecret)); err != nil {
			t.Fatal(err)
		}
		resp, err := h.broker.BatchDeleteSecrets(t.Context(), &secretbrokerv1.BatchDeleteSecretsRequest{Names: dupSpellings})
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range resp.GetResults() {
			if c := codes.Code(r.GetCode()); c != codes.InvalidArgument {
				t.Errorf("item %d (%s): %v, want InvalidArgument", i, r.GetName(), c)
			}
		}
		if n := h.emu.Count(emulator.RouteDeleteRepoSecret); n != 0 {
			t.Errorf("%d DELETEs, want none", n)
		}
	})
}
