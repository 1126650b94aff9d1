package main

import (
	"io"
	"log/slog"

	"github.com/secretbroker/secretbroker/cmd/secretbroker/internal/tracelog"
)

// Log formats, the values of --log-format.
const (
	logFormatJSON = "json"
	logFormatText = "text"
)

// newLogger returns the process logger: JSON lines on w, or text with
// --log-format text (the default in dev mode), at cfg.LogLevel. Every
// record logged with a context inside a traced call carries trace_id and
// span_id (tracelog).
func newLogger(cfg Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	var h slog.Handler = slog.NewJSONHandler(w, opts)
	if cfg.LogFormat == logFormatText {
		h = slog.NewTextHandler(w, opts)
	}
	return slog.New(tracelog.NewHandler(h))
}
