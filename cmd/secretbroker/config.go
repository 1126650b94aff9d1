package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"golang.org/x/net/http/httpguts"

	"github.com/secretbroker/secretbroker/cmd/internal/flagerr"
	"github.com/secretbroker/secretbroker/service"
	"github.com/secretbroker/secretbroker/service/operation"
	"github.com/secretbroker/secretbroker/upstream"
	"github.com/secretbroker/secretbroker/upstream/credential"
)

// envPrefix is the prefix of the environment variable that matches each
// flag: --grpc-addr is SECRETBROKER_GRPC_ADDR.
const envPrefix = "SECRETBROKER_"

// Environment variables read besides the SECRETBROKER_* ones.
const (
	// envGitHubToken holds the GitHub token when --upstream-token-file is
	// not given.
	envGitHubToken = "GITHUB_TOKEN"
	// The OTEL_* variables that turn on trace export are in
	// traceexport.go.
)

// Config is the broker's whole configuration. Every field but UpstreamToken
// and TracesExporter is set by a flag or, when the flag is absent, by the
// matching SECRETBROKER_* environment variable; a flag wins over the
// environment, the environment over the default.
type Config struct {
	// GRPCAddr is the gRPC listen address. Flag --grpc-addr. Default
	// ":9090". In dev mode it binds loopback only: ":9090" becomes
	// "127.0.0.1:9090".
	GRPCAddr string

	// HTTPAddr is the JSON gateway's listen address. Flag --http-addr.
	// Default ":8080". Loopback only in dev mode, as GRPCAddr.
	HTTPAddr string

	// AdminAddr is the admin listener's address: plain HTTP serving
	// /healthz, /readyz and, with AdminPprof, /debug/pprof/. Flag
	// --admin-addr. Default ":9091". Loopback only in dev mode, as
	// GRPCAddr. It serves no secret data, so it may listen on any address
	// without caller authentication.
	AdminAddr string

	// AdminPprof serves Go's profiler under /debug/pprof/ on the admin
	// listener. Flag --admin-pprof. Default false.
	AdminPprof bool

	// MetricsCallerLabel adds the caller's identity as a caller label to
	// secretbroker_authz_decisions_total and
	// secretbroker_batch_items_total. Flag --metrics-caller-label. Default
	// false: callers are unbounded, and each one multiplies those series.
	MetricsCallerLabel bool

	// UpstreamURL is GitHub's REST API. Flag --upstream-url. Default
	// upstream.DefaultBaseURL, "https://api.github.com"; GitHub Enterprise
	// Server is "https://HOST/api/v3". https, or http on a loopback host
	// only. An error with Dev (refuseDevIgnored).
	UpstreamURL string

	// UpstreamTokenFile is the file that holds the GitHub token. Flag
	// --upstream-token-file. Default: none, and the token is read from
	// GITHUB_TOKEN.
	UpstreamTokenFile string

	// UpstreamToken is the GitHub token, read from UpstreamTokenFile
	// (surrounding white space trimmed) or else from GITHUB_TOKEN. It is
	// never a flag value, and its String() is "[redacted]". Required
	// unless Dev. Default: none.
	UpstreamToken upstream.Token

	// GitHubApp authenticates as a GitHub App instead of with a token;
	// see githubapp.go for its flags.
	GitHubApp GitHubAppConfig

	// UpstreamAPIVersionActions is the X-GitHub-Api-Version sent with
	// Actions requests. Flag --upstream-api-version-actions. Default by
	// UpstreamURL (upstream.ActionsVersionFor): "2026-03-10" for GitHub
	// Enterprise Server (a URL ending in /api/v3) unless
	// UpstreamLegacyRoutes, else "2022-11-28".
	UpstreamAPIVersionActions string

	// UpstreamAPIVersionAgents is the X-GitHub-Api-Version sent with Agents
	// requests. Flag --upstream-api-version-agents. Default
	// upstream.DefaultAPIVersionAgents, "2026-03-10".
	UpstreamAPIVersionAgents string

	// UpstreamAllowHTTP lets UpstreamURL be plain http to a host that is
	// not loopback: the token then crosses the network in clear, and
	// anyone on the way can answer with a public key of their own. Flag
	// --upstream-allow-http. Default false.
	UpstreamAllowHTTP bool

	// UpstreamLegacyRoutes selects older GitHub Enterprise Server routes
	// for environment secrets. Flag --upstream-legacy-routes. Default
	// false.
	UpstreamLegacyRoutes bool

	// UpstreamMaxInFlight is the most requests the broker has in flight to
	// GitHub at once. Flag --upstream-max-in-flight. Default 10; between 1
	// and 100 (GitHub's hard limit on concurrent requests).
	//
	// The four pacing settings (UpstreamMaxInFlight, UpstreamWriteInterval,
	// UpstreamPointsPerMinute, UpstreamMaxAttempts) take their defaults
	// from upstream.DefaultPacing() and their rules from
	// upstream.Pacing.Validate; UpstreamPacing combines them.
	UpstreamMaxInFlight int

	// UpstreamWriteInterval is the least time between the starts of two
	// mutating requests (PUT, DELETE), which are also sent one at a time,
	// as GitHub's best practices ask. Flag --upstream-write-interval.
	// Default 1s; 0 sends them concurrently and unspaced (for GitHub
	// Enterprise Server with rate limits turned off).
	UpstreamWriteInterval time.Duration

	// UpstreamPointsPerMinute is the budget of GitHub's secondary rate
	// limit in points per minute (GET 1 point, PUT and DELETE 5), never
	// exceeded in any 60 s window. Flag --upstream-points-per-minute.
	// Default 900, GitHub's limit; 0 turns the budget off.
	UpstreamPointsPerMinute int

	// UpstreamCPUTimePerMinute is the budget of response time in any 60 s
	// window, for GitHub's secondary limit of 90 s of CPU time per 60 s
	// (which GitHub says response time roughly estimates). Flag
	// --upstream-cpu-time-per-minute. Default 80s; 0 turns it off.
	UpstreamCPUTimePerMinute time.Duration

	// SharedPacing holds the content-creation limits and the Redis the
	// replicas share their pacing through (sharedpacing.go).
	SharedPacing

	// Shedding holds the bounds on queues under overload (shedding.go).
	Shedding

	// UpstreamMaxAttempts is how many times one request is tried when
	// GitHub answers with a rate limit or a 5xx, or the connection drops.
	// Flag --upstream-max-attempts. Default 5; between 1 and 20.
	UpstreamMaxAttempts int

	// KeyTTL is how long a scope's public key is used before it is
	// revalidated with a conditional request (If-None-Match), which costs
	// no primary quota when the key is unchanged. Flag --key-ttl. Default
	// service.DefaultKeyTTL, 10m.
	KeyTTL time.Duration

	// Dev runs the broker against the embedded GitHub emulator, seeded with
	// demo data, with both listeners on loopback. Flag --dev. Default
	// false.
	Dev bool

	// DevLimitsOff turns GitHub's limits off in dev mode: the embedded
	// emulator's rate limits and, unless their flags are given, the
	// broker's pacing toward it (devlimits.go), for load tests. Flag
	// --dev-limits=on|off. Default on (DevLimitsOff false); off needs --dev.
	DevLimitsOff bool

	// ShutdownTimeout is how long a shutdown waits for in-flight calls
	// before it cuts them. Flag --shutdown-timeout. Default 15s.
	ShutdownTimeout time.Duration

	// GRPCMaxConnectionAge is how long a client's gRPC connection lives
	// (give or take a tenth, grpc-go's jitter) before the broker asks the
	// client to open another (GOAWAY), so that long-lived clients spread
	// over replicas added since; the calls in progress on it go on for up
	// to grpcMaxConnectionAgeGrace. Zero: for ever; else at least a
	// minute (minGRPCMaxConnectionAge). Flag
	// --grpc-max-connection-age. Default 30m.
	GRPCMaxConnectionAge time.Duration

	// LogLevel is the lowest level logged. Flag --log-level. Default info.
	LogLevel slog.Level

	// LogFormat is how log lines are written: "json" (one JSON object a
	// line) or "text" (slog's key=value lines). Flag --log-format. Default
	// json; text in dev mode unless given.
	LogFormat string
	// logFormatGiven records that --log-format (or its variable) was set.
	logFormatGiven bool

	// TLSCertFile and TLSKeyFile are the listeners' certificate and key
	// (PEM); with them both listeners serve TLS only. Flags --tls-cert-file
	// and --tls-key-file. Default: none, plaintext. The files are re-read
	// when they change.
	TLSCertFile string
	TLSKeyFile  string

	// TLSClientCAFile is the CA bundle (PEM) that client certificates must
	// chain to; with it every connection needs a valid client certificate,
	// which names the caller (x509:...). Flag --tls-client-ca-file; needs
	// TLSCertFile. Default: none.
	TLSClientCAFile string

	// CallersFile lists the static bearer-token callers (YAML, each with the
	// hex SHA-256 of its token; token:NAME). Flag --callers-file. Default:
	// none.
	CallersFile string

	// JWTIssuer, JWTAudience and one of JWTJWKSURL or JWTJWKSFile turn on
	// JWT bearer tokens (for example Kubernetes service-account tokens;
	// jwt:SUB). Flags --jwt-issuer, --jwt-audience, --jwt-jwks-url,
	// --jwt-jwks-file. Default: none.
	JWTIssuer   string
	JWTAudience string
	JWTJWKSURL  string
	JWTJWKSFile string

	// AllowUnauthenticated lets the broker serve every call without
	// authentication on a non-loopback address. Flag
	// --allow-unauthenticated. Default false.
	AllowUnauthenticated bool

	// ReflectionUnauthenticated serves gRPC reflection to callers without
	// credentials when authentication is configured. Flag
	// --reflection-unauthenticated. Default false.
	ReflectionUnauthenticated bool

	// PolicyFile is the authorization policy (YAML), reloaded on SIGHUP and
	// within 10 s of a change. Flag --policy-file. Default: none, and with
	// authentication configured every call is denied.
	PolicyFile string

	// AuditLog is the audit trail's file, or "-" for standard error. Flag
	// --audit-log. Default: none, no trail.
	AuditLog string

	// AuditHMACKeyFile holds the key (raw bytes, at least 32) under which
	// plaintext values are HMAC'd in audit records. Flag
	// --audit-hmac-key-file. Default: none, no value_hmac.
	AuditHMACKeyFile string

	// AuditReads records successful reads too. Flag --audit-reads; needs
	// AuditLog. Default false.
	AuditReads bool

	// CallerRPS and CallerBurst are each caller's inbound rate limit, in
	// calls per second and burst. Flags --caller-rps and --caller-burst.
	// Defaults 50 and 100; 0 turns the limit off; off in dev mode unless
	// --caller-rps is given.
	CallerRPS   float64
	CallerBurst int
	// callerRPSGiven records that --caller-rps (or its variable) was set.
	callerRPSGiven bool

	// CallerMaxConcurrent is the most calls one caller may have in progress
	// at once. Flag --caller-max-concurrent. Default 32; 0 turns it off.
	CallerMaxConcurrent int

	// CallerMaxOperations is the most unfinished long-running operations
	// (async batches and syncs) one caller may have on this replica:
	// one more is refused with RESOURCE_EXHAUSTED
	// (operation.Options.MaxPerCaller). Without authentication a caller
	// is counted by its IP address, as --caller-max-concurrent and
	// --caller-rps count it (through the gateway, the HTTP client's).
	// Each replica counts the operations its own runner runs or queues
	// (those it resumed or took over from a replica that died included),
	// not the shared state in Redis: with N replicas a caller may have up
	// to N times the bound. Flag --caller-max-operations. Default 100
	// (operation.DefaultMaxPerCaller); 0 turns the bound off.
	CallerMaxOperations int

	// MaxConcurrentCalls is the most calls in progress at once across all
	// callers. Flag --max-concurrent-calls. Default 512; 0 turns it off.
	MaxConcurrentCalls int

	// MaxInflightBytes bounds the bytes of requests in progress at once
	// across all callers, per listener (byteBudget); one caller may hold
	// half of it, at least maxRequestBytes. Flag --max-inflight-bytes.
	// Default 32 MiB; at least maxRequestBytes.
	MaxInflightBytes int64

	// GCHeapFloor is the heap size below which the collector does not run
	// (cmd/internal/heapfloor): after each collection GOGC is set so that the next
	// starts when the heap reaches it, never below Go's 100, and it is
	// held to a quarter of GOMEMLIMIT. Flag --gc-heap-floor. Default
	// 64 MiB; 0, or GOGC set in the environment, leaves Go's collector
	// as it is.
	GCHeapFloor int64
	// gogcSet records that GOGC is in the environment: the operator's
	// choice, which the heap floor leaves alone.
	gogcSet bool

	// TracesExporter is the span exporter the environment asks for:
	// OTEL_TRACES_EXPORTER ("otlp", "console" or "none") when set, else
	// "otlp" when OTEL_EXPORTER_OTLP_ENDPOINT or
	// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set. Not a flag. Default: "",
	// nothing is exported. The exporter reads its other settings
	// (protocol, endpoint, headers) from the OTEL_* variables itself.
	TracesExporter string
	// TracesSampler is the sampler of the exported spans:
	// OTEL_TRACES_SAMPLER, lower-cased, always behind the parent's
	// decision (samplerFor). Not a flag. Default: parentbased_always_on.
	// TracesSamplerRatio is the ratio of the trace id ratio samplers,
	// OTEL_TRACES_SAMPLER_ARG (default 1).
	TracesSampler      string
	TracesSamplerRatio float64

	// MetricsExporter is where metrics are pushed besides /metrics, which
	// always serves them: OTEL_METRICS_EXPORTER ("otlp", "console" or
	// "none"). Not a flag. Default: "", none; unlike traces, an OTLP
	// endpoint alone does not push metrics. The exporter reads its other
	// settings (protocol, endpoint, headers, OTEL_METRIC_EXPORT_INTERVAL)
	// from the OTEL_* variables itself.
	MetricsExporter string

	// StateDir is the directory of the broker's state file (bbolt). Flag
	// --state-dir. Default: none, the state is kept in memory and lost on
	// exit (losing it costs writes, never correctness).
	StateDir string
	// StateHMACKeyFile holds the server key (raw bytes, at least 32) of the
	// state's fingerprints. Flag --state-hmac-key-file. Default: none, a
	// random key is generated and kept in the state store.
	StateHMACKeyFile string
	// StateLockTimeout is how long a start waits for the lock on the state
	// file when another process holds it (a broker on the same --state-dir
	// still stopping). Flag --state-lock-timeout. Default: 2s
	// (state.DefaultLockTimeout). A signal ends the wait at once.
	StateLockTimeout time.Duration

	// spanExporter, when set (tests only), receives the spans instead of
	// the exporter TracesExporter names.
	spanExporter sdktrace.SpanExporter
}

