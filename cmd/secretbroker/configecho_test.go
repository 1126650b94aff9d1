package main

import "testing"

// TestConfigErrorsNeverEchoTheValue: a secret given by mistake where a
// setting is expected (a command-line flag's value, a stray argument, a
// listen address from the environment) is refused without being
// repeated: not in the error, which is printed at start into the log
// pipeline, nor in the usage written to the output. The error still
// names the flag.
func TestConfigErrorsNeverEchoTheValue(t *testing.T) {
	const secret = "ghp_PLANTEDmisplacedToken0123456789abcd"
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
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantConfigError(t, tt.args, tt.env, tt.want, secret, testToken)
		})
	}
}
