package main

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/service/identity/identitytest"
)

// TestChooseTransport: plaintext only to loopback or with --insecure; TLS
// (the system's roots, or --tls-ca-file) to anything else.
func TestChooseTransport(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    common
		want transport
		err  string
	}{
		{name: "default address", o: common{addr: defaultAddr}, want: transport{plaintext: true}},
		{name: "localhost", o: common{addr: "localhost:9090"}, want: transport{plaintext: true}},
		{name: "LOCALHOST", o: common{addr: "LOCALHOST:9090"}, want: transport{plaintext: true}},
		{name: "IPv6 loopback", o: common{addr: "[::1]:9090"}, want: transport{plaintext: true}},
		{name: "127.0.0.2", o: common{addr: "127.0.0.2:9090"}, want: transport{plaintext: true}},
		{name: "remote name is TLS", o: common{addr: "broker.internal:443"}, want: transport{}},
		{name: "remote IP is TLS", o: common{addr: "10.0.0.7:9090"}, want: transport{}},
		{name: "empty host is TLS", o: common{addr: ":9090"}, want: transport{}},
		{name: "a name that merely starts with localhost", o: common{addr: "localhost.evil.example:9090"}, want: transport{}},
		{name: "remote with --insecure", o: common{addr: "10.0.0.7:9090", insecure: true}, want: transport{plaintext: true}},
		{name: "loopback with --tls", o: common{addr: defaultAddr, tls: true}, want: transport{}},
		{name: "loopback with a CA", o: common{addr: defaultAddr, caFile: "ca.pem"}, want: transport{caFile: "ca.pem"}},
		{name: "mTLS", o: common{addr: "b:1", caFile: "ca", certFile: "c", keyFile: "k"}, want: transport{caFile: "ca", certFile: "c", keyFile: "k"}},
		{name: "insecure and TLS", o: common{addr: "b:1", insecure: true, tls: true}, err: "--insecure is plaintext"},
		{name: "insecure and a client cert", o: common{addr: "b:1", insecure: true, certFile: "c", keyFile: "k"}, err: "--insecure is plaintext"},
		{name: "key without cert", o: common{addr: "b:1", keyFile: "k"}, err: "go together"},
		{name: "no port", o: common{addr: "broker.internal"}, err: "want host:port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := chooseTransport(&tc.o)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("transport = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestMutualTLS reaches a broker that requires a client certificate, which
// then names the caller: no token is needed.
func TestMutualTLS(t *testing.T) {
	ca := identitytest.NewCA(t)
	b := startBroker(t, brokerOpts{auth: true, tls: serverTLS(t, ca)})
	caFile := ca.WriteCertFile(t)
	certFile, keyFile := writeClientCert(t, ca.ClientCert(t, "spiffe://example.org/ctl", "", ""))
	other := identitytest.NewCA(t)
	name := repoScope + "/secrets/MTLS"
	env := map[string]string{"SECRETBROKER_ADDR": b.addr}
	tlsArgs := []string{"--tls-ca-file", caFile, "--tls-cert-file", certFile, "--tls-key-file", keyFile}

	r := ctl(t, env, plantedValue, append([]string{"put", name}, tlsArgs...)...)
	wantCode(t, r, exitOK)
	if got := b.open(t, repoScope, "MTLS"); got != plantedValue {
		t.Errorf("wrote %q", got)
	}
	r = ctl(t, env, "", append([]string{"get", name}, tlsArgs...)...)
	wantCode(t, r, exitOK)

	// The token travels over TLS too.
	env["SECRETBROKER_TOKEN"] = plantedToken
	r = ctl(t, env, "", append([]string{"ls", repoScope}, tlsArgs...)...)
	wantCode(t, r, exitOK)
	wantContains(t, "ls", r.stdout, "MTLS")

	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{name: "plaintext to a TLS broker", args: nil, code: exitFail, stderr: "UNAVAILABLE"},
		{name: "no client certificate", args: []string{"--tls-ca-file", caFile}, code: exitFail, stderr: "UNAVAILABLE"},
		{name: "server from another CA", args: []string{"--tls-ca-file", other.WriteCertFile(t), "--tls-cert-file", certFile, "--tls-key-file", keyFile}, code: exitFail, stderr: "UNAVAILABLE"},
		{name: "missing CA file", args: []string{"--tls-ca-file", certFile + ".missing"}, code: exitUsage, stderr: "--tls-ca-file"},
		{name: "CA file without a certificate", args: []string{"--tls-ca-file", keyFile}, code: exitUsage, stderr: "no PEM certificate"},
		{name: "key file is not a key", args: []string{"--tls-ca-file", caFile, "--tls-cert-file", certFile, "--tls-key-file", caFile}, code: exitUsage, stderr: "--tls-cert-file/--tls-key-file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := ctl(t, env, "", append([]string{"get", name}, tc.args...)...)
			wantCode(t, r, tc.code)
			wantContains(t, "stderr", r.stderr, tc.stderr)
		})
	}
}