// Defaults, documented on Config. The upstream settings' defaults are
// their packages' own: upstream.DefaultPacing() for the pacing flags.
const (
	defaultGRPCAddr                 = ":9090"
	defaultHTTPAddr                 = ":8080"
	defaultAdminAddr                = ":9091"
	defaultUpstreamURL              = upstream.DefaultBaseURL
	defaultUpstreamAPIVersionAgents = upstream.DefaultAPIVersionAgents
	defaultShutdownTimeout          = 15 * time.Second
	defaultGRPCMaxConnectionAge     = 30 * time.Minute
	// minGRPCMaxConnectionAge is --grpc-max-connection-age's least value
	// but 0.
	minGRPCMaxConnectionAge    = time.Minute
	defaultKeyTTL              = service.DefaultKeyTTL
	defaultLogLevel            = slog.LevelInfo
	defaultLogFormat           = logFormatJSON
	defaultCallerRPS           = 50
	defaultCallerBurst         = 100
	defaultCallerMaxConcurrent = 32
	defaultCallerMaxOperations = operation.DefaultMaxPerCaller
	defaultMaxConcurrentCalls  = 512
	defaultMaxInflightBytes    = 32 << 20
	defaultGCHeapFloor         = 64 << 20
)

// newFlagSet defines the broker's flags, each setting its field of cfg,
// with usage written to output.
func newFlagSet(cfg *Config, output io.Writer) *flag.FlagSet {
	pacing := upstream.DefaultPacing()
	fs := flag.NewFlagSet("secretbroker", flag.ContinueOnError)
	fs.SetOutput(output)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `Usage: secretbroker [flags]

secretbroker writes GitHub Actions and Agents secrets for internal callers,
over gRPC and a JSON gateway. Every flag has a matching environment variable:
--grpc-addr is %sGRPC_ADDR, and so on; a flag wins over the environment.
The GitHub token is read from --upstream-token-file, else from %s.
secretbroker --version prints the build's version.

Flags:
`, envPrefix, envGitHubToken)
		fs.PrintDefaults()
	}

	fs.StringVar(&cfg.GRPCAddr, "grpc-addr", defaultGRPCAddr,
		"gRPC listen `address` (loopback only with --dev)")
	fs.StringVar(&cfg.HTTPAddr, "http-addr", defaultHTTPAddr,
		"JSON gateway listen `address` (loopback only with --dev)")
	fs.StringVar(&cfg.AdminAddr, "admin-addr", defaultAdminAddr,
		"admin listen `address`, plain HTTP: /healthz, /readyz, /debug/pprof/ with --admin-pprof (loopback only with --dev)")
	fs.BoolVar(&cfg.AdminPprof, "admin-pprof", false,
		"serve Go's profiler under /debug/pprof/ on the admin listener")
	fs.BoolVar(&cfg.MetricsCallerLabel, "metrics-caller-label", false,
		"label secretbroker_authz_decisions_total and secretbroker_batch_items_total with the caller's identity (unbounded: one set of series per caller)")
	fs.StringVar(&cfg.UpstreamURL, "upstream-url", defaultUpstreamURL,
		"GitHub's REST API `URL`, https (http on a loopback host only); https://HOST/api/v3 for GitHub Enterprise Server")
	fs.StringVar(&cfg.UpstreamTokenFile, "upstream-token-file", "",
		"`file` holding the GitHub token (default: the "+envGitHubToken+" environment variable)")
	registerGitHubAppFlags(fs, cfg)
	registerStateFlags(fs, cfg)
	fs.StringVar(&cfg.UpstreamAPIVersionActions, "upstream-api-version-actions", "",
		"X-GitHub-Api-Version for Actions secrets (default "+upstream.DefaultAPIVersionActionsGHES+
			" for GitHub Enterprise Server, an --upstream-url ending in /api/v3, without --upstream-legacy-routes; else "+
			upstream.DefaultAPIVersionActions+")")
	fs.StringVar(&cfg.UpstreamAPIVersionAgents, "upstream-api-version-agents", defaultUpstreamAPIVersionAgents,
		"X-GitHub-Api-Version for Agents secrets")
	fs.BoolVar(&cfg.UpstreamAllowHTTP, "upstream-allow-http", false,
		"let --upstream-url be plain http to a host that is not loopback (the token crosses the network in clear)")
	fs.BoolVar(&cfg.UpstreamLegacyRoutes, "upstream-legacy-routes", false,
		"older GitHub Enterprise Server: environment secrets under /repositories/{id}/environments/...")
	fs.IntVar(&cfg.UpstreamMaxInFlight, "upstream-max-in-flight", pacing.MaxInFlight,
		fmt.Sprintf("most requests in flight to GitHub at once (1 to %d)", upstream.MaxInFlightLimit))
	fs.DurationVar(&cfg.UpstreamWriteInterval, "upstream-write-interval", pacing.WriteInterval,
		"least time between the starts of two PUT or DELETE requests, sent one at a time; 0 sends them unspaced and concurrently")
	fs.IntVar(&cfg.UpstreamPointsPerMinute, "upstream-points-per-minute", pacing.PointsPerMinute,
		fmt.Sprintf("GitHub's secondary rate limit budget in any 60 s window (GET 1 point, PUT/DELETE 5); 0 turns it off, else at least %d",
			upstream.MinPointsPerMinute))
	fs.DurationVar(&cfg.UpstreamCPUTimePerMinute, "upstream-cpu-time-per-minute", pacing.CPUPerMinute,
		"budget of response time in any 60 s window, for GitHub's secondary limit of 90 s of CPU time a minute (a request in flight counts its time so far, at least the longest recent response time); 0 turns it off")
	fs.IntVar(&cfg.UpstreamMaxAttempts, "upstream-max-attempts", pacing.MaxAttempts,
		fmt.Sprintf("tries per GitHub request on a rate limit, a 5xx or a dropped connection (1 to %d)", upstream.MaxAttemptsLimit))
	cfg.SharedPacing.register(fs, pacing)
	cfg.Shedding.register(fs)
	fs.DurationVar(&cfg.KeyTTL, "key-ttl", defaultKeyTTL,
		"how long a public key is used before it is revalidated with If-None-Match")
	fs.BoolVar(&cfg.Dev, "dev", false,
		"run against the embedded GitHub emulator with demo data; listen on loopback only")
	fs.Var(onOff{&cfg.DevLimitsOff}, "dev-limits",
		"with --dev, on or off: off lifts the emulator's GitHub rate limits and the broker's write spacing, points and CPU-time budgets and in-flight cap toward it (unless those flags are given), for load tests")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", defaultShutdownTimeout,
		"how long a shutdown waits for in-flight calls before it cuts them")
	fs.DurationVar(&cfg.GRPCMaxConnectionAge, "grpc-max-connection-age", defaultGRPCMaxConnectionAge,
		"how long a client's gRPC connection lives before the broker asks the client to reconnect (so that clients spread over new replicas; calls in progress finish), at least 1m; 0 for ever")
	fs.TextVar(&cfg.LogLevel, "log-level", defaultLogLevel,
		"lowest `level` logged: debug, info, warn or error")
	fs.StringVar(&cfg.LogFormat, "log-format", defaultLogFormat,
		"log line `format`: json or text; text with --dev unless given")

	fs.StringVar(&cfg.TLSCertFile, "tls-cert-file", "",
		"`file` with the listeners' TLS certificate (PEM); both listeners then serve TLS only")
	fs.StringVar(&cfg.TLSKeyFile, "tls-key-file", "",
		"`file` with the TLS certificate's private key (PEM)")
	fs.StringVar(&cfg.TLSClientCAFile, "tls-client-ca-file", "",
		"`file` with the CA bundle client certificates must chain to; every connection then needs one (mTLS)")
	fs.StringVar(&cfg.CallersFile, "callers-file", "",
		"`file` (YAML) listing bearer-token callers by the SHA-256 of their token")
	fs.StringVar(&cfg.JWTIssuer, "jwt-issuer", "",
		"accept JWT bearer tokens from this `issuer` (with --jwt-audience and --jwt-jwks-url or --jwt-jwks-file)")
	fs.StringVar(&cfg.JWTAudience, "jwt-audience", "",
		"the `audience` JWT bearer tokens must name")
	fs.StringVar(&cfg.JWTJWKSURL, "jwt-jwks-url", "",
		"`URL` of the JWT issuer's JWKS; if it cannot be loaded at start, it is retried in the background, and until it loads JWTs are refused (UNAVAILABLE) and /readyz is 503")
	fs.StringVar(&cfg.JWTJWKSFile, "jwt-jwks-file", "",
		"`file` with the JWT issuer's JWKS, re-read when it changes")
	fs.BoolVar(&cfg.AllowUnauthenticated, "allow-unauthenticated", false,
		"serve every call without authentication even on a non-loopback address")
	fs.BoolVar(&cfg.ReflectionUnauthenticated, "reflection-unauthenticated", false,
		"serve gRPC reflection to callers without credentials")
	fs.StringVar(&cfg.PolicyFile, "policy-file", "",
		"`file` (YAML) with the authorization rules; reloaded on SIGHUP and when it changes")
	fs.StringVar(&cfg.AuditLog, "audit-log", "",
		"audit trail `file` (JSON lines, kept 0600), or - for standard error")
	fs.StringVar(&cfg.AuditHMACKeyFile, "audit-hmac-key-file", "",
		"`file` with the key (at least 32 bytes) plaintext values are HMAC'd under in audit records")
	fs.BoolVar(&cfg.AuditReads, "audit-reads", false,
		"record successful reads in the audit trail too (needs --audit-log)")
	fs.Float64Var(&cfg.CallerRPS, "caller-rps", defaultCallerRPS,
		"each caller's calls per second; 0 turns the limit off (off with --dev unless given)")
	fs.IntVar(&cfg.CallerBurst, "caller-burst", defaultCallerBurst,
		"each caller's burst of calls above --caller-rps")
	fs.IntVar(&cfg.CallerMaxConcurrent, "caller-max-concurrent", defaultCallerMaxConcurrent,
		"most calls one caller may have in progress; 0 turns the limit off")
	fs.IntVar(&cfg.CallerMaxOperations, "caller-max-operations", defaultCallerMaxOperations,
		"most unfinished async operations (async batches and syncs) one caller may have on this replica; one more is refused with RESOURCE_EXHAUSTED. "+
			"Without authentication (plain --dev, or no caller credentials configured) a caller is counted by its IP address, as for --caller-max-concurrent. "+
			"Each replica counts the operations it runs, also with Redis: with N replicas a caller may have N times the bound. 0 turns the bound off")
	fs.IntVar(&cfg.MaxConcurrentCalls, "max-concurrent-calls", defaultMaxConcurrentCalls,
		"most calls in progress across all callers; 0 turns the limit off")
	fs.Int64Var(&cfg.MaxInflightBytes, "max-inflight-bytes", defaultMaxInflightBytes,
		"most `bytes` of requests in progress at once across all callers, per listener; one caller may hold half, at least the largest request (16 MiB)")
	fs.Int64Var(&cfg.GCHeapFloor, "gc-heap-floor", defaultGCHeapFloor,
		"heap `bytes` below which Go's collector does not run (GOGC retuned after each collection, never below 100; held to a quarter of GOMEMLIMIT); 0, or GOGC in the environment, leaves the collector as it is")

	return fs
}

