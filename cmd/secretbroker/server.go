package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc/filters"
	"go.opentelemetry.io/otel"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/test/bufconn"

	"github.com/secretbroker/secretbroker/cmd/secretbroker/internal/apireflect"
	"github.com/secretbroker/secretbroker/cmd/secretbroker/internal/calllog"
	"github.com/secretbroker/secretbroker/cmd/secretbroker/internal/liblog"
	"github.com/secretbroker/secretbroker/cmd/secretbroker/internal/servertls"
	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/service"
	"github.com/secretbroker/secretbroker/service/state"
	"github.com/secretbroker/secretbroker/upstream"
)

// grpcKeepalive is the gRPC server's keepalive: idle connections closed
// after 15 minutes, pings after a minute of silence, and, when maxAge is
// positive, connections renewed after maxAge (GOAWAY: the client
// reconnects for its next calls, possibly to another replica), the calls
// in progress on one finishing within grpcMaxConnectionAgeGrace.
func grpcKeepalive(maxAge time.Duration) keepalive.ServerParameters {
	p := keepalive.ServerParameters{MaxConnectionIdle: 15 * time.Minute, Time: time.Minute, Timeout: 20 * time.Second}
	if maxAge > 0 {
		p.MaxConnectionAge, p.MaxConnectionAgeGrace = maxAge, grpcMaxConnectionAgeGrace
	}
	return p
}

const (
	// userAgent is the User-Agent sent to GitHub.
	userAgent = "secretbroker"
	// readHeaderTimeout bounds how long the gateway waits for a request's
	// headers.
	readHeaderTimeout = 10 * time.Second
	// readTimeout bounds how long the gateway waits for a whole request,
	// body included (16 MiB at a slow client's pace).
	readTimeout = 2 * time.Minute
	// writeTimeout bounds a gateway response from the end of its request:
	// a batch of 1,000 writes spaced 1 s apart takes about 17 minutes.
	writeTimeout = 20 * time.Minute
	// grpcMaxConnectionAgeGrace is how long the calls in progress on a gRPC
	// connection renewed for its age may take: as long as a gateway
	// answer (writeTimeout), for a batch of 1,000 paced writes.
	grpcMaxConnectionAgeGrace = writeTimeout
	// idleTimeout closes idle keep-alive connections to the gateway.
	idleTimeout = 2 * time.Minute
	// maxHeaderBytes bounds a request's headers, on both listeners.
	maxHeaderBytes = 64 << 10
	// maxTransportBytes is gRPC's own receive limit, above maxRequestBytes
	// so that the front door answers requests between the two with
	// INVALID_ARGUMENT (a batch of 1,000 values of 48 KB is 49 MB).
	maxTransportBytes = 64 << 20
	// maxConcurrentStreams bounds the calls in progress on one gRPC
	// connection.
	maxConcurrentStreams = 128
	// streamWindow is the gRPC flow-control window per call (and, times
	// four, per connection): a fixed window bounds how much of a request a
	// client can push before the broker reads it.
	streamWindow = 1 << 20
	// gatewayMaxSendBytes is the largest request the gateway sends its
	// gRPC server.
	gatewayMaxSendBytes = maxRequestBytes + (1 << 20)
	// gatewayAuthority is the :authority of the gateway's calls.
	gatewayAuthority = "secretbroker-gateway"
	// policyPollInterval is how often the policy file is checked for a
	// change (Kubernetes updates a mounted Secret within about a minute;
	// the broker picks the change up within this).
	policyPollInterval = 5 * time.Second
)

