package liblog

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"google.golang.org/grpc/grpclog"
)

// grpcLogger is grpc-go's and grpc-gateway's logger (grpclog.LoggerV2)
// writing through the broker's slog logger, so that their lines are in the
// broker's format (JSON with --log-format=json), not plain text on stderr
// between the log's and the audit trail's JSON lines. Everything they log
// but a fatal error goes at DEBUG: much of it is a caller's doing (a
// header grpc-gateway cannot forward, a client gone before its answer was
// written), and a flood must not flood the log.
type grpcLogger struct{ l *slog.Logger }

// RouteGRPC makes logger grpc's logger. grpclog's logger is the
// process's: call it once, before any gRPC function (realMain does).
func RouteGRPC(logger *slog.Logger) {
	grpclog.SetLoggerV2(grpcLogger{l: logger.With(slog.String("component", "grpc"))})
}

var _ grpclog.LoggerV2 = grpcLogger{}

func (g grpcLogger) log(severity string, msg string) {
	g.l.Debug(msg, slog.String("grpc_severity", severity))
}

func (g grpcLogger) Info(args ...any)                 { g.log("info", fmt.Sprint(args...)) }
func (g grpcLogger) Infoln(args ...any)               { g.log("info", fmt.Sprint(args...)) }
func (g grpcLogger) Infof(format string, args ...any) { g.log("info", fmt.Sprintf(format, args...)) }
func (g grpcLogger) Warning(args ...any)              { g.log("warning", fmt.Sprint(args...)) }
func (g grpcLogger) Warningln(args ...any)            { g.log("warning", fmt.Sprint(args...)) }
func (g grpcLogger) Warningf(format string, args ...any) {
	g.log("warning", fmt.Sprintf(format, args...))
}
func (g grpcLogger) Error(args ...any)                 { g.log("error", fmt.Sprint(args...)) }
func (g grpcLogger) Errorln(args ...any)               { g.log("error", fmt.Sprint(args...)) }
func (g grpcLogger) Errorf(format string, args ...any) { g.log("error", fmt.Sprintf(format, args...)) }

// Fatal, Fatalln and Fatalf log at ERROR and exit 1, as grpclog requires.
func (g grpcLogger) Fatal(args ...any)   { g.fatal(fmt.Sprint(args...)) }
func (g grpcLogger) Fatalln(args ...any) { g.fatal(fmt.Sprint(args...)) }
func (g grpcLogger) Fatalf(format string, args ...any) {
	g.fatal(fmt.Sprintf(format, args...))
}

func (g grpcLogger) fatal(msg string) {
	g.l.Error(msg, slog.String("grpc_severity", "fatal"))
	os.Exit(1)
}

// V reports whether verbosity level l is logged: only grpc's default
// level, and only when DEBUG is.
func (g grpcLogger) V(l int) bool {
	return l <= 0 && g.l.Enabled(context.Background(), slog.LevelDebug)
}