// loadConfig builds the configuration from the command-line arguments
// (without the program name) and the environment, as seen through
// lookupEnv (os.LookupEnv outside tests). Usage and flag errors are written
// to output. It returns flag.ErrHelp when -h or --help was asked for.
func loadConfig(args []string, lookupEnv func(string) (string, bool), output io.Writer) (Config, error) {
	var cfg Config
	fs := newFlagSet(&cfg, output)
	// flag's own errors quote the argument they refuse, which may be a
	// secret given by mistake: flagerr tells them again without it.
	if err := flagerr.Parse(fs, args, 1, wantedForm); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(output, err)
		}
		fs.Usage()
		return Config{}, err
	}
	if fs.NArg() > 0 {
		// Not the arguments: one may be a secret given by mistake (a
		// token after a boolean flag, which takes no value).
		return Config{}, fmt.Errorf("unexpected arguments (%d, from the %s argument on; not shown, as one may be a secret): secretbroker takes flags only",
			fs.NArg(), flagerr.Ordinal(len(args)-fs.NArg()+1))
	}

	// The environment fills in each flag that was not given.
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var envErrs []error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] {
			return
		}
		name := envName(f.Name)
		v, ok := lookupEnv(name)
		if !ok {
			return
		}
		if err := f.Value.Set(v); err != nil {
			// Not err, which may quote v (slog.Level's and onOff's do):
			// the value of a variable meant for a file's path or a
			// setting may be a secret put there by mistake.
			envErrs = append(envErrs, fmt.Errorf("environment variable %s: not a valid value for --%s%s", name, f.Name, wantedForm(f)))
		}
	})
	if err := errors.Join(envErrs...); err != nil {
		return Config{}, err
	}
	if err := cfg.refuseCredentials(); err != nil {
		return Config{}, err
	}
	_, rpsFromEnv := lookupEnv(envName("caller-rps"))
	cfg.callerRPSGiven = given["caller-rps"] || rpsFromEnv
	_, cfg.gogcSet = lookupEnv("GOGC")
	_, formatFromEnv := lookupEnv(envName("log-format"))
	cfg.logFormatGiven = given["log-format"] || formatFromEnv
	// --dev-github-app is --dev for everything that depends on it, from
	// here on (validateGitHubApp checks it further).
	cfg.Dev = cfg.Dev || cfg.GitHubApp.Dev
	if err := cfg.refuseDevIgnored(given, lookupEnv); err != nil {
		return Config{}, err
	}
	if err := cfg.applyDevLimits(given, lookupEnv); err != nil {
		return Config{}, err
	}

	var err error
	if cfg.TracesExporter, err = tracesExporterFromEnv(lookupEnv); err != nil {
		return Config{}, err
	}
	if cfg.TracesSampler, cfg.TracesSamplerRatio, err = tracesSamplerFromEnv(lookupEnv); err != nil {
		return Config{}, err
	}
	if cfg.MetricsExporter, err = metricsExporterFromEnv(lookupEnv); err != nil {
		return Config{}, err
	}

	if cfg.UpstreamAPIVersionActions == "" {
		cfg.UpstreamAPIVersionActions = upstream.ActionsVersionFor(cfg.UpstreamURL, cfg.UpstreamLegacyRoutes)
	}
	if err := cfg.readToken(lookupEnv); err != nil {
		return Config{}, err
	}
	if err := cfg.SharedPacing.resolve(lookupEnv); err != nil {
		return Config{}, err
	}
	if err := cfg.validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// devIgnoredFlags are the flags --dev would ignore: it talks to the
