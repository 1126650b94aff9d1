package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc/filters"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/service"
	"github.com/secretbroker/secretbroker/upstream"
)

const (
	// userAgent is the User-Agent sent to GitHub.
	userAgent = "secretbroker"
	// maxMessageBytes bounds a gRPC request and a gateway request body. A
	// secret value is at most 48 KB; sealed and base64 encoded it stays
	// well under this.
	maxMessageBytes = 1 << 20
	// readHeaderTimeout bounds how long the gateway waits for a request's
	// headers.
	readHeaderTimeout = 10 * time.Second
	// idleTimeout closes idle keep-alive connections to the gateway.
	idleTimeout = 2 * time.Minute
)

// run serves the broker until ctx is done, then shuts down gracefully
// within cfg.ShutdownTimeout and returns nil. It binds both listeners
// before serving and then calls ready, if not nil, with their addresses
// (so port 0 works). In dev mode it first starts the embedded GitHub
// emulator and writes a banner with copy-paste commands to banner.
func run(ctx context.Context, cfg Config, logger *slog.Logger, banner io.Writer, ready func(grpcAddr, httpAddr string)) (err error) {
	tp, err := setupTracing(ctx, cfg)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if serr := tp.Shutdown(sctx); serr != nil {
			logger.Warn("tracer provider shutdown", slog.Any("error", serr))
		}
	}()

	pacing := upstream.DefaultPacing()
	pacing.MaxInFlight = cfg.UpstreamMaxInFlight
	pacing.WriteInterval = cfg.UpstreamWriteInterval
	pacing.PointsPerMinute = cfg.UpstreamPointsPerMinute
	pacing.MaxAttempts = cfg.UpstreamMaxAttempts
	upCfg := upstream.Config{
		BaseURL:           cfg.UpstreamURL,
		Token:             cfg.UpstreamToken,
		UserAgent:         userAgent,
		APIVersionActions: cfg.UpstreamAPIVersionActions,
		APIVersionAgents:  cfg.UpstreamAPIVersionAgents,
		LegacyRoutes:      cfg.UpstreamLegacyRoutes,
		Pacing:            &pacing,
		Logger:            logger.With(slog.String("component", "upstream")),
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
		if cfg.UpstreamToken != "" {
			logger.Info("--dev: the GitHub token is not used; the broker talks to the embedded emulator only")
		}
	}
	client, err := upstream.New(upCfg)
	if err != nil {
		return fmt.Errorf("upstream client: %w", err)
	}
	svc := service.New(client, service.Options{
		Logger: logger.With(slog.String("component", "service")),
		KeyTTL: cfg.KeyTTL,
	})
	callers, err := newCallerKeys()
	if err != nil {
		return err
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

	// gRPC server.
	grpcSrv := grpc.NewServer(
		grpc.StatsHandler(otelgrpc.NewServerHandler(
			otelgrpc.WithFilter(filters.Not(filters.HealthCheck())))),
		grpc.ChainUnaryInterceptor(logUnary(logger), recoverUnary(logger), callers.unary()),
		grpc.ChainStreamInterceptor(logStream(logger), recoverStream(logger)),
		grpc.MaxRecvMsgSize(maxMessageBytes),
	)
	secretbrokerv1.RegisterSecretServiceServer(grpcSrv, svc)
	healthSrv := health.NewServer()
	healthSrv.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	healthSrv.SetServingStatus(secretbrokerv1.SecretService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(grpcSrv, healthSrv)
	reflection.Register(grpcSrv)

	// JSON gateway, a client of the gRPC server over a real connection so
	// that JSON calls pass the same interceptors and stats handler.
	conn, err := grpc.NewClient(dialTarget(grpcLn.Addr()),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithStatsHandler(otelgrpc.NewClientHandler(
			otelgrpc.WithFilter(filters.Not(filters.HealthCheck())))),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(maxMessageBytes)),
	)
	if err != nil {
		return fmt.Errorf("gateway connection: %w", err)
	}
	defer conn.Close()
	gw, err := newGateway(ctx, conn, callers)
	if err != nil {
		return err
	}
	httpSrv := &http.Server{
		Handler: otelhttp.NewHandler(http.MaxBytesHandler(gw, maxMessageBytes), "gateway",
			otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string {
				return "HTTP " + r.Method
			})),
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}

	serveErr := make(chan error, 2)
	go func() {
		if err := grpcSrv.Serve(grpcLn); err != nil {
			serveErr <- fmt.Errorf("gRPC server: %w", err)
		}
	}()
	go func() {
		if err := httpSrv.Serve(httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			serveErr <- fmt.Errorf("HTTP server: %w", err)
		}
	}()

	grpcAddr, httpAddr := grpcLn.Addr().String(), httpLn.Addr().String()
	logger.Info("secretbroker serving",
		slog.String("grpc_addr", grpcAddr), slog.String("http_addr", httpAddr),
		slog.Any("config", cfg))
	if dev != nil && banner != nil {
		if err := writeDevBanner(banner, dev.demo, dev.url, grpcAddr, httpAddr); err != nil {
			logger.Warn("dev banner", slog.Any("error", err))
		}
	}
	if ready != nil {
		ready(grpcAddr, httpAddr)
	}

	var failed error
	select {
	case <-ctx.Done():
		logger.Info("shutting down", slog.Duration("timeout", cfg.ShutdownTimeout))
	case failed = <-serveErr:
		logger.Error("server failed; shutting down", slog.Any("error", failed))
	}
	shutdown(ctx, cfg.ShutdownTimeout, logger, healthSrv, httpSrv, grpcSrv)
	if failed != nil {
		return failed
	}
	logger.Info("shut down")
	return nil
}

// shutdown stops serving within timeout: health checks turn NOT_SERVING,
// the gateway stops accepting and drains its requests, then the gRPC
// server drains its calls; whatever is still running when the timeout
// passes is cut.
func shutdown(ctx context.Context, timeout time.Duration, logger *slog.Logger,
	healthSrv *health.Server, httpSrv *http.Server, grpcSrv *grpc.Server,
) {
	healthSrv.Shutdown() // every service NOT_SERVING from now on

	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()

	// The gateway first: its in-flight requests need the gRPC server.
	if err := httpSrv.Shutdown(sctx); err != nil {
		logger.Warn("gateway requests cut at the shutdown timeout", slog.Any("error", err))
		_ = httpSrv.Close()
	}

	// GracefulStop has no deadline of its own; Stop cuts it short.
	stopped := make(chan struct{})
	go func() {
		grpcSrv.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-sctx.Done():
		logger.Warn("gRPC calls cut at the shutdown timeout")
		grpcSrv.Stop()
		<-stopped
	}
}

// dialTarget is the address the gateway dials to reach a listener: a
// wildcard host (":9090" binds all interfaces) becomes loopback.
func dialTarget(a net.Addr) string {
	tcp, ok := a.(*net.TCPAddr)
	if !ok || !tcp.IP.IsUnspecified() {
		return a.String()
	}
	host := "127.0.0.1"
	if tcp.IP.To4() == nil {
		host = "::1"
	}
	return net.JoinHostPort(host, fmt.Sprint(tcp.Port))
}