// stuckBroker answers nothing until the call's deadline.
type stuckBroker struct {
	secretbrokerv1.UnimplementedSecretServiceServer
	batch func(*secretbrokerv1.BatchPutSecretsRequest) (*secretbrokerv1.BatchPutSecretsResponse, error)
}

func (stuckBroker) GetSecret(ctx context.Context, _ *secretbrokerv1.GetSecretRequest) (*secretbrokerv1.Secret, error) {
	<-ctx.Done()
	return nil, status.FromContextError(ctx.Err()).Err()
}

func (s stuckBroker) BatchPutSecrets(_ context.Context, req *secretbrokerv1.BatchPutSecretsRequest) (*secretbrokerv1.BatchPutSecretsResponse, error) {
	return s.batch(req)
}

// TestTimeout: --timeout bounds a call, which then fails with
// DEADLINE_EXCEEDED and exit 1.
func TestTimeout(t *testing.T) {
	b := startBroker(t, brokerOpts{server: stuckBroker{}})
	r := ctl(t, b.env(), "", "get", repoScope+"/secrets/SLOW", "--timeout", "50ms")
	wantCode(t, r, exitFail)
	wantContains(t, "stderr", r.stderr, "DEADLINE_EXCEEDED")
}

// TestPutManyCallFails: when a batch call itself fails, or answers the
// wrong number of results, put-many says how many items went unanswered
// and exits 1.
func TestPutManyCallFails(t *testing.T) {
	for _, tc := range []struct {
		name   string
		batch  func(*secretbrokerv1.BatchPutSecretsRequest) (*secretbrokerv1.BatchPutSecretsResponse, error)
		stderr string
	}{
		{
			name: "call refused",
			batch: func(*secretbrokerv1.BatchPutSecretsRequest) (*secretbrokerv1.BatchPutSecretsResponse, error) {
				return nil, status.Error(codes.ResourceExhausted, "over the limit")
			},
			stderr: "RESOURCE_EXHAUSTED: over the limit; 2 of 2 items not sent or not answered",
		},
		{
			name: "short answer",
			batch: func(*secretbrokerv1.BatchPutSecretsRequest) (*secretbrokerv1.BatchPutSecretsResponse, error) {
				return &secretbrokerv1.BatchPutSecretsResponse{}, nil
			},
			stderr: "the broker answered 0 results for 2 items",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := startBroker(t, brokerOpts{server: stuckBroker{batch: tc.batch}})
			r := ctl(t, b.env(), "A="+plantedValue+"\nB="+plantedValue+"\n", "put-many", "--from-env-file", "-", repoScope)
			wantCode(t, r, exitFail)
			wantContains(t, "stderr", r.stderr, tc.stderr)
		})
	}
}

// loopingBroker answers every page with the same next page token.
type loopingBroker struct {
	secretbrokerv1.UnimplementedSecretServiceServer
}

func (loopingBroker) ListSecrets(context.Context, *secretbrokerv1.ListSecretsRequest) (*secretbrokerv1.ListSecretsResponse, error) {
	return &secretbrokerv1.ListSecretsResponse{
		Secrets:       []*secretbrokerv1.Secret{{Name: repoScope + "/secrets/A", SecretId: "A"}},
		TotalCount:    1,
		NextPageToken: "again",
	}, nil
}

// TestListStopsOnARepeatedToken: ls does not follow a token the broker
// already sent.
func TestListStopsOnARepeatedToken(t *testing.T) {
	b := startBroker(t, brokerOpts{server: loopingBroker{}})
	r := ctl(t, b.env(), "", "ls", repoScope)
	wantCode(t, r, exitFail)
	wantContains(t, "stderr", r.stderr, "the same page token twice")
}