// embedded emulator at its own URL with its own token, so a GitHub to
// reach (--upstream-url), a token for it (--upstream-token-file) and plain
// http to it (--upstream-allow-http) mean nothing to it. An operator who
// gives one with --dev most likely meant a real GitHub, and is told so
// rather than served by the emulator.
//
// The other flags --dev changes are deliberate and stay allowed:
// GITHUB_TOKEN is an environment variable a developer's shell often holds
// for other tools, and not a flag (readToken; run logs that it is not
// used); the listen addresses are kept when on loopback and refused
// otherwise (devAddr); --caller-rps and --log-format only change their
// defaults; --allow-unauthenticated changes nothing on the loopback
// addresses --dev binds, as without --dev; the API versions, the legacy
// routes and the pacing flags are used toward the emulator, which honours
// them; the GitHub App flags are refused by validateGitHubApp.
func devIgnoredFlags() []string {
	return []string{"upstream-url", "upstream-token-file", "upstream-allow-http"}
}

// refuseDevIgnored returns an error naming --dev and the first of
// devIgnoredFlags given as a flag or in the environment, when in dev
// mode. given holds the flags given on the command line.
func (c *Config) refuseDevIgnored(given map[string]bool, lookupEnv func(string) (string, bool)) error {
	if !c.Dev {
		return nil
	}
	for _, name := range devIgnoredFlags() {
		_, fromEnv := lookupEnv(envName(name))
		if given[name] || fromEnv {
			return fmt.Errorf("--dev runs against the embedded emulator, with its own URL and token: give no --%s (%s) with it", name, envName(name))
		}
	}
	return nil
}

