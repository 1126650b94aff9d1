package main

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/upstream"
	"github.com/secretbroker/secretbroker/upstream/emulator"
)

func TestDevLimitsConfig(t *testing.T) {
	def := upstream.DefaultPacing()
	type pacing struct {
		off         bool
		maxInFlight int
		interval    time.Duration
		points      int
		cpu         time.Duration
		perMinute   int
		perHour     int
	}
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    pacing
		wantErr string
	}{
		{name: "dev keeps the limits by default", args: []string{"--dev"},
			want: pacing{false, def.MaxInFlight, def.WriteInterval, def.PointsPerMinute, def.CPUPerMinute, def.WritesPerMinute, def.WritesPerHour}},
		{name: "on", args: []string{"--dev", "--dev-limits=on"},
			want: pacing{false, def.MaxInFlight, def.WriteInterval, def.PointsPerMinute, def.CPUPerMinute, def.WritesPerMinute, def.WritesPerHour}},
		{name: "off lifts the pacing", args: []string{"--dev", "--dev-limits=off"},
			want: pacing{true, upstream.MaxInFlightLimit, 0, 0, 0, 0, 0}},
		{name: "off from the environment", env: map[string]string{"SECRETBROKER_DEV": "true", "SECRETBROKER_DEV_LIMITS": "off"},
			want: pacing{true, upstream.MaxInFlightLimit, 0, 0, 0, 0, 0}},
		{name: "off keeps pacing flags given", args: []string{"--dev", "--dev-limits=off", "--upstream-write-interval=250ms", "--upstream-max-in-flight=7", "--upstream-writes-per-hour=900"},
			env: map[string]string{"SECRETBROKER_UPSTREAM_POINTS_PER_MINUTE": "600", "SECRETBROKER_UPSTREAM_WRITES_PER_MINUTE": "70",
				"SECRETBROKER_UPSTREAM_CPU_TIME_PER_MINUTE": "45s"},
			want: pacing{true, 7, 250 * time.Millisecond, 600, 45 * time.Second, 70, 900}},
		{name: "off with --dev-github-app, which is --dev", args: []string{"--dev-github-app", "--dev-limits=off"},
			want: pacing{true, upstream.MaxInFlightLimit, 0, 0, 0, 0, 0}},
		{name: "off without dev", args: []string{"--dev-limits=off"}, env: map[string]string{"GITHUB_TOKEN": "ghp_x"},
			wantErr: "--dev-limits=off applies to --dev only"},
		{name: "neither on nor off", args: []string{"--dev", "--dev-limits=false"}, wantErr: "--dev-limits: not a valid value (not shown, as it may be a secret): want on or off"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := loadConfig(tt.args, envMap(tt.env), io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("loadConfig: %v, want an error with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("loadConfig: %v", err)
			}
			got := pacing{cfg.DevLimitsOff, cfg.UpstreamMaxInFlight, cfg.UpstreamWriteInterval, cfg.UpstreamPointsPerMinute,
				cfg.UpstreamCPUTimePerMinute, cfg.UpstreamWritesPerMinute, cfg.UpstreamWritesPerHour}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestDevEmulatorLimits(t *testing.T) {
	for _, tt := range []struct {
		off  bool
		want emulator.Limits
	}{
		{false, emulator.GitHubLimits()},
		{true, emulator.Limits{}},
	} {
		c := Config{DevLimitsOff: tt.off}
		if got := c.devEmulatorLimits(); got != tt.want {
			t.Errorf("DevLimitsOff %t: emulator limits %+v, want %+v", tt.off, got, tt.want)
		}
	}
}

// TestRunDevLimitsOff: a --dev --dev-limits=off broker takes 20
// concurrent PutSecrets, none held by write spacing or a points budget
// nor refused by the emulator's limits, and reports the connections its
// upstream requests used.
func TestRunDevLimitsOff(t *testing.T) {
	const puts = 20
	// --max-working-calls=0: the bound on calls at work refuses a call
	// that waited 50 ms for a place, and 20 calls at once on a cold,
	// busy machine (-race, one CPU) can wait longer; this test is about
	// GitHub's limits, not the broker's own.
	cfg, err := loadConfig([]string{"--dev", "--dev-limits=off", "--grpc-addr=127.0.0.1:0", "--http-addr=127.0.0.1:0",
		"--admin-addr=127.0.0.1:0", "--shutdown-timeout=5s", "--max-working-calls=0"}, envMap(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	b := startBroker(t, cfg)
	client := secretbrokerv1.NewSecretServiceClient(b.conn)
	var wg sync.WaitGroup
	errs := make(chan error, puts)
	for i := range puts {
		wg.Go(func() {
			_, err := client.PutSecret(t.Context(), &secretbrokerv1.PutSecretRequest{
				Name:    fmt.Sprintf("repos/octo-org/hello-world/actions/secrets/LOAD_%d", i),
				Payload: &secretbrokerv1.PutSecretRequest_Value{Value: "v"},
			})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("PutSecret: %v", err)
		}
	}
	fams, _ := b.scrape(t)
	for _, reason := range []string{"spacing", "points"} {
		if v, _ := metricValue(fams, "secretbroker_pacer_wait_seconds", map[string]string{"reason": reason}); v != 0 {
			t.Errorf("%v requests waited for %s", v, reason)
		}
	}
	requests, _ := metricValue(fams, "secretbroker_upstream_requests_total", nil)
	ok, _ := metricValue(fams, "secretbroker_upstream_requests_total", map[string]string{"method": "PUT", "status": "201"})
	if ok != puts {
		t.Errorf("%v PUTs answered 201, want %d (requests in all: %v)", ok, puts, requests)
	}
	opened, _ := metricValue(fams, "secretbroker_upstream_connections_total", map[string]string{"reused": "false"})
	reused, _ := metricValue(fams, "secretbroker_upstream_connections_total", map[string]string{"reused": "true"})
	if opened < 1 || opened+reused != requests {
		t.Errorf("connections: %v opened, %v reused; want at least one opened and one per request (%v)", opened, reused, requests)
	}
}
