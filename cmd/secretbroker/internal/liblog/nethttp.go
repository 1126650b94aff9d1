package liblog

import (
	"context"
	"log"
	"log/slog"
	"strings"
	"time"
)

// HTTPErrorLog returns the ErrorLog of the broker's HTTP servers: net/http's
// own lines, through logger at WARN, except those any client causes once
// per connection before it has sent a request (callerConnLine: a failed
// TLS handshake, which a port scan, a load balancer's TCP check or, under
// mTLS, a client without a certificate makes; an HTTP/2 connection it
// breaks), logged at DEBUG, as the gRPC listener's own are (RouteGRPC):
// a flood of connections must not flood the log.
func HTTPErrorLog(logger *slog.Logger) *log.Logger {
	return log.New(httpErrorWriter{h: logger.Handler()}, "", 0)
}

// callerConnLine reports whether msg is one of net/http's lines about a
// connection its client broke.
func callerConnLine(msg string) bool {
	for _, prefix := range [...]string{
		"http: TLS handshake error from ",
		"http2: server: error reading preface from client ",
		"http2: server connection error from ",
		"http2: server closing client connection: ",
		"http2: received GOAWAY ",
		"timeout waiting for SETTINGS frames from ",
		"timeout waiting for PING response",
	} {
		if strings.HasPrefix(msg, prefix) {
			return true
		}
	}
	return false
}

// httpErrorWriter writes each of net/http's lines as a record of h.
type httpErrorWriter struct{ h slog.Handler }

func (w httpErrorWriter) Write(p []byte) (int, error) {
	msg := strings.TrimSuffix(string(p), "\n")
	level := slog.LevelWarn
	if callerConnLine(msg) {
		level = slog.LevelDebug
	}
	ctx := context.Background()
	if !w.h.Enabled(ctx, level) {
		return len(p), nil
	}
	return len(p), w.h.Handle(ctx, slog.NewRecord(time.Now(), level, msg, 0))
}