// wantedForm says what form flag f's value takes, for an error about a
// value that is not of it: flag's own errors ("parse error") do not say,
// and the value itself is not repeated (it may be sensitive).
func wantedForm(f *flag.Flag) string {
	if _, ok := f.Value.(onOff); ok {
		return ": want on or off"
	}
	g, ok := f.Value.(flag.Getter)
	if !ok {
		return ""
	}
	switch g.Get().(type) {
	case *slog.Level: // flag.TextVar's Get
		return ": want debug, info, warn or error"
	case time.Duration:
		return ": want a duration such as 15s, 1m30s or 2h"
	case int, int64, uint, uint64:
		return ": want a whole number"
	case float64:
		return ": want a number"
	case bool:
		return ": want true or false"
	}
	return ""
}

// otherToolsEnv reports whether name is a SECRETBROKER_* variable another
// program reads (secretbrokerctl's address and token), which the broker's
// environment may hold without a mistake.
func otherToolsEnv(name string) bool {
	return name == "SECRETBROKER_ADDR" || name == "SECRETBROKER_TOKEN"
}

// unknownEnv returns the names, sorted, of the SECRETBROKER_* variables
// in environ ("NAME=value" entries, as os.Environ gives them) that no flag
// reads and no other secretbroker program reads either: most likely
// misspelt, and ignored. It returns names only, never a value.
func unknownEnv(environ []string) []string {
	flagEnv := map[string]bool{}
	newFlagSet(&Config{}, io.Discard).VisitAll(func(f *flag.Flag) { flagEnv[envName(f.Name)] = true })
	var unknown []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, envPrefix) && !flagEnv[name] && !otherToolsEnv(name) {
			unknown = append(unknown, name)
		}
	}
	slices.Sort(unknown)
	return slices.Compact(unknown)
}

// warnUnknownEnv logs a warning naming each of unknownEnv(environ).
func warnUnknownEnv(logger *slog.Logger, environ []string) {
	for _, name := range unknownEnv(environ) {
		logger.Warn("ignoring an environment variable no flag reads; is it misspelt? (secretbroker --help lists the flags)",
			slog.String("variable", name))
	}
}

