package main

import (
	"fmt"
	"strconv"
	"strings"
)

// The environment variables that decide whether spans are exported at
// all. The exporter itself (autoexport) reads these and the other OTEL_*
// variables: OTEL_EXPORTER_OTLP_PROTOCOL, OTEL_EXPORTER_OTLP_HEADERS,
// OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES and so on.
const (
	envTracesExporter      = "OTEL_TRACES_EXPORTER"
	envOTLPEndpoint        = "OTEL_EXPORTER_OTLP_ENDPOINT"
	envOTLPTracesEndpoint  = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	tracesExporterOTLP     = "otlp"
	tracesExporterConsole  = "console"
	tracesExporterNone     = "none"
	tracesExporterDisabled = "" // neither variable set: nothing exported
)

// The sampler variables, and the samplers of OTEL_TRACES_SAMPLER the
// broker takes (OpenTelemetry's, but for the remote ones).
const (
	envTracesSampler               = "OTEL_TRACES_SAMPLER"
	envTracesSamplerArg            = "OTEL_TRACES_SAMPLER_ARG"
	samplerAlwaysOn                = "always_on"
	samplerAlwaysOff               = "always_off"
	samplerTraceIDRatio            = "traceidratio"
	samplerParentBasedAlwaysOn     = "parentbased_always_on"
	samplerParentBasedAlwaysOff    = "parentbased_always_off"
	samplerParentBasedTraceIDRatio = "parentbased_traceidratio"
	defaultTracesSampler           = samplerParentBasedAlwaysOn
)

// samplerRatioDefault is the ratio of a trace id ratio sampler without
// OTEL_TRACES_SAMPLER_ARG.
const samplerRatioDefault = 1.0

// tracesSamplerFromEnv returns the sampler OTEL_TRACES_SAMPLER names
// (lower-cased; parentbased_always_on when unset or empty) and, for the
// trace id ratio samplers, its ratio: OTEL_TRACES_SAMPLER_ARG, 0 to 1, 1
// when unset. Another sampler, or a ratio that is not a number from 0 to
// 1, is an error.
func tracesSamplerFromEnv(lookupEnv func(string) (string, bool)) (string, float64, error) {
	v, _ := lookupEnv(envTracesSampler)
	name := strings.ToLower(strings.TrimSpace(v))
	switch name {
	case "":
		return defaultTracesSampler, samplerRatioDefault, nil
	case samplerAlwaysOn, samplerAlwaysOff, samplerParentBasedAlwaysOn, samplerParentBasedAlwaysOff:
		return name, samplerRatioDefault, nil
	case samplerTraceIDRatio, samplerParentBasedTraceIDRatio:
		arg, _ := lookupEnv(envTracesSamplerArg)
		if arg = strings.TrimSpace(arg); arg == "" {
			return name, samplerRatioDefault, nil
		}
		ratio, err := strconv.ParseFloat(arg, 64)
		if err != nil || !(ratio >= 0 && ratio <= 1) {
			return "", 0, fmt.Errorf("%s: want a ratio from 0 to 1 for %s (the value is not shown, as it may be a secret)", envTracesSamplerArg, name)
		}
		return name, ratio, nil
	}
	return "", 0, fmt.Errorf("%s: want %s, %s, %s, %s, %s or %s (the value is not shown, as it may be a secret)", envTracesSampler,
		samplerParentBasedAlwaysOn, samplerParentBasedAlwaysOff, samplerParentBasedTraceIDRatio,
		samplerAlwaysOn, samplerAlwaysOff, samplerTraceIDRatio)
}

// The values of OTEL_METRICS_EXPORTER the broker takes. "prometheus",
// which autoexport would serve on a listener of its own, is left out:
// /metrics on the admin listener serves Prometheus already.
const (
	envMetricsExporter     = "OTEL_METRICS_EXPORTER"
	metricsExporterOTLP    = "otlp"
	metricsExporterConsole = "console"
	metricsExporterNone    = "none"
)

// metricsExporterFromEnv returns where OTEL_METRICS_EXPORTER asks metrics
// to be pushed: otlp, console, or "" for none (unset, empty or none).
// Another value is an error.
func metricsExporterFromEnv(lookupEnv func(string) (string, bool)) (string, error) {
	v, _ := lookupEnv(envMetricsExporter)
	switch v {
	case "", metricsExporterNone:
		return "", nil
	case metricsExporterOTLP, metricsExporterConsole:
		return v, nil
	}
	return "", fmt.Errorf("%s: want %s, %s or %s (Prometheus is served at /metrics on the admin listener) (the value is not shown, as it may be a secret)",
		envMetricsExporter, metricsExporterOTLP, metricsExporterConsole, metricsExporterNone)
}

// tracesExporterFromEnv returns the span exporter the environment asks
// for: OTEL_TRACES_EXPORTER when set (otlp, console or none), else otlp
// when OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
// is set, else "" (nothing is exported; autoexport alone would default to
// OTLP on localhost). Another value of OTEL_TRACES_EXPORTER is an error.
func tracesExporterFromEnv(lookupEnv func(string) (string, bool)) (string, error) {
	if v, ok := lookupEnv(envTracesExporter); ok && v != "" {
		switch v {
		case tracesExporterOTLP, tracesExporterConsole, tracesExporterNone:
			return v, nil
		}
		return "", fmt.Errorf("%s: want %s, %s or %s (the value is not shown, as it may be a secret)", envTracesExporter, tracesExporterOTLP, tracesExporterConsole, tracesExporterNone)
	}
	for _, name := range []string{envOTLPEndpoint, envOTLPTracesEndpoint} {
		if v, ok := lookupEnv(name); ok && v != "" {
			return tracesExporterOTLP, nil
		}
	}
	return tracesExporterDisabled, nil
}
