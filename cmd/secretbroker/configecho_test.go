package main

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"
)

// TestConfigErrorsNeverEchoTheValue: a secret given by mistake where a
// setting is expected (a command-line flag's value, a stray argument, a
// listen address from the environment) is refused without being
// repeated: not in the error, which is printed at start into the log
// pipeline, nor in the usage written to the output. The error still
// names the flag.
func TestConfigErrorsNeverEchoTheValue(t *testing.T) {
	const secret = "ghp_PLANTEDmisplacedToken0123456789abcd"
	const plantedJWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJQTEFOVEVEIn0.PLANTEDsig"
	const plantedPEM = "-----BEGIN PRIVATE KEY-----\nPLANTEDkey\n-----END PRIVATE KEY-----"
	withToken := map[string]string{"GITHUB_TOKEN": testToken}
	loopback := []string{"--grpc-addr=127.0.0.1:0", "--http-addr=127.0.0.1:0", "--admin-addr=127.0.0.1:0"}
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want []string // substrings of the error
	}{
		{name: "a whole number flag", args: []string{"--github-app-id=" + secret}, env: withToken, want: []string{"--github-app-id", "whole number"}},
		{name: "a whole number flag, value apart", args: []string{"--github-app-installation-id", secret}, env: withToken, want: []string{"--github-app-installation-id", "whole number"}},
		{name: "a number flag", args: []string{"--caller-rps=" + secret}, env: withToken, want: []string{"--caller-rps", "a number"}},
		{name: "a duration flag", args: []string{"--key-ttl=" + secret}, env: withToken, want: []string{"--key-ttl", "duration"}},
		{name: "a level flag", args: []string{"--log-level=" + secret}, env: withToken, want: []string{"--log-level", "debug, info, warn or error"}},
		{name: "an on/off flag", args: []string{"--dev-limits=" + secret}, env: withToken, want: []string{"--dev-limits", "on or off"}},
		{name: "a boolean flag", args: []string{"--dev=" + secret}, env: withToken, want: []string{"--dev", "true or false"}},
		{name: "a stray argument", args: append(loopback, "--upstream-token-file=/run/token", secret), env: withToken, want: []string{"unexpected argument", "flags only"}},
		{name: "a stray argument after a boolean flag", args: append(loopback, "--allow-unauthenticated", secret), env: withToken, want: []string{"unexpected argument"}},
		{name: "the gRPC address from the environment", env: map[string]string{"GITHUB_TOKEN": testToken, "SECRETBROKER_GRPC_ADDR": secret}, want: []string{"--grpc-addr", "host:port"}},
		{name: "the gateway address from the environment", args: []string{"--grpc-addr=127.0.0.1:0"}, env: map[string]string{"GITHUB_TOKEN": testToken, "SECRETBROKER_HTTP_ADDR": secret}, want: []string{"--http-addr", "host:port"}},
		{name: "the admin address from the environment", args: loopback[:2], env: map[string]string{"GITHUB_TOKEN": testToken, "SECRETBROKER_ADMIN_ADDR": secret}, want: []string{"--admin-addr", "host:port"}},
		{name: "the gRPC address from the environment, dev", args: []string{"--dev"}, env: map[string]string{"SECRETBROKER_GRPC_ADDR": secret}, want: []string{"--grpc-addr", "host:port"}},
		{name: "the admin address from the environment, dev", args: []string{"--dev"}, env: map[string]string{"SECRETBROKER_ADMIN_ADDR": secret}, want: []string{"--admin-addr", "host:port"}},

		// A secret typed where a flag's name should be: named by its
		// position, not by itself.
		{name: "a secret as a flag", args: []string{"-" + secret}, env: withToken, want: []string{"not defined", "1st argument"}},
		{name: "a secret as a flag with a value", args: append(loopback, "--"+secret+"=x"), env: withToken, want: []string{"not defined", "4th argument"}},
		{name: "a secret as a flag after a flag's value", args: []string{"--grpc-addr", "127.0.0.1:0", "--" + secret}, env: withToken, want: []string{"not defined", "3rd argument"}},
		{name: "a secret as a flag with three dashes", args: []string{"---" + secret}, env: withToken, want: []string{"bad flag syntax", "1st argument"}},
		{name: "a known flag without its value", args: []string{"--grpc-addr"}, env: withToken, want: []string{"needs an argument", "--grpc-addr"}},

		// A secret in a string setting the start-up line prints: refused,
		// naming the setting. Listen addresses and API versions are of a
		// closed form; the others are free-form.
		{name: "a listen address with a secret as its host", args: []string{loopback[0], loopback[1], "--admin-addr=" + secret + ":9091"}, env: withToken, want: []string{"--admin-addr", "host:port"}},
		{name: "a listen address with a secret as its port", args: []string{loopback[0], loopback[1], "--admin-addr=127.0.0.1:" + secret}, env: withToken, want: []string{"--admin-addr", "host:port"}},
		{name: "the Actions API version", args: append(loopback, "--upstream-api-version-actions="+secret), env: withToken, want: []string{"--upstream-api-version-actions", "date"}},
		{name: "the Agents API version from the environment", args: loopback, env: map[string]string{"GITHUB_TOKEN": testToken, "SECRETBROKER_UPSTREAM_API_VERSION_AGENTS": secret}, want: []string{"--upstream-api-version-agents", "date"}},
		{name: "the Agents API version, dev", args: []string{"--dev", "--upstream-api-version-agents=" + secret}, want: []string{"--upstream-api-version-agents", "date"}},
		{name: "the JWT audience", args: append(loopback, "--jwt-issuer=https://issuer.example", "--jwt-audience="+secret, "--jwt-jwks-file=/run/jwks.json"), env: withToken, want: []string{"--jwt-audience", "credential"}},
		{name: "the JWT audience, a JWT", args: append(loopback, "--jwt-issuer=https://issuer.example", "--jwt-audience="+plantedJWT, "--jwt-jwks-file=/run/jwks.json"), env: withToken, want: []string{"--jwt-audience", "credential"}},
		{name: "the JWT issuer from the environment", args: loopback, env: map[string]string{"GITHUB_TOKEN": testToken, "SECRETBROKER_JWT_ISSUER": secret, "SECRETBROKER_JWT_AUDIENCE": "broker", "SECRETBROKER_JWT_JWKS_FILE": "/run/jwks.json"}, want: []string{"--jwt-issuer", "SECRETBROKER_JWT_ISSUER", "credential"}},
		{name: "the JWT issuer, a URL ending with a secret", args: append(loopback, "--jwt-issuer=https://issuer.example/"+secret, "--jwt-audience=broker", "--jwt-jwks-file=/run/jwks.json"), env: withToken, want: []string{"--jwt-issuer", "credential"}},
		{name: "the JWKS URL's path", args: append(loopback, "--jwt-issuer=https://issuer.example", "--jwt-audience=broker", "--jwt-jwks-url=https://issuer.example/"+secret), env: withToken, want: []string{"--jwt-jwks-url", "credential"}},
		{name: "the upstream URL's path", args: append(loopback, "--upstream-url=https://ghes.example/"+secret), env: withToken, want: []string{"--upstream-url", "credential"}},
		{name: "a fine-grained token as the audit log", args: append(loopback, "--audit-log=github_pat_PLANTED0123456789abcdefghij"), env: withToken, want: []string{"--audit-log", "credential"}},
		{name: "a PEM block as the policy file", env: map[string]string{"GITHUB_TOKEN": testToken, "SECRETBROKER_POLICY_FILE": plantedPEM}, args: append(loopback, "--callers-file=/run/callers.yaml"), want: []string{"--policy-file", "credential"}},
		{name: "a secret as the state directory", args: append(loopback, "--state-dir="+secret), env: withToken, want: []string{"--state-dir", "credential"}},
		{name: "a secret as the token file", args: append(loopback, "--upstream-token-file="+secret), want: []string{"--upstream-token-file", "credential"}},
		{name: "a secret as the app key file", args: append(loopback, "--github-app-id=1", "--github-app-private-key-file="+secret), want: []string{"--github-app-private-key-file", "credential"}},
		{name: "a secret as the TLS key file", args: append(loopback, "--tls-cert-file=/run/c.pem", "--tls-key-file="+secret), env: withToken, want: []string{"--tls-key-file", "credential"}},
		{name: "a secret as the Redis URL", args: append(loopback, "--redis-url=redis://"+secret+":6379/0"), env: withToken, want: []string{"--redis-url", "credential"}},
		{name: "the trace exporter", args: loopback, env: map[string]string{"GITHUB_TOKEN": testToken, "OTEL_TRACES_EXPORTER": secret}, want: []string{"OTEL_TRACES_EXPORTER", "otlp"}},
		{name: "the trace sampler", args: loopback, env: map[string]string{"GITHUB_TOKEN": testToken, "OTEL_TRACES_SAMPLER": secret}, want: []string{"OTEL_TRACES_SAMPLER", "always_on"}},
		{name: "the trace sampler's ratio", args: loopback, env: map[string]string{"GITHUB_TOKEN": testToken, "OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": secret}, want: []string{"OTEL_TRACES_SAMPLER_ARG", "ratio"}},
		{name: "the metrics exporter", args: loopback, env: map[string]string{"GITHUB_TOKEN": testToken, "OTEL_METRICS_EXPORTER": secret}, want: []string{"OTEL_METRICS_EXPORTER", "otlp"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantConfigError(t, tt.args, tt.env, tt.want, secret, "PLANTED", testToken)
		})
	}
}