// envName returns the environment variable matching a flag:
// "grpc-addr" is "SECRETBROKER_GRPC_ADDR".
func envName(flagName string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// readToken sets UpstreamToken from UpstreamTokenFile, else from
// GITHUB_TOKEN. Its errors never hold the token.
func (c *Config) readToken(lookupEnv func(string) (string, bool)) error {
	if c.UpstreamTokenFile != "" {
		b, err := os.ReadFile(c.UpstreamTokenFile)
		if err != nil {
			return fmt.Errorf("reading --upstream-token-file: %w", credential.WithoutPath(err))
		}
		tok := strings.TrimSpace(string(b))
		if tok == "" {
			return fmt.Errorf("--upstream-token-file %s is empty", c.UpstreamTokenFile)
		}
		if err := checkTokenWord(tok, "--upstream-token-file "+c.UpstreamTokenFile); err != nil {
			return err
		}
		c.UpstreamToken = upstream.Token(tok)
		return nil
	}
	if v, ok := lookupEnv(envGitHubToken); ok {
		tok := strings.TrimSpace(v)
		// --dev does not use it: a shell's stray GITHUB_TOKEN does not
		// stop it.
		if !c.Dev {
			if err := checkTokenWord(tok, envGitHubToken); err != nil {
				return err
			}
		}
		c.UpstreamToken = upstream.Token(tok)
	}
	return nil
}

// checkTokenWord refuses a token that an Authorization header cannot
// carry: net/http would refuse every request ("invalid header field
// value"), and the broker would retry the credential check for ever
// without becoming ready. source names where the token came from (the
// variable, or the flag and its file); the errors never hold the token,
// nor the offending byte.
func checkTokenWord(tok, source string) error {
	if strings.ContainsAny(tok, " \t\r\n") {
		return fmt.Errorf("%s holds more than one word; it must hold the token alone", source)
	}
	// net/http's own rule for a header value (HTTP/1 and HTTP/2): no
	// control character (NUL, DEL, ...) but horizontal tab and space,
	// which the check above has already refused.
	if !httpguts.ValidHeaderFieldValue(tok) {
		return fmt.Errorf("%s holds a control character; an HTTP header cannot carry the token", source)
	}
	return nil
}

// validate checks the configuration and, in dev mode, moves the listen
// addresses to loopback. Its errors never hold the token.
func (c *Config) validate() error {
	if err := c.validateGitHubApp(); err != nil {
		return err
	}
	if c.StateLockTimeout <= 0 {
		return fmt.Errorf("--state-lock-timeout must be positive, got %s", c.StateLockTimeout)
	}
	if c.ShutdownTimeout <= 0 {
		return fmt.Errorf("--shutdown-timeout must be positive, got %s", c.ShutdownTimeout)
	}
	if c.GRPCMaxConnectionAge != 0 && c.GRPCMaxConnectionAge < minGRPCMaxConnectionAge {
		// Shorter, clients reconnect in a loop (each GOAWAY at once).
		return fmt.Errorf("--grpc-max-connection-age must be 0 (for ever) or at least %s, got %s", minGRPCMaxConnectionAge, c.GRPCMaxConnectionAge)
	}
	if err := c.validatePacing(); err != nil {
		return err
	}
	if c.KeyTTL <= 0 {
		return fmt.Errorf("--key-ttl must be positive, got %s", c.KeyTTL)
	}
	if c.GCHeapFloor < 0 {
		return errors.New("--gc-heap-floor must be 0 (off) or a positive number of bytes")
	}
	if err := c.validateFrontDoor(); err != nil {
		return err
	}
	if err := checkAPIVersion("--upstream-api-version-actions", c.UpstreamAPIVersionActions); err != nil {
		return err
	}
	if err := checkAPIVersion("--upstream-api-version-agents", c.UpstreamAPIVersionAgents); err != nil {
		return err
	}
	// The listen addresses are printed at start and in the errors below:
	// of their closed form only.
	for _, l := range []struct{ flag, addr string }{{"--grpc-addr", c.GRPCAddr}, {"--http-addr", c.HTTPAddr}, {"--admin-addr", c.AdminAddr}} {
		if err := checkListenAddr(l.flag, l.addr); err != nil {
			return err
		}
	}
	if c.LogFormat != logFormatJSON && c.LogFormat != logFormatText {
		// Not the value, which may have come from the environment
		// (wantedForm).
		return fmt.Errorf("--log-format (%sLOG_FORMAT) must be %s or %s", envPrefix, logFormatJSON, logFormatText)
	}
	if c.Dev && !c.logFormatGiven {
		c.LogFormat = logFormatText // people read dev logs
	}
	if c.Dev {
		var err error
		if c.GRPCAddr, err = devAddr("--grpc-addr", c.GRPCAddr); err != nil {
			return err
		}
		if c.HTTPAddr, err = devAddr("--http-addr", c.HTTPAddr); err != nil {
			return err
		}
		if c.AdminAddr, err = devAddr("--admin-addr", c.AdminAddr); err != nil {
			return err
		}
		if !c.callerRPSGiven {
			c.CallerRPS = 0 // no inbound rate limit in dev mode unless asked for
		}
		return nil
	}
	if err := checkUpstreamURL(c.UpstreamURL, c.UpstreamAllowHTTP); err != nil {
		return err
	}
	if c.UpstreamToken == "" && !c.GitHubApp.enabled() {
		return fmt.Errorf("no GitHub token: set %s or --upstream-token-file (%sUPSTREAM_TOKEN_FILE) to a file that holds it, authenticate as a GitHub App (--github-app-id and --github-app-private-key-file), or run with --dev",
			envGitHubToken, envPrefix)
	}
	// The admin listener serves no secret data: it may be on any address
	// without caller authentication, unlike these two.
	if !c.Authenticates() && !c.AllowUnauthenticated {
		for _, l := range []struct{ flag, addr string }{{"--grpc-addr", c.GRPCAddr}, {"--http-addr", c.HTTPAddr}} {
			if !isLoopback(l.addr) {
				return fmt.Errorf("%s %s is not a loopback address and no caller authentication is configured: "+
					"set --tls-client-ca-file (mTLS), --callers-file (bearer tokens) or --jwt-issuer, --jwt-audience and "+
					"--jwt-jwks-url or --jwt-jwks-file (JWTs); or --allow-unauthenticated to serve anyone who can reach it",
					l.flag, l.addr)
			}
		}
	}
	return nil
}

// UpstreamPacing is the upstream client's pacing: upstream.DefaultPacing()
// with the fields the --upstream-* flags set.
func (c *Config) UpstreamPacing() upstream.Pacing {
	p := upstream.DefaultPacing()
	p.MaxInFlight = c.UpstreamMaxInFlight
	p.WriteInterval = c.UpstreamWriteInterval
	p.PointsPerMinute = c.UpstreamPointsPerMinute
	p.CPUPerMinute = c.UpstreamCPUTimePerMinute
	p.MaxAttempts = c.UpstreamMaxAttempts
	p.WritesPerMinute = c.UpstreamWritesPerMinute
	p.WritesPerHour = c.UpstreamWritesPerHour
	p.MaxQueue = c.UpstreamMaxQueue
	p.MaxQueueWait = c.MaxQueueWait
	return p
}

// validatePacing checks the --upstream-* pacing flags with the upstream
// package's own rules (upstream.Pacing.Validate), naming the flag rather
// than the field. A flag of 0 for --upstream-max-in-flight is an error, not
// the default.
func (c *Config) validatePacing() error {
	err := c.UpstreamPacing().Validate()
	if err == nil {
		return nil
	}
	var pe *upstream.PacingError
	if errors.As(err, &pe) {
		if name := pacingFlag(pe.Field); name != "" {
			return fmt.Errorf("%s %s; got %v", name, pe.Rule, pe.Value)
		}
	}
	// A field no flag sets: DefaultPacing's own value is out of range.
	return fmt.Errorf("upstream pacing: %w", err)
}

// pacingFlag returns the flag that sets an upstream.Pacing field, or "" for
// a field no flag sets.
func pacingFlag(field string) string {
	switch field {
	case "MaxInFlight":
		return "--upstream-max-in-flight"
	case "WriteInterval":
		return "--upstream-write-interval"
	case "PointsPerMinute":
		return "--upstream-points-per-minute"
	case "MaxAttempts":
		return "--upstream-max-attempts"
	case "WritesPerMinute":
		return "--upstream-writes-per-minute"
	case "WritesPerHour":
		return "--upstream-writes-per-hour"
	case "MaxQueue":
		return "--upstream-max-queue"
	case "MaxQueueWait":
		return "--max-queue-wait"
	case "CPUPerMinute":
		return "--upstream-cpu-time-per-minute"
	}
	return ""
}

// OperationsPerCaller is the bound on one caller's unfinished operations
// the service's runner takes (service.OperationOptions.MaxPerCaller):
// CallerMaxOperations, or no bound (the largest int) for 0.
func (c *Config) OperationsPerCaller() int {
	if c.CallerMaxOperations == 0 {
		return math.MaxInt
	}
	return c.CallerMaxOperations
}

// Authenticates reports whether callers must prove who they are: mTLS
// client certificates, static bearer tokens or JWTs are configured. TLS
// without a client CA is encryption, not authentication.
func (c *Config) Authenticates() bool {
	return c.TLSClientCAFile != "" || c.CallersFile != "" || c.JWTIssuer != ""
}

// validateFrontDoor checks the flags of TLS, caller identity, policy,
// audit and inbound limits.
func (c *Config) validateFrontDoor() error {
	if c.ShedSchedLatency < 0 {
		return errors.New("--shed-sched-latency must not be negative (0 turns adaptive shedding off)")
	}
	if c.MaxWorkingCalls < 0 {
		return errors.New("--max-working-calls must not be negative (0 turns the bound off)")
	}
	if c.MaxWaitingCalls < 0 {
		return errors.New("--max-waiting-calls must not be negative (0: a call over --max-working-calls is refused at once)")
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return errors.New("--tls-cert-file and --tls-key-file go together")
	}
	if c.TLSClientCAFile != "" && c.TLSCertFile == "" {
		return errors.New("--tls-client-ca-file needs --tls-cert-file and --tls-key-file: client certificates are verified during TLS")
	}
	jwtSet := c.JWTIssuer != "" || c.JWTAudience != "" || c.JWTJWKSURL != "" || c.JWTJWKSFile != ""
	if jwtSet {
		if c.JWTIssuer == "" || c.JWTAudience == "" {
			return errors.New("JWT bearer tokens need both --jwt-issuer and --jwt-audience")
		}
		if (c.JWTJWKSURL == "") == (c.JWTJWKSFile == "") {
			return errors.New("JWT bearer tokens need exactly one of --jwt-jwks-url and --jwt-jwks-file")
		}
	}
	if c.PolicyFile != "" && !c.Authenticates() {
		return errors.New("--policy-file needs caller authentication (--tls-client-ca-file, --callers-file or --jwt-issuer): without it no caller has an identity a rule could name")
	}
	if c.AuditHMACKeyFile != "" && c.AuditLog == "" {
		return errors.New("--audit-hmac-key-file needs --audit-log")
	}
	if c.AuditReads && c.AuditLog == "" {
		return errors.New("--audit-reads needs --audit-log: without a trail no read is recorded")
	}
	if math.IsNaN(c.CallerRPS) || math.IsInf(c.CallerRPS, 0) {
		// NaN is neither above nor below 0: it would turn the limit off
		// unasked, as 0 does.
		return fmt.Errorf("--caller-rps must be a number of calls a second (0 turns the limit off), got %v", c.CallerRPS)
	}
	if c.CallerRPS < 0 || c.CallerBurst < 0 || c.CallerMaxConcurrent < 0 || c.MaxConcurrentCalls < 0 {
		return errors.New("--caller-rps, --caller-burst, --caller-max-concurrent and --max-concurrent-calls must not be negative")
	}
	if c.CallerMaxOperations < 0 {
		return errors.New("--caller-max-operations must not be negative (0 turns the bound off)")
	}
	if c.CallerRPS > 0 && c.CallerBurst < 1 {
		return errors.New("--caller-burst must be at least 1 when --caller-rps is set")
	}
	if c.MaxInflightBytes < maxRequestBytes {
		return fmt.Errorf("--max-inflight-bytes must be at least %d, the largest request", maxRequestBytes)
	}
	return nil
}

// isLoopback reports whether a listen address binds loopback only. An empty
// host binds every interface; a host name other than localhost is not
// trusted to be loopback.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	return err == nil && isLoopbackHost(host)
}

