// Package liblog owns the logs of the libraries the broker uses, written
// through the broker's slog logger instead of their own plain text on
// standard error: grpc-go's and grpc-gateway's (RouteGRPC, at DEBUG with
// their severity), the ErrorLog of net/http's servers (HTTPErrorLog, at
// WARN but for the lines any client causes, at DEBUG), and
// OpenTelemetry's internal logger's (OTelHandler, with the values of
// OTEL_* variables it repeats hidden).
package liblog
