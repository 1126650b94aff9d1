package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/secretbroker/secretbroker/service"
	"github.com/secretbroker/secretbroker/service/operation"
	"github.com/secretbroker/secretbroker/upstream"
)

// testToken is a made-up GitHub token; tests check it never leaks.
const testToken = "ghp_TESTTOKENdo_not_leak_0123456789abcdef"

// envMap is a lookup function over a map, standing in for os.LookupEnv.
func envMap(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

func writeTokenFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadConfig(t *testing.T) {
	tokenFile := writeTokenFile(t, "\n  "+testToken+"  \n")
	otherFile := writeTokenFile(t, "ghp_fromfile")

	defaults := Config{
		GRPCAddr:                  ":9090",
		HTTPAddr:                  ":8080",
		AdminAddr:                 ":9091",
		UpstreamURL:               "https://api.github.com",
		UpstreamToken:             upstream.Token(testToken),
		UpstreamAPIVersionActions: "2022-11-28",
		UpstreamAPIVersionAgents:  "2026-03-10",
		UpstreamMaxInFlight:       10,
		UpstreamWriteInterval:     time.Second,
		UpstreamPointsPerMinute:   900,
		UpstreamCPUTimePerMinute:  80 * time.Second,
		UpstreamMaxAttempts:       5,
		KeyTTL:                    10 * time.Minute,
		ShutdownTimeout:           15 * time.Second,
		StateLockTimeout:          2 * time.Second,
		GRPCMaxConnectionAge:      30 * time.Minute,
		LogLevel:                  slog.LevelInfo,
		LogFormat:                 "json",
		TracesSampler:             "parentbased_always_on",
		TracesSamplerRatio:        1,
		AllowUnauthenticated:      true,
		CallerRPS:                 50,
		CallerBurst:               100,
		CallerMaxConcurrent:       32,
		CallerMaxOperations:       100,
		MaxConcurrentCalls:        512,
		MaxInflightBytes:          32 << 20,
		GCHeapFloor:               64 << 20,
		SharedPacing:              SharedPacing{UpstreamWritesPerMinute: 80, UpstreamWritesPerHour: 500, ExpectedReplicas: 1},
		Shedding:                  Shedding{UpstreamMaxQueue: 1000, MaxQueueWait: 5 * time.Minute, MaxWorkingCalls: 16 * runtime.GOMAXPROCS(0), MaxWaitingCalls: 16 * runtime.GOMAXPROCS(0)},
	}
	with := func(f func(*Config)) Config {
		c := defaults
		f(&c)
		return c
	}

	tests := []struct {
		name string
		args []string
		env  map[string]string
		want Config
	}{
		{
			name: "defaults",
			env:  map[string]string{"GITHUB_TOKEN": testToken},
			want: defaults,
		},
		{
			name: "GITHUB_TOKEN is trimmed",
			env:  map[string]string{"GITHUB_TOKEN": " " + testToken + "\n"},
			want: defaults,
		},
		{
			name: "environment",
			env: map[string]string{
				"GITHUB_TOKEN":                              testToken,
				"SECRETBROKER_GRPC_ADDR":                    "10.0.0.1:9999",
				"SECRETBROKER_HTTP_ADDR":                    ":8888",
				"SECRETBROKER_UPSTREAM_URL":                 "https://ghes.example.com/api/v3",
				"SECRETBROKER_UPSTREAM_API_VERSION_ACTIONS": "2026-03-10",
				"SECRETBROKER_UPSTREAM_API_VERSION_AGENTS":  "2027-01-01",
				"SECRETBROKER_UPSTREAM_LEGACY_ROUTES":       "true",
				"SECRETBROKER_UPSTREAM_MAX_IN_FLIGHT":       "100",
				"SECRETBROKER_UPSTREAM_WRITE_INTERVAL":      "0s",
				"SECRETBROKER_UPSTREAM_POINTS_PER_MINUTE":   "0",
				"SECRETBROKER_UPSTREAM_CPU_TIME_PER_MINUTE": "30s",
				"SECRETBROKER_UPSTREAM_MAX_ATTEMPTS":        "1",
				"SECRETBROKER_KEY_TTL":                      "1h",
				"SECRETBROKER_SHUTDOWN_TIMEOUT":             "3s",
				"SECRETBROKER_LOG_LEVEL":                    "debug",
				"OTEL_EXPORTER_OTLP_ENDPOINT":               "http://collector:4317",
			},
			want: with(func(c *Config) {
				c.GRPCAddr = "10.0.0.1:9999"
				c.HTTPAddr = ":8888"
				c.UpstreamURL = "https://ghes.example.com/api/v3"
				c.UpstreamAPIVersionActions = "2026-03-10"
				c.UpstreamAPIVersionAgents = "2027-01-01"
				c.UpstreamLegacyRoutes = true
				c.UpstreamMaxInFlight = 100
				c.UpstreamWriteInterval = 0
				c.UpstreamPointsPerMinute = 0
				c.UpstreamCPUTimePerMinute = 30 * time.Second
				c.UpstreamMaxAttempts = 1
				c.KeyTTL = time.Hour
				c.ShutdownTimeout = 3 * time.Second
				c.LogLevel = slog.LevelDebug
				c.TracesExporter = "otlp"
			}),
		},
		{
			// GitHub Enterprise Server 3.21's reference gives 2026-03-10
			// only.
			name: "GitHub Enterprise Server's Actions version",
			args: []string{"--upstream-url=https://ghes.example.com/api/v3/"},
			env:  map[string]string{"GITHUB_TOKEN": testToken},
			want: with(func(c *Config) {
				c.UpstreamURL = "https://ghes.example.com/api/v3/"
				c.UpstreamAPIVersionActions = "2026-03-10"
			}),
		},
		{
			// The older one's reference, with the legacy routes, has
			// no API versions.
			name: "older GitHub Enterprise Server's Actions version",
			args: []string{"--upstream-url=https://ghes.example.com/api/v3", "--upstream-legacy-routes"},
			env:  map[string]string{"GITHUB_TOKEN": testToken},
			want: with(func(c *Config) {
				c.UpstreamURL = "https://ghes.example.com/api/v3"
				c.UpstreamLegacyRoutes = true
				c.UpstreamAPIVersionActions = "2022-11-28"
			}),
		},
		{
			name: "upstream URL over plain HTTP to another host, allowed",
			args: []string{"--upstream-url=http://ghes.example.com/api/v3", "--upstream-allow-http"},
			env:  map[string]string{"GITHUB_TOKEN": testToken},
			want: with(func(c *Config) {
				c.UpstreamURL = "http://ghes.example.com/api/v3"
				c.UpstreamAllowHTTP = true
				c.UpstreamAPIVersionActions = "2026-03-10"
			}),
		},
		{
			name: "flags",
			args: []string{
				"--grpc-addr=:1", "--http-addr", ":2", "--upstream-url=https://gh.internal",
				"--upstream-api-version-actions=2023-01-02", "--upstream-api-version-agents=2027-03-04",
				"--upstream-legacy-routes", "--shutdown-timeout=1m", "--log-level=WARN", "--grpc-max-connection-age=5m",
			},
			env: map[string]string{"GITHUB_TOKEN": testToken},
			want: with(func(c *Config) {
				c.GRPCAddr = ":1"
				c.HTTPAddr = ":2"
				c.UpstreamURL = "https://gh.internal"
				c.UpstreamAPIVersionActions = "2023-01-02"
				c.UpstreamAPIVersionAgents = "2027-03-04"
				c.UpstreamLegacyRoutes = true
				c.ShutdownTimeout = time.Minute
				c.LogLevel = slog.LevelWarn
				c.GRPCMaxConnectionAge = 5 * time.Minute
			}),
		},
		{
			name: "plain HTTP to an emulator on loopback",
			args: []string{"--upstream-url=http://[::1]:8081/api/v3"},
			env:  map[string]string{"GITHUB_TOKEN": testToken},
			want: with(func(c *Config) {
				c.UpstreamURL = "http://[::1]:8081/api/v3"
				c.UpstreamAPIVersionActions = "2026-03-10"
			}),
		},
		{
			name: "flag wins over environment",
			args: []string{"--grpc-addr=:7000", "--upstream-legacy-routes=false", "--log-level=error"},
			env: map[string]string{
				"GITHUB_TOKEN":                        testToken,
				"SECRETBROKER_GRPC_ADDR":              ":6000",
				"SECRETBROKER_HTTP_ADDR":              ":6001",
				"SECRETBROKER_UPSTREAM_LEGACY_ROUTES": "true",
				"SECRETBROKER_LOG_LEVEL":              "debug",
			},
			want: with(func(c *Config) {
				c.GRPCAddr = ":7000"
				c.HTTPAddr = ":6001"
				c.LogLevel = slog.LevelError
			}),
		},
		{
			name: "token file, trimmed, wins over GITHUB_TOKEN",
			args: []string{"--upstream-token-file", tokenFile},
			env:  map[string]string{"GITHUB_TOKEN": "ghp_fromenv"},
			want: with(func(c *Config) { c.UpstreamTokenFile = tokenFile }),
		},
		{
			name: "token file from the environment",
			env:  map[string]string{"SECRETBROKER_UPSTREAM_TOKEN_FILE": otherFile},
			want: with(func(c *Config) {
				c.UpstreamTokenFile = otherFile
				c.UpstreamToken = "ghp_fromfile"
			}),
		},
		{
			name: "dev needs no token and binds loopback",
			args: []string{"--dev"},
			want: with(func(c *Config) {
				c.Dev = true
				c.LogFormat = "text"
				c.AdminAddr = "127.0.0.1:9091"
				c.CallerRPS = 0
				c.UpstreamToken = ""
				c.GRPCAddr = "127.0.0.1:9090"
				c.HTTPAddr = "127.0.0.1:8080"
			}),
		},
		{
			// --dev does not use it: a shell's stray one is no error.
			name: "dev takes a GITHUB_TOKEN of two words",
			args: []string{"--dev"},
			env:  map[string]string{"GITHUB_TOKEN": "ghp_one ghp_two"},
			want: with(func(c *Config) {
				c.Dev = true
				c.LogFormat = "text"
				c.AdminAddr = "127.0.0.1:9091"
				c.CallerRPS = 0
				c.UpstreamToken = "ghp_one ghp_two"
				c.GRPCAddr = "127.0.0.1:9090"
				c.HTTPAddr = "127.0.0.1:8080"
			}),
		},
		{
			name: "dev from the environment keeps explicit loopback hosts",
			env: map[string]string{
				"SECRETBROKER_DEV":       "1",
				"SECRETBROKER_GRPC_ADDR": "[::1]:0",
				"SECRETBROKER_HTTP_ADDR": "localhost:0",
			},
			want: with(func(c *Config) {
				c.Dev = true
				c.LogFormat = "text"
				c.AdminAddr = "127.0.0.1:9091"
				c.CallerRPS = 0
				c.UpstreamToken = ""
				c.GRPCAddr = "[::1]:0"
				c.HTTPAddr = "localhost:0"
			}),
		},
		{
			name: "dev with 127.0.0.2",
			args: []string{"--dev", "--grpc-addr=127.0.0.2:0", "--http-addr=127.0.0.1:0"},
			want: with(func(c *Config) {
				c.Dev = true
				c.LogFormat = "text"
				c.AdminAddr = "127.0.0.1:9091"
				c.CallerRPS = 0
				c.UpstreamToken = ""
				c.GRPCAddr = "127.0.0.2:0"
				c.HTTPAddr = "127.0.0.1:0"
			}),
		},
		{
			name: "log format and trace exporter",
			args: []string{"--log-format=text"},
			env:  map[string]string{"GITHUB_TOKEN": testToken, "OTEL_TRACES_EXPORTER": "console", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"},
			want: with(func(c *Config) {
				c.LogFormat = "text"
				c.logFormatGiven = true
				c.TracesExporter = "console"
			}),
		},
		{
			name: "dev keeps a log format given",
			args: []string{"--dev"},
			env:  map[string]string{"SECRETBROKER_LOG_FORMAT": "json", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"},
			want: with(func(c *Config) {
				c.Dev = true
				c.logFormatGiven = true
				c.TracesExporter = "otlp"
				c.AdminAddr = "127.0.0.1:9091"
				c.CallerRPS = 0
				c.UpstreamToken = ""
				c.GRPCAddr = "127.0.0.1:9090"
				c.HTTPAddr = "127.0.0.1:8080"
			}),
		},
		{
			name: "caller max operations flag",
			args: []string{"--caller-max-operations=2"},
			env:  map[string]string{"GITHUB_TOKEN": testToken},
			want: with(func(c *Config) { c.CallerMaxOperations = 2 }),
		},
		{
			name: "caller max operations from the environment",
			env:  map[string]string{"GITHUB_TOKEN": testToken, "SECRETBROKER_CALLER_MAX_OPERATIONS": "7"},
			want: with(func(c *Config) { c.CallerMaxOperations = 7 }),
		},
		{
			name: "caller max operations flag wins over the environment",
			args: []string{"--caller-max-operations=3"},
			env:  map[string]string{"GITHUB_TOKEN": testToken, "SECRETBROKER_CALLER_MAX_OPERATIONS": "7"},
			want: with(func(c *Config) { c.CallerMaxOperations = 3 }),
		},
		{
			name: "caller max operations 0 turns the bound off",
			args: []string{"--caller-max-operations=0"},
			env:  map[string]string{"GITHUB_TOKEN": testToken},
			want: with(func(c *Config) { c.CallerMaxOperations = 0 }),
		},
		{
			name: "none exports nothing, even with an endpoint",
			env:  map[string]string{"GITHUB_TOKEN": testToken, "OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"},
			want: with(func(c *Config) { c.TracesExporter = "none" }),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Every case may listen on all interfaces unauthenticated.
			env := maps.Clone(tt.env)
			if env == nil {
				env = map[string]string{}
			}
			env["SECRETBROKER_ALLOW_UNAUTHENTICATED"] = "true"
			got, err := loadConfig(tt.args, envMap(env), io.Discard)
			if err != nil {
				t.Fatalf("loadConfig: %v", err)
			}
			if got != tt.want {
				t.Errorf("loadConfig:\n got %v token %t\nwant %v token %t",
					got, got.UpstreamToken == testToken, tt.want, tt.want.UpstreamToken == testToken)
			}
			if string(got.UpstreamToken) != string(tt.want.UpstreamToken) {
				t.Errorf("token: got %d bytes, want %d bytes", len(got.UpstreamToken), len(tt.want.UpstreamToken))
			}
		})
	}
}

func TestLoadConfigErrors(t *testing.T) {
	emptyFile := writeTokenFile(t, " \n\t")
	twoWords := writeTokenFile(t, testToken+"\n"+testToken)
	withToken := map[string]string{"GITHUB_TOKEN": testToken}

	tests := []struct {
		name string
		args []string
		env  map[string]string
		want []string // substrings of the error
	}{
		{
			name: "no token",
			want: []string{"GITHUB_TOKEN", "--upstream-token-file"},
		},
		{
			name: "empty GITHUB_TOKEN",
			env:  map[string]string{"GITHUB_TOKEN": "  "},
			want: []string{"GITHUB_TOKEN", "--upstream-token-file"},
		},
		{
			name: "duration variable without a unit",
			env:  map[string]string{"GITHUB_TOKEN": testToken, "SECRETBROKER_SHUTDOWN_TIMEOUT": "15"},
			want: []string{"SECRETBROKER_SHUTDOWN_TIMEOUT", "want a duration such as 15s"},
		},
		{
			name: "empty number variable",
			env:  map[string]string{"GITHUB_TOKEN": testToken, "SECRETBROKER_CALLER_RPS": ""},
			want: []string{"SECRETBROKER_CALLER_RPS", "want a number"},
		},
		{
			name: "integer variable",
			env:  map[string]string{"GITHUB_TOKEN": testToken, "SECRETBROKER_CALLER_BURST": "1.5"},
			want: []string{"SECRETBROKER_CALLER_BURST", "want a whole number"},
		},
		{
			name: "negative caller max operations",
			args: []string{"--caller-max-operations=-1"},
			env:  withToken,
			want: []string{"--caller-max-operations must not be negative", "0 turns the bound off"},
		},
		{
			name: "negative caller max operations from the environment",
			env:  map[string]string{"GITHUB_TOKEN": testToken, "SECRETBROKER_CALLER_MAX_OPERATIONS": "-5"},
			want: []string{"--caller-max-operations must not be negative"},
		},
		{
			name: "caller max operations variable not a number",
			env:  map[string]string{"GITHUB_TOKEN": testToken, "SECRETBROKER_CALLER_MAX_OPERATIONS": "ten"},
			want: []string{"SECRETBROKER_CALLER_MAX_OPERATIONS", "want a whole number"},
		},
		{
			name: "boolean variable",
			env:  map[string]string{"GITHUB_TOKEN": testToken, "SECRETBROKER_DEV": "yes"},
			want: []string{"SECRETBROKER_DEV", "want true or false"},
		},
		{
			name: "missing token file",
			args: []string{"--upstream-token-file=/nonexistent/token"},
			env:  withToken,
			// Not the path: it may be the token, given by mistake
			// (TestSecretFileFlagGivenTheSecret).
			want: []string{"--upstream-token-file", "no such file or directory"},
		},
		{
			name: "empty token file",
			args: []string{"--upstream-token-file=" + emptyFile},
			env:  withToken,
			want: []string{"is empty"},
		},
		{
			name: "token file with two tokens",
			args: []string{"--upstream-token-file=" + twoWords},
			env:  withToken,
			want: []string{"more than one word"},
		},
		{
			name: "GITHUB_TOKEN with two tokens",
			env:  map[string]string{"GITHUB_TOKEN": testToken + "\n" + testToken},
			want: []string{"GITHUB_TOKEN holds more than one word"},
		},
		{
			name: "GITHUB_TOKEN with a space inside",
			env:  map[string]string{"GITHUB_TOKEN": " token " + testToken + "\n"},
			want: []string{"GITHUB_TOKEN holds more than one word"},
		},
		{
			name: "dev refuses a public address",
			args: []string{"--dev", "--grpc-addr=0.0.0.0:9090"},
			want: []string{"--grpc-addr", "loopback"},
		},
		{
			name: "dev refuses a host name",
			env:  map[string]string{"SECRETBROKER_DEV": "true", "SECRETBROKER_HTTP_ADDR": "example.com:80"},
			want: []string{"--http-addr", "loopback"},
		},
		{
			// --dev talks to the emulator only: the GitHub the operator
			// named would be ignored without a word.
			name: "dev with an upstream URL",
			args: []string{"--dev", "--upstream-url=https://ghes.example.com/api/v3"},
			want: []string{"--dev", "--upstream-url"},
		},
		{
			name: "dev with an upstream URL from the environment",
			env:  map[string]string{"SECRETBROKER_DEV": "true", "SECRETBROKER_UPSTREAM_URL": "https://api.github.com"},
			want: []string{"--dev", "--upstream-url", "SECRETBROKER_UPSTREAM_URL"},
		},
		{
			name: "dev app with an upstream URL",
			args: []string{"--dev-github-app", "--upstream-url=https://api.github.com"},
			want: []string{"--dev", "--upstream-url"},
		},
		{
			name: "dev with a token file",
			args: []string{"--dev", "--upstream-token-file=" + twoWords},
			want: []string{"--dev", "--upstream-token-file"},
		},
		{
			name: "dev with a token file from the environment",
			env:  map[string]string{"SECRETBROKER_DEV": "true", "SECRETBROKER_UPSTREAM_TOKEN_FILE": "/nonexistent/token"},
			want: []string{"--dev", "--upstream-token-file", "SECRETBROKER_UPSTREAM_TOKEN_FILE"},
		},
		{
			name: "dev with plain http upstream allowed",
			args: []string{"--dev", "--upstream-allow-http"},
			want: []string{"--dev", "--upstream-allow-http"},
		},
		{
			name: "unknown log format",
			args: []string{"--log-format=xml"},
			env:  withToken,
			want: []string{"--log-format", "json", "text"},
		},
		{
			name: "unknown trace exporter",
			env:  map[string]string{"GITHUB_TOKEN": testToken, "OTEL_TRACES_EXPORTER": "zipkin"},
			want: []string{"OTEL_TRACES_EXPORTER", "otlp"},
		},
		{
			name: "bad address",
			args: []string{"--grpc-addr=9090"},
			env:  withToken,
			want: []string{"--grpc-addr"},
		},
		{
			name: "bad duration in the environment",
			env:  map[string]string{"GITHUB_TOKEN": testToken, "SECRETBROKER_SHUTDOWN_TIMEOUT": "soon"},
			want: []string{"SECRETBROKER_SHUTDOWN_TIMEOUT"},
		},
		{name: "negative connection age", args: []string{"--grpc-max-connection-age=-1s"}, env: withToken, want: []string{"--grpc-max-connection-age"}},
		{name: "connection age that reconnects in a loop", args: []string{"--grpc-max-connection-age=1ns"}, env: withToken, want: []string{"--grpc-max-connection-age must be 0 (for ever) or at least 1m0s"}},
		{
			name: "zero shutdown timeout",
			args: []string{"--shutdown-timeout=0s"},
			env:  withToken,
			want: []string{"--shutdown-timeout"},
		},
		{name: "zero state lock timeout", args: []string{"--state-lock-timeout=0s"}, env: withToken, want: []string{"--state-lock-timeout must be positive"}},
		{name: "no request in flight", args: []string{"--upstream-max-in-flight=0"}, env: withToken, want: []string{"--upstream-max-in-flight", "100", "got 0"}},
		{name: "more in flight than GitHub allows", args: []string{"--upstream-max-in-flight=101"}, env: withToken, want: []string{"--upstream-max-in-flight"}},
		{name: "negative write interval", args: []string{"--upstream-write-interval=-1s"}, env: withToken, want: []string{"--upstream-write-interval"}},
		{name: "negative points", args: []string{"--upstream-points-per-minute=-1"}, env: withToken, want: []string{"--upstream-points-per-minute"}},
		{name: "points below one write", args: []string{"--upstream-points-per-minute=4"}, env: withToken, want: []string{"--upstream-points-per-minute", "at least 5"}},
		{name: "no attempt", args: []string{"--upstream-max-attempts=0"}, env: withToken, want: []string{"--upstream-max-attempts"}},
		{name: "too many attempts", env: map[string]string{"GITHUB_TOKEN": testToken, "SECRETBROKER_UPSTREAM_MAX_ATTEMPTS": "21"}, want: []string{"--upstream-max-attempts", "between 1 and 20", "got 21"}},
		{name: "zero key TTL", env: map[string]string{"GITHUB_TOKEN": testToken, "SECRETBROKER_KEY_TTL": "0s"}, want: []string{"--key-ttl"}},
		{name: "negative heap floor", args: []string{"--gc-heap-floor=-1"}, env: withToken, want: []string{"--gc-heap-floor"}},
		{
			name: "bad log level",
			args: []string{"--log-level=loud"},
			env:  withToken,
			want: []string{"log-level"},
		},
		// A variable's value is never repeated: it may be a secret put
		// in the wrong variable (the loop checks testToken is absent).
		{
			name: "log level variable",
			env:  map[string]string{"GITHUB_TOKEN": "ghp_x", "SECRETBROKER_LOG_LEVEL": testToken},
			want: []string{"SECRETBROKER_LOG_LEVEL", "--log-level", "want debug, info, warn or error"},
		},
		{
			name: "dev limits variable",
			env:  map[string]string{"GITHUB_TOKEN": "ghp_x", "SECRETBROKER_DEV_LIMITS": testToken},
			want: []string{"SECRETBROKER_DEV_LIMITS", "--dev-limits", "want on or off"},
		},
		{
			name: "log format variable",
			env:  map[string]string{"GITHUB_TOKEN": "ghp_x", "SECRETBROKER_LOG_FORMAT": testToken},
			want: []string{"--log-format", "SECRETBROKER_LOG_FORMAT", "json or text"},
		},
		{
			name: "bad bool in the environment",
			env:  map[string]string{"GITHUB_TOKEN": testToken, "SECRETBROKER_DEV": "yes please"},
			want: []string{"SECRETBROKER_DEV"},
		},
		{
			name: "upstream URL with credentials",
			args: []string{"--upstream-url=https://x-access-token:" + testToken + "@github.example.com"},
			env:  withToken,
			want: []string{"--upstream-url", "credentials"},
		},
		{
			// The password's unescaped "/", "?" or "#" ends the host:
			// url.Parse sees no user information.
			name: "upstream URL with credentials misread as a path",
			args: []string{"--upstream-url=https://x-access-token:1234/" + testToken + "@github.example.com"},
			env:  withToken,
			want: []string{"--upstream-url", "credentials"},
		},
		{
			name: "upstream URL with credentials misread as a query",
			args: []string{"--upstream-url=https://x-access-token:1234?" + testToken + "@github.example.com"},
			env:  withToken,
			want: []string{"--upstream-url", "credentials"},
		},
		{
			name: "upstream URL with credentials misread as a fragment",
			args: []string{"--upstream-url=https://x-access-token:1234#" + testToken + "@github.example.com"},
			env:  withToken,
			want: []string{"--upstream-url", "credentials"},
		},
		{
			name: "upstream URL with a token in its query",
			args: []string{"--upstream-url=https://ghe.example/api/v3?access_token=" + testToken},
			env:  withToken,
			want: []string{"--upstream-url must not have a query or fragment", "?redacted"},
		},
		{
			name: "upstream URL with a token in its fragment",
			args: []string{"--upstream-url=https://ghe.example/api/v3#" + testToken},
			env:  withToken,
			want: []string{"--upstream-url must not have a query or fragment", "#redacted"},
		},
		{
			name: "upstream URL over plain HTTP",
			args: []string{"--upstream-url=http://ghes.example.com/api/v3"},
			env:  withToken,
			want: []string{"--upstream-url must be https (http only on a loopback host, or with --upstream-allow-http)", "http://ghes.example.com/api/v3"},
		},
		{
			name: "upstream URL over plain HTTP to a host name that may be loopback",
			env:  map[string]string{"GITHUB_TOKEN": testToken, "SECRETBROKER_UPSTREAM_URL": "http://localhost.example:8080"},
			want: []string{"--upstream-url must be https"},
		},
		{
			name: "upstream URL not absolute",
			args: []string{"--upstream-url=api.github.com"},
			env:  withToken,
			want: []string{"--upstream-url"},
		},
		{
			name: "no token as a flag",
			args: []string{"--upstream-token=" + testToken},
			env:  withToken,
			want: []string{"not defined"},
		},
		{
			name: "stray argument",
			args: []string{"serve"},
			env:  withToken,
			want: []string{"unexpected arguments"},
		},
		{
			name: "unauthenticated on every interface (the default addresses)",
			env:  withToken,
			want: []string{"--grpc-addr :9090", "not a loopback address", "--tls-client-ca-file", "--callers-file", "--jwt-issuer", "--allow-unauthenticated"},
		},
		{
			name: "unauthenticated gateway on a non-loopback address",
			args: []string{"--grpc-addr=127.0.0.1:9090", "--http-addr=10.0.0.5:8080"},
			env:  withToken,
			want: []string{"--http-addr 10.0.0.5:8080", "not a loopback address"},
		},
		{
			name: "TLS without a client CA is not authentication",
			args: []string{"--tls-cert-file=/c.pem", "--tls-key-file=/k.pem"},
			env:  withToken,
			want: []string{"not a loopback address", "--tls-client-ca-file"},
		},
		{
			name: "a host name is not trusted to be loopback",
			args: []string{"--grpc-addr=broker.internal:9090", "--http-addr=127.0.0.1:8080"},
			env:  withToken,
			want: []string{"--grpc-addr broker.internal:9090"},
		},
		{
			name: "client CA without a server certificate",
			args: []string{"--tls-client-ca-file=/ca.pem"},
			env:  withToken,
			want: []string{"--tls-client-ca-file needs --tls-cert-file"},
		},
		{
			name: "certificate without key",
			args: []string{"--tls-cert-file=/c.pem", "--allow-unauthenticated"},
			env:  withToken,
			want: []string{"--tls-cert-file and --tls-key-file go together"},
		},
		{
			name: "JWT without audience",
			args: []string{"--jwt-issuer=https://issuer.example", "--jwt-jwks-file=/jwks.json"},
			env:  withToken,
			want: []string{"--jwt-audience"},
		},
		{
			name: "JWT with two key sources",
			args: []string{"--jwt-issuer=i", "--jwt-audience=a", "--jwt-jwks-file=/j", "--jwt-jwks-url=https://x/j"},
			env:  withToken,
			want: []string{"exactly one of --jwt-jwks-url and --jwt-jwks-file"},
		},
		{
			name: "policy without authentication",
			args: []string{"--policy-file=/policy.yaml", "--allow-unauthenticated"},
			env:  withToken,
			want: []string{"--policy-file needs caller authentication"},
		},
		{
			name: "audit key without audit log",
			args: []string{"--audit-hmac-key-file=/k", "--allow-unauthenticated"},
			env:  withToken,
			want: []string{"--audit-hmac-key-file needs --audit-log"},
		},
		{name: "caller rate NaN", args: []string{"--caller-rps=NaN", "--allow-unauthenticated"}, env: withToken, want: []string{"--caller-rps", "NaN"}},
		{name: "caller rate infinite", env: map[string]string{"GITHUB_TOKEN": testToken, "SECRETBROKER_CALLER_RPS": "+Inf", "SECRETBROKER_ALLOW_UNAUTHENTICATED": "true"}, want: []string{"--caller-rps", "0 turns the limit off"}},
		{
			name: "audit reads without audit log",
			env:  map[string]string{"GITHUB_TOKEN": testToken, "SECRETBROKER_AUDIT_READS": "true", "SECRETBROKER_ALLOW_UNAUTHENTICATED": "true"},
			want: []string{"--audit-reads needs --audit-log"},
		},
		{
			name: "in-flight bytes below one request",
			args: []string{"--max-inflight-bytes=1024", "--allow-unauthenticated"},
			env:  withToken,
			want: []string{"--max-inflight-bytes"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantConfigError(t, tt.args, tt.env, tt.want, testToken)
		})
	}
}

// wantConfigError checks that loadConfig refuses args with env, with an
// error that mentions each of want, and that neither the error nor the
// usage written to the output holds any of planted.
func wantConfigError(t *testing.T, args []string, env map[string]string, want []string, planted ...string) {
	t.Helper()
	var out bytes.Buffer
	_, err := loadConfig(args, envMap(env), &out)
	if err == nil {
		t.Fatal("loadConfig: no error")
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
	for _, p := range planted {
		if strings.Contains(err.Error(), p) {
			t.Errorf("the error holds %q: %q", p, err)
		}
		if strings.Contains(out.String(), p) {
			t.Errorf("the output holds %q: %.300q", p, out.String())
		}
	}
}

// The upstream settings' defaults are their packages' own.
func TestLoadConfigDefaultsFromOwners(t *testing.T) {
	cfg, err := loadConfig([]string{"--allow-unauthenticated"}, envMap(map[string]string{"GITHUB_TOKEN": testToken}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := upstream.DefaultPacing()
	want.MaxQueue, want.MaxQueueWait = defaultUpstreamMaxQueue, defaultMaxQueueWait // the broker's own bounds (shedding.go)
	if got := cfg.UpstreamPacing(); got != want {
		t.Errorf("UpstreamPacing() = %+v, want upstream.DefaultPacing() %+v", got, want)
	}
	for _, c := range []struct{ name, got, want string }{
		{"UpstreamURL", cfg.UpstreamURL, upstream.DefaultBaseURL},
		{"UpstreamAPIVersionActions", cfg.UpstreamAPIVersionActions, upstream.DefaultAPIVersionActions},
		{"UpstreamAPIVersionAgents", cfg.UpstreamAPIVersionAgents, upstream.DefaultAPIVersionAgents},
		{"KeyTTL", cfg.KeyTTL.String(), service.DefaultKeyTTL.String()},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
}

// The pacing flags are checked by upstream.Pacing.Validate, and their
// errors are its rules phrased with the flag's name.
func TestPacingFlagErrors(t *testing.T) {
	withToken := envMap(map[string]string{"GITHUB_TOKEN": testToken})
	for _, tt := range []struct {
		arg   string
		flag  string
		bad   func(*upstream.Pacing)
		value string
	}{
		{"--upstream-max-in-flight=101", "--upstream-max-in-flight", func(p *upstream.Pacing) { p.MaxInFlight = 101 }, "101"},
		{"--upstream-max-in-flight=0", "--upstream-max-in-flight", func(p *upstream.Pacing) { p.MaxInFlight = 0 }, "0"},
		{"--upstream-write-interval=-2s", "--upstream-write-interval", func(p *upstream.Pacing) { p.WriteInterval = -2 * time.Second }, "-2s"},
		{"--upstream-points-per-minute=4", "--upstream-points-per-minute", func(p *upstream.Pacing) { p.PointsPerMinute = 4 }, "4"},
		{"--upstream-points-per-minute=-1", "--upstream-points-per-minute", func(p *upstream.Pacing) { p.PointsPerMinute = -1 }, "-1"},
		{"--upstream-cpu-time-per-minute=-1s", "--upstream-cpu-time-per-minute", func(p *upstream.Pacing) { p.CPUPerMinute = -time.Second }, "-1s"},
		{"--upstream-max-attempts=0", "--upstream-max-attempts", func(p *upstream.Pacing) { p.MaxAttempts = 0 }, "0"},
		{"--upstream-max-attempts=21", "--upstream-max-attempts", func(p *upstream.Pacing) { p.MaxAttempts = 21 }, "21"},
	} {
		t.Run(tt.arg, func(t *testing.T) {
			p := upstream.DefaultPacing()
			tt.bad(&p)
			var pe *upstream.PacingError
			if !errors.As(p.Validate(), &pe) {
				t.Fatalf("upstream.Pacing.Validate accepts what %s sets", tt.arg)
			}
			_, err := loadConfig([]string{tt.arg, "--allow-unauthenticated"}, withToken, io.Discard)
			if err == nil {
				t.Fatal("loadConfig: no error")
			}
			if want := tt.flag + " " + pe.Rule + "; got " + tt.value; err.Error() != want {
				t.Errorf("error %q, want %q", err, want)
			}
			if pacingFlag(pe.Field) != tt.flag {
				t.Errorf("pacingFlag(%q) = %q, want %q", pe.Field, pacingFlag(pe.Field), tt.flag)
			}
		})
	}
}

func TestLoadConfigHelp(t *testing.T) {
	var out bytes.Buffer
	_, err := loadConfig([]string{"-h"}, envMap(nil), &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("loadConfig -h: err = %v, want flag.ErrHelp", err)
	}
	for _, w := range []string{"-grpc-addr", "-upstream-token-file", "GITHUB_TOKEN", "SECRETBROKER_GRPC_ADDR", "2026-03-10", "--version"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("usage does not mention %q:\n%s", w, out.String())
		}
	}
}

// TestStartLineShowsEveryFlag: the configuration the start-up line logs
// (LogValue) has every flag's setting, under the flag's name with
// underscores or, for the few shown otherwise, the key below; a flag added
// without its entry fails here.
func TestStartLineShowsEveryFlag(t *testing.T) {
	shownAs := map[string]string{
		"audit-hmac-key-file":         "audit_hmac", // whether there is a key
		"state-hmac-key-file":         "state_hmac_key",
		"redis-url":                   "redis", // the URL in use, masked
		"redis-url-file":              "redis",
		"github-app-id":               "github_app.id",
		"github-app-private-key-file": "github_app.private_key_file",
		"github-app-installation-id":  "github_app.installation_id",
		"dev-github-app":              "github_app.dev",
	}
	cfg, err := loadConfig([]string{"--allow-unauthenticated"}, envMap(map[string]string{"GITHUB_TOKEN": testToken}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]bool{}
	var walk func(prefix string, attrs []slog.Attr)
	walk = func(prefix string, attrs []slog.Attr) {
		for _, a := range attrs {
			v := a.Value.Resolve()
			if v.Kind() == slog.KindGroup {
				walk(prefix+a.Key+".", v.Group())
				continue
			}
			keys[prefix+a.Key] = true
		}
	}
	walk("", cfg.LogValue().Group())
	newFlagSet(&Config{}, io.Discard).VisitAll(func(f *flag.Flag) {
		key, ok := shownAs[f.Name]
		if !ok {
			key = strings.ReplaceAll(f.Name, "-", "_")
		}
		if !keys[key] {
			t.Errorf("the start-up line does not show --%s (no %q)", f.Name, key)
		}
	})
}

// TestConfigNeverShowsToken formats a configuration every way a log line or
// an error might, and looks for the token.
func TestConfigNeverShowsToken(t *testing.T) {
	cfg, err := loadConfig([]string{"--allow-unauthenticated"}, envMap(map[string]string{"GITHUB_TOKEN": testToken}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if string(cfg.UpstreamToken) != testToken {
		t.Fatal("token not loaded")
	}
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	logger.Info("config", slog.Any("config", cfg), slog.Any("token", cfg.UpstreamToken))
	slog.New(slog.NewTextHandler(&logs, nil)).Info("config", "config", cfg, "token", cfg.UpstreamToken)
	js, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	outputs := map[string]string{
		"%v":       fmt.Sprintf("%v", cfg),
		"%+v":      fmt.Sprintf("%+v", cfg),
		"%#v":      fmt.Sprintf("%#v", cfg),
		"%s":       fmt.Sprintf("%s", cfg), //lint:ignore S1025 the %s verb is what is tested
		"token %v": fmt.Sprintf("%v %+v %#v %s %q", cfg.UpstreamToken, cfg.UpstreamToken, cfg.UpstreamToken, cfg.UpstreamToken, cfg.UpstreamToken),
		"pointer":  fmt.Sprintf("%v %+v", &cfg, &cfg),
		"error":    fmt.Errorf("wrapped: %v", cfg).Error(),
		"slog":     logs.String(),
		"json":     string(js),
	}
	for name, s := range outputs {
		if strings.Contains(s, testToken) {
			t.Errorf("%s output holds the token: %s", name, s)
		}
	}
	if !strings.Contains(outputs["%v"], "[redacted]") {
		t.Errorf("%%v output does not show the token as [redacted]: %s", outputs["%v"])
	}
}

func TestDevAddr(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{":9090", "127.0.0.1:9090", true},
		{":0", "127.0.0.1:0", true},
		{"127.0.0.1:1", "127.0.0.1:1", true},
		{"[::1]:1", "[::1]:1", true},
		{"localhost:1", "localhost:1", true},
		{"0.0.0.0:1", "", false},
		{"[::]:1", "", false},
		{"192.168.1.1:1", "", false},
		{"myhost:1", "", false},
		{"nohostport", "", false},
	}
	for _, tt := range tests {
		got, err := devAddr("--grpc-addr", tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("devAddr(%q) = %q, %v; want %q, ok %t", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

// TestUnknownEnvironmentVariablesWarned checks that a SECRETBROKER_*
// variable no flag reads (a misspelling, most likely) is named in a
// warning, and that its value never is.
func TestUnknownEnvironmentVariablesWarned(t *testing.T) {
	const planted = "planted-value-7f3a"
	tests := []struct {
		name    string
		environ []string
		want    []string
	}{
		{name: "none", environ: []string{"PATH=/bin", "HOME=/root"}},
		{name: "flag variables", environ: []string{"SECRETBROKER_GRPC_ADDR=:9090", "SECRETBROKER_CALLERS_FILE=/etc/c.yaml", "SECRETBROKER_DEV=true"}},
		{name: "secretbrokerctl's", environ: []string{"SECRETBROKER_ADDR=broker:9090", "SECRETBROKER_TOKEN=" + planted}},
		{
			name:    "misspelt",
			environ: []string{"SECRETBROKER_CALLER_FILE=" + planted, "SECRETBROKER_GRPC_ADDR=:9090", "SECRETBROKER_GRPCADDR=" + planted, "SECRETBROKER_CALLER_FILE=again"},
			want:    []string{"SECRETBROKER_CALLER_FILE", "SECRETBROKER_GRPCADDR"},
		},
		{name: "prefix alone, and another prefix", environ: []string{"SECRETBROKER_=" + planted, "XSECRETBROKER_GRPC_ADDR=x"}, want: []string{"SECRETBROKER_"}},
		{name: "lower case is another variable", environ: []string{"secretbroker_grpc_addr=:1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := unknownEnv(tt.environ); !slices.Equal(got, tt.want) {
				t.Errorf("unknownEnv = %q, want %q", got, tt.want)
			}
			var logs bytes.Buffer
			warnUnknownEnv(slog.New(slog.NewJSONHandler(&logs, nil)), tt.environ)
			if strings.Contains(logs.String(), planted) {
				t.Errorf("the warning shows a value: %s", logs.String())
			}
			lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
			if len(tt.want) == 0 {
				if logs.Len() != 0 {
					t.Errorf("warned with nothing to warn about: %s", logs.String())
				}
				return
			}
			if len(lines) != len(tt.want) {
				t.Fatalf("%d warnings, want %d: %s", len(lines), len(tt.want), logs.String())
			}
			for i, name := range tt.want {
				if !strings.Contains(lines[i], `"level":"WARN"`) || !strings.Contains(lines[i], `"variable":"`+name+`"`) {
					t.Errorf("warning %d = %s, want a WARN naming %s", i, lines[i], name)
				}
			}
		})
	}
}

// TestLoadConfigHelpDefaults checks the defaults --help shows: each
// flag's entry names its default once, and a flag whose zero value is not
// its default (--dev-limits, on) still shows it. README's table is checked
// against the flags by TestREADMEConfigurationTable.
func TestLoadConfigHelpDefaults(t *testing.T) {
	var out bytes.Buffer
	if _, err := loadConfig([]string{"-h"}, envMap(nil), &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("loadConfig -h: err = %v, want flag.ErrHelp", err)
	}
	// One entry per flag: "  -name ..." and its indented usage lines.
	entries := map[string]string{}
	name := ""
	for line := range strings.Lines(out.String()) {
		if rest, ok := strings.CutPrefix(line, "  -"); ok {
			name, _, _ = strings.Cut(strings.TrimSpace(rest), " ")
		}
		if name != "" {
			entries[name] += line
		}
	}
	for _, tt := range []struct {
		flag, want string
	}{
		{"dev-limits", "(default on)"},
		{"log-format", `(default "json")`},
		{"grpc-addr", `(default ":9090")`},
		{"upstream-write-interval", "(default 1s)"},
	} {
		t.Run(tt.flag, func(t *testing.T) {
			e, ok := entries[tt.flag]
			if !ok {
				t.Fatalf("no entry for -%s in:\n%s", tt.flag, out.String())
			}
			if !strings.Contains(e, tt.want) {
				t.Errorf("-%s does not show %s:\n%s", tt.flag, tt.want, e)
			}
			if n := strings.Count(e, "(default"); n != 1 {
				t.Errorf("-%s names a default %d times:\n%s", tt.flag, n, e)
			}
		})
	}
}

// TestOperationsPerCaller: --caller-max-operations reaches the runner as
// it is, its default is the runner's own, and 0 (off) is no bound at all.
func TestOperationsPerCaller(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
		want int
	}{
		{"default", nil, operation.DefaultMaxPerCaller},
		{"flag", []string{"--caller-max-operations=2"}, 2},
		{"off", []string{"--caller-max-operations=0"}, math.MaxInt},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := loadConfig(append([]string{"--allow-unauthenticated"}, tt.args...), envMap(map[string]string{"GITHUB_TOKEN": testToken}), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.OperationsPerCaller(); got != tt.want {
				t.Errorf("OperationsPerCaller() = %d, want %d", got, tt.want)
			}
		})
	}
}

// redactURL shows a URL without what may be a credential: its user
// information, query and fragment, or nothing of it when an "@" outside
// the user information says a password's "/", "?" or "#" was not escaped
// (url.Parse then reads the password's start as the port).
func TestRedactURL(t *testing.T) {
	const planted = "PLANTED-url-pw"
	for _, tt := range []struct{ raw, want string }{
		{"https://jwks.example/keys", "https://jwks.example/keys"},
		{"https://u:" + planted + "@jwks.example/keys", "https://redacted@jwks.example/keys"},
		{"https://jwks.example/keys?token=" + planted, "https://jwks.example/keys?redacted"},
		{"https://jwks.example/keys#" + planted, "https://jwks.example/keys#redacted"},
		{"https://u:4321/" + planted + "@jwks.example/keys", hiddenURL},
		{"https://u:4321?" + planted + "@jwks.example/keys", hiddenURL},
		{"https://u:4321#" + planted + "@jwks.example/keys", hiddenURL},
		// An "@" in the user name and a "/", "?" or "#" in the password:
		// url.Parse ends the user information at the user name's "@", and
		// the password's start becomes the port. Without the "/", "?" or
		// "#", the last "@" ends it, as written.
		{"https://@:4321#" + planted + "@jwks.example/keys", hiddenURL},
		{"https://me@corp:4321#" + planted + "@jwks.example/keys", hiddenURL},
		{"https://me@corp:" + planted + "@jwks.example/keys", "https://redacted@jwks.example/keys"},
		{"https://u:p@ss" + planted + "@jwks.example/keys", "https://redacted@jwks.example/keys"},
		{"https://u:p@ss/" + planted + "@jwks.example/keys", hiddenURL},
		{"https://u:4321@jwks.example/keys#@" + planted, hiddenURL},
		{"https://u:%zz" + planted + "@jwks.example/keys", "(invalid URL)"},
	} {
		if got := redactURL(tt.raw); got != tt.want {
			t.Errorf("redactURL(%q) = %q, want %q", tt.raw, got, tt.want)
		}
	}
}