// isLoopbackHost reports whether host is localhost or a loopback IP
// address; other names are not resolved.
func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkUpstreamURL accepts an absolute https URL without credentials, or
// an http one on a loopback host (an emulator, a test), or on any host
// with allowHTTP. Its errors do not repeat the URL, which might hold some.
func checkUpstreamURL(raw string, allowHTTP bool) error {
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("--upstream-url is not a valid URL")
	}
	if u.User != nil || strings.Contains(raw, "@") {
		// An "@" outside the user information is most likely a password
		// with an unescaped "/", "?" or "#", which ended the host early.
		return errors.New("--upstream-url must not hold credentials; give the token with --upstream-token-file or " + envGitHubToken)
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("--upstream-url must be an absolute http or https URL, got %q", redactURL(raw))
	}
	if u.Scheme == "http" && !allowHTTP && !isLoopbackHost(u.Hostname()) {
		// Over plain HTTP anyone on the path reads the token and can
		// answer with a public key of their own, and so read every value
		// sealed with it.
		return fmt.Errorf("--upstream-url must be https (http only on a loopback host, or with --upstream-allow-http), got %q", redactURL(raw))
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("--upstream-url must not have a query or fragment, got %q", redactURL(raw))
	}
	return nil
}

// notHostPort is the error of a listen address that is not host:port.
// Not net's, which quotes the address: the value of the variable meant
// for it may be a secret put there by mistake.
func notHostPort(flagName string) error {
	return fmt.Errorf("%s must be host:port, such as 127.0.0.1:9090 or :9090 (the value is not shown, as it may be a secret)", flagName)
}

