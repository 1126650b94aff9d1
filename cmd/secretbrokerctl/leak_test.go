package main

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/code"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
)

// echoBroker is a broken broker that echoes what it was sent, value and
// token included, in every error and item message: the client must still
// print neither.
type echoBroker struct {
	secretbrokerv1.UnimplementedSecretServiceServer
}

func authOf(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	return strings.Join(md.Get("authorization"), ",")
}

func (echoBroker) PutSecret(ctx context.Context, req *secretbrokerv1.PutSecretRequest) (*secretbrokerv1.PutSecretResponse, error) {
	return nil, status.Errorf(codes.InvalidArgument, "value %q refused for %s", req.GetValue(), authOf(ctx))
}

func (echoBroker) GetSecret(ctx context.Context, req *secretbrokerv1.GetSecretRequest) (*secretbrokerv1.Secret, error) {
	return nil, status.Errorf(codes.PermissionDenied, "%s may not read %s", authOf(ctx), req.GetName())
}

func (echoBroker) ListSecrets(ctx context.Context, req *secretbrokerv1.ListSecretsRequest) (*secretbrokerv1.ListSecretsResponse, error) {
	return nil, status.Errorf(codes.Unauthenticated, "bad credentials %s", authOf(ctx))
}

func (echoBroker) DeleteSecret(ctx context.Context, req *secretbrokerv1.DeleteSecretRequest) (*emptypb.Empty, error) {
	return nil, status.Errorf(codes.Internal, "panic: token=%s", authOf(ctx))
}

func (echoBroker) BatchPutSecrets(ctx context.Context, req *secretbrokerv1.BatchPutSecretsRequest) (*secretbrokerv1.BatchPutSecretsResponse, error) {
	resp := &secretbrokerv1.BatchPutSecretsResponse{}
	for i, r := range req.GetRequests() {
		if i == 0 {
			resp.Results = append(resp.Results, &secretbrokerv1.BatchPutSecretsResult{Name: r.GetName(), Code: code.Code_OK, Created: true})
			continue
		}
		resp.Results = append(resp.Results, &secretbrokerv1.BatchPutSecretsResult{
			Name: r.GetName(), Code: code.Code_INVALID_ARGUMENT,
			Message: fmt.Sprintf("value %q from %s", r.GetValue(), authOf(ctx)),
		})
	}
	return resp, nil
}

// SyncSecrets plans the first secret and refuses the others, quoting their
// values; with async its operation ends (WaitOperation) with the same
// results and an error quoting the token.
func (echoBroker) SyncSecrets(ctx context.Context, req *secretbrokerv1.SyncSecretsRequest) (*secretbrokerv1.SyncSecretsResponse, error) {
	if req.GetAsync() {
		return &secretbrokerv1.SyncSecretsResponse{Operation: &secretbrokerv1.Operation{
			Name:     "operations/echo",
			Metadata: &secretbrokerv1.OperationMetadata{Total: int32(len(req.GetSecrets())), Remaining: int32(len(req.GetSecrets()))},
		}}, nil
	}
	return &secretbrokerv1.SyncSecretsResponse{DryRun: req.GetDryRun(), Results: echoSyncResults(ctx, req.GetParent(), req.GetSecrets())}, nil
}

func echoSyncResults(ctx context.Context, parent string, secrets map[string]string) []*secretbrokerv1.SyncSecretsResult {
	var out []*secretbrokerv1.SyncSecretsResult
	for k, v := range secrets {
		r := &secretbrokerv1.SyncSecretsResult{Name: parent + "/secrets/" + k, Action: secretbrokerv1.SyncAction_SYNC_ACTION_CREATE}
		if len(out) > 0 {
			r.Code, r.Message = code.Code_INVALID_ARGUMENT, fmt.Sprintf("value %q from %s", v, authOf(ctx))
		}
		out = append(out, r)
	}
	return out
}

func (echoBroker) WaitOperation(ctx context.Context, req *secretbrokerv1.WaitOperationRequest) (*secretbrokerv1.Operation, error) {
	return &secretbrokerv1.Operation{
		Name:     req.GetName(),
		Done:     true,
		Metadata: &secretbrokerv1.OperationMetadata{Total: 2, Written: 1, Failed: 1},
		Error:    &rpcstatus.Status{Code: int32(codes.Internal), Message: "token " + authOf(ctx)},
		Response: &secretbrokerv1.OperationResponse{SyncResults: echoSyncResults(ctx, "repos/o/r/actions", map[string]string{"A": plantedValue, "B": plantedValue})},
	}, nil
}

func (echoBroker) DetectDrift(ctx context.Context, req *secretbrokerv1.DetectDriftRequest) (*secretbrokerv1.DetectDriftResponse, error) {
	return nil, status.Errorf(codes.PermissionDenied, "%s may not read %s", authOf(ctx), req.GetParent())
}

func (echoBroker) ListOperations(ctx context.Context, _ *secretbrokerv1.ListOperationsRequest) (*secretbrokerv1.ListOperationsResponse, error) {
	return nil, status.Errorf(codes.Unauthenticated, "bad credentials %s", authOf(ctx))
}

func (echoBroker) GetOperation(ctx context.Context, req *secretbrokerv1.GetOperationRequest) (*secretbrokerv1.Operation, error) {
	return nil, status.Errorf(codes.NotFound, "%s: no %s", authOf(ctx), req.GetName())
}

func (echoBroker) CancelOperation(ctx context.Context, req *secretbrokerv1.CancelOperationRequest) (*secretbrokerv1.Operation, error) {
	return nil, status.Errorf(codes.NotFound, "%s: no %s", authOf(ctx), req.GetName())
}

