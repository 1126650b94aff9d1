package main

import (
	"log/slog"
	"net"
	"strings"
	"testing"
)

// TestOTelConfigErrorsHideTheirInput: OpenTelemetry's exporter logs an
// OTEL_* variable it cannot parse with the variable's value
// ("parse headers" input=..., "parse url" input=... and an error quoting
// it): the headers are where a collector's credential goes, the endpoint
// may hold a password. Through the broker's logger the message and the
// level stay, the value does not.
func TestOTelConfigErrorsHideTheirInput(t *testing.T) {
	const (
		password = "PLANTEDotelPassword123"
		header   = "PLANTEDotelHeaderToken456"
	)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	for _, tc := range []struct {
		name string
		env  map[string]string
		msg  string // OpenTelemetry's message, which is kept
	}{
		{"headers without =", map[string]string{
			"OTEL_EXPORTER_OTLP_ENDPOINT": "http://" + addr,
			"OTEL_EXPORTER_OTLP_HEADERS":  "Bearer " + header,
		}, "parse headers"},
		{"trace headers without =", map[string]string{
			"OTEL_EXPORTER_OTLP_ENDPOINT":       "http://" + addr,
			"OTEL_EXPORTER_OTLP_TRACES_HEADERS": "authorization=Bearer%20ok,Bearer " + header,
		}, "parse headers"},
		{"a header's key not a token", map[string]string{
			"OTEL_EXPORTER_OTLP_ENDPOINT": "http://" + addr,
			"OTEL_EXPORTER_OTLP_HEADERS":  "Authorization: Bearer " + header + "=x",
		}, "parse headers"},
		{"a header's value badly escaped", map[string]string{
			"OTEL_EXPORTER_OTLP_ENDPOINT": "http://" + addr,
			"OTEL_EXPORTER_OTLP_HEADERS":  "authorization=Bearer%zz" + header,
		}, "escape header value"},
		{"an endpoint whose password has an unescaped /", map[string]string{
			"OTEL_EXPORTER_OTLP_ENDPOINT": "http://u:" + password + "/x@" + addr,
		}, "parse url"},
		{"a trace endpoint whose password has an unescaped /", map[string]string{
			"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://u:" + password + "/x@" + addr + "/v1/traces",
		}, "parse url"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
			t.Setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "200")
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var logs syncWriter
			logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			tr, err := setupTracing(t.Context(), Config{TracesExporter: tracesExporterOTLP}, logger, nil)
			if err != nil {
				t.Fatal(err)
			}
			tr.shutdown(t.Context(), logger)
			out := logs.String()
			if !strings.Contains(out, `"msg":"`+tc.msg+`"`) {
				t.Errorf("no %q line from OpenTelemetry:\n%s", tc.msg, out)
			}
			for _, s := range []string{password, header} {
				if strings.Contains(out, s) {
					t.Errorf("the log holds the OTEL_* variable's secret %q:\n%s", s, out)
				}
			}
		})
	}
}