// run serves the broker until ctx is done, then shuts down gracefully
// within cfg.ShutdownTimeout and returns nil. It binds the gRPC, gateway
// and admin listeners first, before it resumes operations or starts a
// background loop (a failed start does neither), and once serving calls
// ready, if not nil, with their addresses (so port 0 works). Unless in dev mode it verifies
// the GitHub credential in the background; /readyz on the admin listener
// says when the broker is ready (admin.go), and the gRPC health service
// says the same (healthFollows). In dev mode it first starts
// the embedded GitHub emulator and writes a banner with copy-paste
// commands to banner. When ctx is done before it serves (a signal during
// the start), it undoes the start and returns nil.
func run(ctx context.Context, cfg Config, logger *slog.Logger, banner io.Writer, ready func(grpcAddr, httpAddr, adminAddr string)) (err error) {
	// A signal before the broker serves (a pod deleted while it starts)
	// ends the start where it is: what was set up is undone (the defers
	// below, which run first) and run returns nil, as after a graceful
	// shutdown, so that the process exits 0 rather than as failed. A
	// start that fails for another reason, signal or not, still returns
	// its error.
	serving := false
	defer func() {
		if err != nil && !serving && ctx.Err() != nil && errors.Is(err, context.Canceled) {
			logger.Info("stopped before serving: asked to stop during the start", slog.Any("cause", context.Cause(ctx)))
			err = nil
		}
	}()
	// starting returns an error once ctx is done, at the steps after
	// which the start would act: open the state store, resume the
	// operations it holds (which write to GitHub), serve.
	starting := func() error {
		if ctx.Err() != nil {
			return fmt.Errorf("start: %w", ctx.Err())
		}
		return nil
	}
	tr, err := setupTracing(ctx, cfg, logger, cfg.spanExporter)
	if err != nil {
		return err
	}
	// Last: the spans of the shutdown itself are flushed, within the flush
	// deadline.
	defer tr.shutdown(ctx, logger)
	tp := tr.tp

	mp, metricsHandler, err := setupMetrics(ctx, cfg.MetricsExporter)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if serr := mp.Shutdown(sctx); serr != nil {
			logger.Warn("meter provider shutdown", slog.Any("error", serr))
		}
	}()

	pacing := cfg.UpstreamPacing()
	upCfg := upstream.Config{
		BaseURL:           cfg.UpstreamURL,
		Token:             cfg.UpstreamToken,
		UserAgent:         userAgent,
		APIVersionActions: cfg.UpstreamAPIVersionActions,
		APIVersionAgents:  cfg.UpstreamAPIVersionAgents,
		LegacyRoutes:      cfg.UpstreamLegacyRoutes,
		Pacing:            &pacing,
		Logger:            logger.With(slog.String("component", "upstream")),
		MeterProvider:     mp,
		TracerProvider:    tp,
	}
	sharedCtx, stopShared := context.WithCancel(context.WithoutCancel(ctx))
	shared, err := newSharedStates(sharedCtx, cfg, logger)
	if err != nil {
		stopShared()
		return err
	}
	if shared != nil {
		defer func() {
			stopShared()
			shared.close()
		}()
		upCfg.SharedState = shared.stateFunc()
		if err := shared.registerMetrics(mp); err != nil {
			return err
		}
	} else {
		stopShared()
	}
	var dev *devUpstream
	if cfg.Dev {
		dev, err = startEmulator(ctx, cfg, logger.With(slog.String("component", "emulator")))
		if err != nil {
			return err
		}
		// Stopped last: in-flight calls need it until they drain.
		defer func() {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
			defer cancel()
			dev.stop(sctx)
		}()
		upCfg.BaseURL = dev.url
		upCfg.Token = dev.token
		useCredentials(&upCfg, dev.creds)
		if cfg.UpstreamToken != "" {
			logger.Info("--dev: the GitHub token is not used; the broker talks to the embedded emulator only")
		}
	}
	if !cfg.Dev {
		src, err := upstreamCredentials(cfg, cfg.UpstreamURL, upstream.NewTransport())
		if err != nil {
			return err
		}
		useCredentials(&upCfg, src)
	}
	client, err := upstream.New(upCfg)
	if err != nil {
		return fmt.Errorf("upstream client: %w", err)
	}

	// The TLS material is loaded and the listeners bound before anything
	// acts: a port in use or an unreadable certificate stops the start
	// before an operation left unfinished is resumed (which sends its
	// writes to GitHub) or a background loop is started.
	var tlsCfg *tls.Config
	if cfg.TLSCertFile != "" {
		if tlsCfg, err = servertls.Config(logger.With(slog.String("component", "tls")), cfg.TLSCertFile, cfg.TLSKeyFile, cfg.TLSClientCAFile); err != nil {
			return err
		}
	}

	var lc net.ListenConfig
	grpcLn, err := lc.Listen(ctx, "tcp", cfg.GRPCAddr)
	if err != nil {
		return fmt.Errorf("gRPC listener: %w", err)
	}
	defer grpcLn.Close() // after Serve, closing again is harmless
	httpLn, err := lc.Listen(ctx, "tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("HTTP listener: %w", err)
	}
	defer httpLn.Close()
	adminLn, err := lc.Listen(ctx, "tcp", cfg.AdminAddr)
	if err != nil {
		return fmt.Errorf("admin listener: %w", err)
	}
	defer adminLn.Close()

	// The front door's loops (the policy file's watcher, SIGHUP's, a JWKS
	// URL's first load) end when run returns, a failed start included.
	doorCtx, stopDoor := context.WithCancel(ctx)
	defer stopDoor()
	door, authz, err := newFrontDoor(doorCtx, cfg, logger)
	if err != nil {
		return err
	}
	defer func() {
		stopDoor()
		door.loops.Wait()
	}()
	if door.refusals, err = newRefusalCounter(mp); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	trail, err := openAudit(cfg, logger)
	if err != nil {
		return err
	}
	defer trail.Close()
	if err := registerBrokerMetrics(mp, trail); err != nil {
		return err
	}
	if err := starting(); err != nil {
		return err
	}
	st, err := openState(ctx, cfg, logger, shared.redisClient())
	if err != nil {
		return err
	}
	_, volatile := st.(*state.Memory)
	_, sole := st.(*state.Bolt)
	opsCut := "operations cut at the shutdown timeout; they resume after a restart"
	if volatile {
		opsCut = "operations cut at the shutdown timeout, and lost: the state store is in memory (no --state-dir or --redis-url)"
	}
	defer func() {
		if cerr := st.Close(); cerr != nil {
			logger.Warn("state store close", slog.Any("error", cerr))
		}
	}()
	svc := service.New(client, service.Options{
		State:      st,
		Logger:     logger.With(slog.String("component", "service")),
		KeyTTL:     cfg.KeyTTL,
		Authorizer: authz,
		Audit:      trail,
		AuditReads: cfg.AuditReads,

		MeterProvider:  mp,
		TracerProvider: tp,

		MetricsCallerLabel: cfg.MetricsCallerLabel,

		// Without --state-dir or --redis-url operations live in this
		// process's memory: a restart loses them, and the logs say so
		// (openState at start, the runner at shutdown). With --state-dir
		// this process holds the file's lock: the runner that leased an
		// unfinished operation in it was a dead process's, and the first
		// resume takes it over (never with Redis, shared by replicas).
		// --caller-max-operations bounds each caller's unfinished
		// operations in this process's runner (0: no bound).
		Operations: service.OperationOptions{Volatile: volatile, Sole: sole, MaxPerCaller: cfg.OperationsPerCaller()},
	})
	// Operations a previous process left unfinished run again from here;
	// shutdown closes the runner (with the servers, within
	// --shutdown-timeout), this defer on an early return; both before the
	// state store closes. It is deferred before the resume: a resume that
	// fails or is stopped (a signal) part way has started operations,
	// which must not run on once run has returned.
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
		defer cancel()
		if err := svc.CloseOperations(cctx); err != nil {
			logger.Warn(opsCut, slog.Any("error", err))
		}
	}()
	if err := starting(); err != nil {
		return err
	}
	stopResume, err := resumeOperations(ctx, svc, st, logger)
	if err != nil {
		return err
	}
	defer stopResume()

	// The admin listener serves until run returns: /readyz answers 503
	// for the whole shutdown.
	readyState := newReadiness(!cfg.Dev)
	if shared != nil {
		readyState.setDetail(shared.detail)
	}
	if door.jwt != nil {
		// Not ready until the JWT issuer's keys are loaded once (they may
		// load in the background: identity.StartJWTVerifier).
		readyState.setJWTKeys(door.jwt)
		kctx, stopKeys := context.WithCancel(ctx)
		var awaiting sync.WaitGroup
		awaiting.Go(func() { readyState.awaitJWTKeys(kctx) })
		defer func() {
			stopKeys()
			awaiting.Wait()
		}()
	}
	adminSrv := newAdminServer(readyState, cfg.AdminPprof, metricsHandler, logger)
	defer adminSrv.Close()

	// Two gRPC servers share the service: the public one on --grpc-addr
	// (with TLS when configured), and an in-process one that only the JSON
	// gateway reaches, so that gateway calls need no client certificate of
	// their own and pass the same front door with the HTTP caller's
	// credentials. The gateway's SecretService calls run through that
	// server's parts in process (localConn); its health checks reach it
	// over a bufconn connection.
	// Health says what /readyz says (NOT_SERVING until then), from the
	// same state.
	healthSrv := health.NewServer()
	healthFollows(readyState, healthSrv, secretbrokerv1.SecretService_ServiceDesc.ServiceName)
	// The parts of both servers that the gateway's calls also pass in
	// process (localConn): the service behind the front door, the unary
	// interceptors and (one per server) the stats handler.
	serviceDesc := door.wrap(&secretbrokerv1.SecretService_ServiceDesc)
	drain := newCallDrain()
	unaryInterceptors := []grpc.UnaryServerInterceptor{calllog.LogUnary(logger), calllog.RecoverUnary(logger), drain.unary()}
	newServerStats := func() stats.Handler {
		return otelgrpc.NewServerHandler(
			otelgrpc.WithMeterProvider(mp),
			otelgrpc.WithTracerProvider(tp),
			otelgrpc.WithFilter(filters.Not(filters.HealthCheck())))
	}
	newGRPCServer := func(sh stats.Handler, extra ...grpc.ServerOption) *grpc.Server {
		opts := append([]grpc.ServerOption{
			grpc.StatsHandler(sh),
			grpc.ChainUnaryInterceptor(unaryInterceptors...),
			grpc.ChainStreamInterceptor(calllog.LogStream(logger), calllog.RecoverStream(logger), drain.stream(), door.streamGuard()),
			streamWorkerOption(),
			grpc.MaxRecvMsgSize(maxTransportBytes),
			grpc.MaxHeaderListSize(maxHeaderBytes),
			grpc.MaxConcurrentStreams(maxConcurrentStreams),
			grpc.InitialWindowSize(streamWindow),
			grpc.InitialConnWindowSize(4 * streamWindow),
			grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
			grpc.KeepaliveParams(grpcKeepalive(0)),
		}, extra...)
		srv := grpc.NewServer(opts...)
		srv.RegisterService(serviceDesc, svc)
		healthpb.RegisterHealthServer(srv, healthSrv)
		apireflect.Register(srv)
		return srv
	}
	// The gRPC listener's connections are renewed every
	// --grpc-max-connection-age (the in-process server's one is not).
	external := []grpc.ServerOption{grpc.KeepaliveParams(grpcKeepalive(cfg.GRPCMaxConnectionAge))}
	if tlsCfg != nil {
		external = append(external, grpc.Creds(credentials.NewTLS(tlsCfg.Clone())))
	}
	grpcSrv := newGRPCServer(newServerStats(), external...)
	gwStats := newServerStats()
	gwSrv := newGRPCServer(gwStats)
	gwLn := bufconn.Listen(256 << 10)
	defer gwLn.Close()

	// JSON gateway, a client of the in-process gRPC server: its
	// SecretService calls run in process through the same front door,
	// interceptors and stats handler as a call over a connection to that
	// server would (localConn), and its health checks go over one.
	conn, err := grpc.NewClient("passthrough:///"+gatewayAuthority,
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return gwLn.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithStatsHandler(otelgrpc.NewClientHandler(
			otelgrpc.WithTracerProvider(tp),
			otelgrpc.WithFilter(filters.Not(filters.HealthCheck())))),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(gatewayMaxSendBytes)),
	)
	if err != nil {
		return fmt.Errorf("gateway connection: %w", err)
	}
	defer conn.Close()
	local := newLocalConn(conn, localServer{
		desc:          serviceDesc,
		impl:          svc,
		interceptors:  unaryInterceptors,
		stats:         gwStats,
		maxSendBytes:  gatewayMaxSendBytes,
		maxHeaderList: maxHeaderBytes,
		maxStreams:    maxConcurrentStreams,
		authority:     gatewayAuthority,
	})
	gw, err := newGateway(ctx, local, door.keys)
	if err != nil {
		return err
	}
	httpSrv := &http.Server{
		// The front door refuses before anything else runs, tracing
		// included, so that a refused flood costs as little as it can.
		Handler: door.admitHTTP(
			instrumentGateway(gw, tr.recording, gatewayInstrumentation{
				tracerProvider: tr.tp,
				meterProvider:  mp,
				propagator:     otel.GetTextMapPropagator(),
				serverName:     httpLn.Addr().String(),
			}),
			newCallLimits(0, 0, cfg.CallerMaxConcurrent, cfg.MaxConcurrentCalls), cfg.MaxInflightBytes),
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		TLSConfig:         tlsCfg,
		ErrorLog:          liblog.HTTPErrorLog(logger),
	}

	if err := starting(); err != nil {
		return err
	}
	serving = true
	serveErr := make(chan error, 4)
	go func() {
		if err := grpcSrv.Serve(grpcLn); err != nil {
			serveErr <- fmt.Errorf("gRPC server: %w", err)
		}
	}()
	go func() {
		if err := gwSrv.Serve(gwLn); err != nil {
			serveErr <- fmt.Errorf("gateway's gRPC server: %w", err)
		}
	}()
	go func() {
		var err error
		if tlsCfg != nil {
			err = httpSrv.ServeTLS(httpLn, "", "")
		} else {
			err = httpSrv.Serve(httpLn)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			serveErr <- fmt.Errorf("HTTP server: %w", err)
		}
	}()

	go func() {
		if err := adminSrv.Serve(adminLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			serveErr <- fmt.Errorf("admin server: %w", err)
		}
	}()
	readyState.setServing()
	if !cfg.Dev {
		vctx, stopVerify := context.WithCancel(ctx)
		var verifying sync.WaitGroup
		verifying.Go(func() {
			readyState.verifyCredential(vctx, client.VerifyCredential, credentialRetryInterval, logger)
		})
		defer func() {
			stopVerify()
			verifying.Wait()
		}()
	}

	grpcAddr, httpAddr, adminAddr := grpcLn.Addr().String(), httpLn.Addr().String(), adminLn.Addr().String()
	logger.Info("secretbroker serving", slog.String("version", buildVersion()),
		slog.String("grpc_addr", grpcAddr), slog.String("http_addr", httpAddr), slog.String("admin_addr", adminAddr),
		slog.Bool("tls", tlsCfg != nil), slog.Bool("authentication", cfg.Authenticates()),
		slog.Any("config", cfg))
	if cfg.AllowUnauthenticated && !cfg.Authenticates() && !cfg.Dev {
		logger.Warn("--allow-unauthenticated: every call is served without authentication, to anyone who can reach the listeners")
	}
	if dev != nil && banner != nil {
		if err := writeDevBanner(banner, dev.demo, dev.url, grpcAddr, httpAddr, adminAddr, devAccessOf(cfg)); err != nil {
			logger.Warn("dev banner", slog.Any("error", err))
		}
	}
	if ready != nil {
		ready(grpcAddr, httpAddr, adminAddr)
	}

	var failed error
	select {
	case <-ctx.Done():
		logger.Info("shutting down", slog.Duration("timeout", cfg.ShutdownTimeout))
	case failed = <-serveErr:
		logger.Error("server failed; shutting down", slog.Any("error", failed))
	}
	readyState.setShuttingDown()
	closeOps := func(ctx context.Context) error {
		err := svc.CloseOperations(ctx)
		if err != nil {
			logger.Warn(opsCut, slog.Any("error", err))
		}
		return err
	}
	shutdown(ctx, cfg.ShutdownTimeout, logger, closeOps, drain.stop, grpcLn, healthSrv, httpSrv, grpcSrv, gwSrv)
	if failed != nil {
		return failed
	}
	logger.Info("shut down")
	return nil
}