// TestNeverPrintsValueOrToken runs every subcommand, on success and on
// failure, with a planted value and token, against the real broker and
// against one that echoes them back; ctl fails the test if either shows
// on stdout or stderr.
func TestNeverPrintsValueOrToken(t *testing.T) {
	real := startBroker(t, brokerOpts{auth: true})
	echo := startBroker(t, brokerOpts{server: echoBroker{}})
	tokenFile := writeFile(t, "token", []byte(plantedToken+"\n"))
	valueFile := writeFile(t, "value", []byte(plantedValue))
	envFile := writeFile(t, ".env", []byte("A="+plantedValue+"\nB="+plantedValue+"\n1C="+plantedValue+"\n"))
	name := repoScope + "/secrets/LEAK"

	for _, b := range []*broker{real, echo} {
		for _, output := range []string{outputTable, outputJSON} {
			for _, args := range [][]string{
				{"put", name},
				{"put", name, "--from-file", valueFile},
				{"put", name, "--token-file", tokenFile},
				{"put", "orgs/octo-org/actions/secrets/LEAK", "--repos", "no-such-repo"},
				{"put", "repos/octo-org/no-such-repo/actions/secrets/LEAK"},
				{"put-many", "--from-env-file", envFile, repoScope},
				{"put-many", "--from-env-file", "-", repoScope},
				{"get", name},
				{"ls", repoScope},
				{"rm", name},
				{"get", name},
				{"sync", "--from-env-file", envFile, "--dry-run", repoScope},
				{"sync", "--from-env-file", envFile, repoScope},
				{"sync", "--from-env-file", "-", "--prune", "--yes", repoScope},
				{"drift", repoScope},
				{"ops"},
				{"op", "operations/echo"},
				{"cancel", "operations/echo"},
			} {
				args := append(args, "--output", output)
				// Standard input is an env file for put-many and a
				// two-line value for put, which a broker quoting it with
				// %q would escape.
				r := ctl(t, b.env(), "A="+plantedValue+"\nB="+plantedValue+"\n", args...)
				if b == echo && r.code != exitFail {
					t.Errorf("%v against the echoing broker: exit %d, want 1", args, r.code)
				}
				if b == echo && !strings.Contains(r.stderr, redacted) {
					t.Errorf("%v: the echoed secret was not redacted:\n%s", args, r.stderr)
				}
			}
		}
	}

	// An env-file value that breaks a line's syntax is not quoted back.
	r := ctl(t, real.env(), "A=\""+plantedValue+"\n", "put-many", "--from-env-file", "-", repoScope)
	wantCode(t, r, exitUsage)
	wantContains(t, "stderr", r.stderr, "line 1: A: the value's opening quote is not closed")
}

// TestScrubIgnoresShortSecrets: a secret shorter than minScrubLen is not
// replaced, so messages stay readable.
func TestScrubIgnoresShortSecrets(t *testing.T) {
	c := newCLI(nil, nil, nil, func(string) string { return "" }, noTerminal{})
	c.remember("abc")
	c.remember("hunter22")
	if got := c.scrub("abc hunter22 abc"); got != "abc [redacted] abc" {
		t.Errorf("scrub = %q", got)
	}
}

// TestScrubOverlappingSecrets: a secret that holds another, or overlaps
// it, is hidden whole, in whichever order they were remembered; nothing
// of either shows.
func TestScrubOverlappingSecrets(t *testing.T) {
	const long = "Hunter-PLANTED-long-tail-SECRET-9f8e7d"
	for _, tc := range []struct {
		name     string
		remember []string
		in, want string
	}{
		{"short first", []string{"Hunter", long}, `value "` + long + `" and Hunter`, `value "[redacted]" and [redacted]`},
		{"long first", []string{long, "Hunter"}, `value "` + long + `" and Hunter`, `value "[redacted]" and [redacted]`},
		{"inside the long one", []string{"tail-SECRET", long}, "x" + long + "x", "x[redacted]x"},
		{"overlapping, neither holds the other", []string{"abcdef", "defghi"}, "<abcdefghi>", "<[redacted]>"},
		{"overlapping occurrences of one", []string{"aaaa"}, "baaaaab", "b[redacted]b"},
		{"adjacent", []string{"left-secret", "right-secret"}, "left-secretright-secret!", "[redacted]!"},
		{"quoted form", []string{"tab\there", "tab\\there-and-more"}, `"tab\there-and-more"`, `"[redacted]"`},
		{"nothing to hide", []string{"Hunter"}, "plain text", "plain text"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCLI(nil, nil, nil, func(string) string { return "" }, noTerminal{})
			for _, s := range tc.remember {
				c.remember(s)
			}
			if got := c.scrub(tc.in); got != tc.want {
				t.Errorf("scrub(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}

	// End to end: the echoing broker quotes both values back (all but
	// the first item's).
	echo := startBroker(t, brokerOpts{server: echoBroker{}})
	for _, file := range []string{"Z=first-item\nA=Hunter\nB=" + long + "\n", "Z=first-item\nB=" + long + "\nA=Hunter\n"} {
		r := ctl(t, echo.env(), "", "put-many", "--from-env-file", writeFile(t, ".env", []byte(file)), repoScope)
		wantCode(t, r, exitFail)
		wantContains(t, "stderr", r.stderr, redacted)
		if strings.Contains(r.all(), "PLANTED-long-tail") || strings.Contains(r.all(), "9f8e7d") {
			t.Errorf("part of a secret was printed:\n%s", r.all())
		}
	}
}