// TestStartRefusesASecretInASetting runs the whole start (realMain, as
// main does) with a secret where a flag's name or a printed setting
// should be: it is refused before the start-up line, and neither stdout,
// stderr (where the log goes) nor the error main prints holds it.
func TestStartRefusesASecretInASetting(t *testing.T) {
	const secret = "ghp_PLANTEDmisplacedToken0123456789abcd"
	loopback := []string{"--grpc-addr=127.0.0.1:0", "--http-addr=127.0.0.1:0", "--admin-addr=127.0.0.1:0"}
	tests := []struct {
		name string
		args []string
		want string // in the error
	}{
		{name: "a secret as a flag", args: append(slices.Clone(loopback), "--"+secret), want: "4th argument"},
		{name: "the API version", args: append(slices.Clone(loopback), "--upstream-api-version-agents="+secret), want: "--upstream-api-version-agents"},
		{name: "the JWT audience", args: append(slices.Clone(loopback), "--jwt-issuer=https://issuer.example", "--jwt-audience="+secret, "--jwt-jwks-file=/run/jwks.json"), want: "--jwt-audience"},
		{name: "the JWT issuer, dev", args: []string{"--dev", "--jwt-issuer=" + secret, "--jwt-audience=broker", "--jwt-jwks-file=/run/jwks.json"}, want: "--jwt-issuer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("GITHUB_TOKEN", testToken)
			// Stopped at once if it started anyway: the test fails on
			// the missing error, not on a broker left serving.
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			var stdout, stderr bytes.Buffer
			err := realMain(ctx, tt.args, &stdout, &stderr)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("realMain: %v, want an error naming %q", err, tt.want)
			}
			for where, s := range map[string]string{"the error": err.Error(), "stdout": stdout.String(), "stderr": stderr.String()} {
				if strings.Contains(s, "PLANTED") {
					t.Errorf("%s holds the planted secret: %.300q", where, s)
				}
			}
		})
	}
}