// devAddr moves a listen address to loopback for dev mode: an empty host
// becomes 127.0.0.1, a loopback host is kept, any other host is an error.
func devAddr(flagName, addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", notHostPort(flagName)
	}
	switch {
	case host == "":
		host = "127.0.0.1"
	case host == "localhost":
	default:
		ip := net.ParseIP(host)
		if ip == nil || !ip.IsLoopback() {
			return "", fmt.Errorf("%s %s: --dev listens on loopback only; use 127.0.0.1, ::1 or localhost, or leave the host out", flagName, addr)
		}
	}
	return net.JoinHostPort(host, port), nil
}

// tracesSamplerString is the sampler as the start-up line shows it: its
// name, with the ratio for a trace id ratio sampler.
func (c Config) tracesSamplerString() string {
	switch c.TracesSampler {
	case samplerTraceIDRatio, samplerParentBasedTraceIDRatio:
		return c.TracesSampler + ":" + strconv.FormatFloat(c.TracesSamplerRatio, 'g', -1, 64)
	}
	return c.TracesSampler
}

// LogValue logs the configuration with the token redacted.
func (c Config) LogValue() slog.Value {
	tok := "(none)"
	if c.UpstreamToken != "" {
		tok = "[redacted]"
	}
	upstreamURL := redactURL(c.UpstreamURL)
	if c.Dev {
		upstreamURL = "(embedded emulator)"
	}
	return slog.GroupValue(
		slog.String("grpc_addr", c.GRPCAddr),
		slog.String("http_addr", c.HTTPAddr),
		slog.String("admin_addr", c.AdminAddr),
		slog.Bool("admin_pprof", c.AdminPprof),
		slog.Bool("metrics_caller_label", c.MetricsCallerLabel),
		slog.String("upstream_url", upstreamURL),
		slog.String("upstream_token_file", c.UpstreamTokenFile),
		slog.String("upstream_token", tok),
		slog.Any("github_app", c.GitHubApp),
		slog.String("upstream_api_version_actions", c.UpstreamAPIVersionActions),
		slog.String("upstream_api_version_agents", c.UpstreamAPIVersionAgents),
		slog.Bool("upstream_allow_http", c.UpstreamAllowHTTP),
		slog.Bool("upstream_legacy_routes", c.UpstreamLegacyRoutes),
		slog.Int("upstream_max_in_flight", c.UpstreamMaxInFlight),
		slog.Duration("upstream_write_interval", c.UpstreamWriteInterval),
		slog.Int("upstream_points_per_minute", c.UpstreamPointsPerMinute),
		slog.Duration("upstream_cpu_time_per_minute", c.UpstreamCPUTimePerMinute),
		slog.Int("upstream_max_attempts", c.UpstreamMaxAttempts),
		slog.Int("upstream_writes_per_minute", c.UpstreamWritesPerMinute),
		slog.Int("upstream_writes_per_hour", c.UpstreamWritesPerHour),
		slog.String("redis", c.redisShown()),
		slog.Int("expected_replicas", c.ExpectedReplicas),
		slog.Duration("key_ttl", c.KeyTTL),
		slog.Bool("dev", c.Dev),
		slog.String("dev_limits", onOff{&c.DevLimitsOff}.String()),
		slog.Duration("shutdown_timeout", c.ShutdownTimeout),
		slog.Duration("grpc_max_connection_age", c.GRPCMaxConnectionAge),
		slog.String("log_level", c.LogLevel.String()),
		slog.String("log_format", c.LogFormat),
		slog.String("traces_exporter", c.TracesExporter),
		slog.String("traces_sampler", c.tracesSamplerString()),
		slog.String("metrics_exporter", c.MetricsExporter),
		slog.String("tls_cert_file", c.TLSCertFile),
		slog.String("tls_key_file", c.TLSKeyFile),
		slog.String("tls_client_ca_file", c.TLSClientCAFile),
		slog.String("callers_file", c.CallersFile),
		slog.String("jwt_issuer", c.JWTIssuer),
		slog.String("jwt_audience", c.JWTAudience),
		slog.String("jwt_jwks_url", redactURL(c.JWTJWKSURL)),
		slog.String("jwt_jwks_file", c.JWTJWKSFile),
		slog.Bool("allow_unauthenticated", c.AllowUnauthenticated),
		slog.Bool("reflection_unauthenticated", c.ReflectionUnauthenticated),
		slog.String("policy_file", c.PolicyFile),
		slog.String("audit_log", c.AuditLog),
		slog.Bool("audit_hmac", c.AuditHMACKeyFile != ""),
		slog.Bool("audit_reads", c.AuditReads),
		slog.Float64("caller_rps", c.CallerRPS),
		slog.Int("caller_burst", c.CallerBurst),
		slog.Int("caller_max_concurrent", c.CallerMaxConcurrent),
		slog.Int("caller_max_operations", c.CallerMaxOperations),
		slog.Int("max_concurrent_calls", c.MaxConcurrentCalls),
		slog.Int64("max_inflight_bytes", c.MaxInflightBytes),
		slog.Int64("gc_heap_floor", c.GCHeapFloor),
		slog.Duration("shed_sched_latency", c.ShedSchedLatency),
		slog.Int("max_working_calls", c.MaxWorkingCalls),
		slog.Int("max_waiting_calls", c.MaxWaitingCalls),
		slog.Duration("max_queue_wait", c.MaxQueueWait),
		slog.Int("upstream_max_queue", c.UpstreamMaxQueue),
		slog.String("state_dir", c.StateDir),
		slog.Duration("state_lock_timeout", c.StateLockTimeout),
		slog.Bool("state_hmac_key", c.StateHMACKeyFile != ""),
	)
}

// String formats the configuration with the token redacted, for %v and %s.
func (c Config) String() string {
	var b strings.Builder
	b.WriteString("Config{")
	for i, a := range c.LogValue().Group() {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%s:%s", a.Key, a.Value)
	}
	b.WriteString("}")
	return b.String()
}

// GoString formats the configuration with the token redacted, for %#v.
func (c Config) GoString() string { return c.String() }

// redactURL hides a URL's user information, query and fragment, if it has
// any: each may hold a credential. A URL with an "@" outside its user
// information is hidden whole (credential.MisreadUserInfo).
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(invalid URL)"
	}
	if credential.MisreadUserInfo(raw, u) {
		return hiddenURL
	}
	if u.User != nil {
		u.User = url.User("redacted")
	}
	if u.RawQuery != "" || u.ForceQuery {
		u.RawQuery, u.ForceQuery = "redacted", false
	}
	if u.Fragment != "" || u.RawFragment != "" {
		u.Fragment, u.RawFragment = "redacted", ""
	}
	return u.String()
}

// hiddenURL stands for a URL whose credentials cannot be told apart from
// the rest of it.
const hiddenURL = `(a URL with an "@" outside its user information, hidden: escape "@", "/", "?" and "#" in a user name or password)`