// gatewaySpanName is the name of a gateway request's server span: "HTTP
// GET" for each of the standard methods, as a constant, and "HTTP" for
// any other, as otelhttp's own default names it. A method is whatever
// token the caller sends, up to the request line's size: naming the span
// after an unknown one would let callers mint span names without bound.
func gatewaySpanName(method string) string {
	switch method {
	case http.MethodGet:
		return "HTTP GET"
	case http.MethodHead:
		return "HTTP HEAD"
	case http.MethodPost:
		return "HTTP POST"
	case http.MethodPut:
		return "HTTP PUT"
	case http.MethodPatch:
		return "HTTP PATCH"
	case http.MethodDelete:
		return "HTTP DELETE"
	case http.MethodConnect:
		return "HTTP CONNECT"
	case http.MethodOptions:
		return "HTTP OPTIONS"
	case http.MethodTrace:
		return "HTTP TRACE"
	}
	return "HTTP"
}

// shutdown stops serving within timeout: the gRPC listener (grpcLn) is
// closed first, so that a client told NOT_SERVING next finds no new
// connection taken; health checks turn NOT_SERVING,
// the gateway and the gRPC server (grpcSrv) stop accepting at once and
// drain their calls, then the gateway's own gRPC server (gwSrv, which
// serves its health checks) stops; drainMargin before the timeout ends,
// drain tells the calls still running to stop and answer with what they
// did (callDrain); whatever is still running when the timeout passes is
// cut. closeOps, when not nil, stops the operation runner at the same time
// (waiting WaitOperation calls return at once, in-flight items finish),
// within the same timeout.
func shutdown(ctx context.Context, timeout time.Duration, logger *slog.Logger, closeOps func(context.Context) error, drain func(),
	grpcLn net.Listener, healthSrv *health.Server, httpSrv *http.Server, grpcSrv, gwSrv *grpc.Server,
) {
	// Serve then returns (its error is no longer read); GracefulStop below
	// drains the connections it took.
	_ = grpcLn.Close()
	healthSrv.Shutdown() // every service NOT_SERVING from now on

	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	if closeOps != nil {
		var closing sync.WaitGroup
		closing.Go(func() { _ = closeOps(sctx) }) // it logs a cut itself
		defer closing.Wait()
	}
	draining := time.AfterFunc(timeout-drainMargin(timeout), func() {
		logger.Info("shutdown: telling the calls still running to stop", slog.Duration("before_cut", drainMargin(timeout)))
		drain()
	})
	defer draining.Stop()

	// GracefulStop has no deadline of its own; Stop cuts it short. The
	// gRPC server stops taking calls now, with the gateway: gateway calls
	// do not go through it (localConn).
	var stopping sync.WaitGroup
	stopping.Go(grpcSrv.GracefulStop)
	if err := httpSrv.Shutdown(sctx); err != nil {
		logger.Warn("gateway requests cut at the shutdown timeout", slog.Any("error", err))
		_ = httpSrv.Close()
	}
	stopping.Go(gwSrv.GracefulStop)
	stopped := make(chan struct{})
	go func() {
		stopping.Wait()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-sctx.Done():
		logger.Warn("gRPC calls cut at the shutdown timeout")
		grpcSrv.Stop()
		gwSrv.Stop()
		<-stopped
	}
}
