package upstream_test

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/secretbroker/secretbroker/upstream"
	"github.com/secretbroker/secretbroker/upstream/credential"
	"github.com/secretbroker/secretbroker/upstream/emulator"
	"github.com/secretbroker/secretbroker/upstream/metricstest"
	"github.com/secretbroker/secretbroker/upstream/pace"
)

// loopingStates is a SharedState whose states each run a background loop
// until they are closed, as the broker's Redis states do (cmd/secretbroker:
// a heartbeat each second).
type loopingStates struct {
	mu    sync.Mutex
	live  map[string]int // loops running, by credential
	stops []func()
}

type loopingState struct {
	*pace.MemoryState
	stop func()
}

func (s loopingState) Close() { s.stop() }

func (l *loopingStates) state(cred string, lim pace.StateLimits) (pace.State, error) {
	done := make(chan struct{})
	stop := sync.OnceFunc(func() { close(done) })
	l.mu.Lock()
	l.live[cred]++
	l.stops = append(l.stops, stop)
	l.mu.Unlock()
	go func() {
		<-done
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.live[cred]--; l.live[cred] == 0 {
			delete(l.live, cred)
		}
	}()
	return loopingState{MemoryState: pace.NewMemoryState(lim), stop: stop}, nil
}

// closeAll ends every loop, as the broker's shutdown does.
func (l *loopingStates) closeAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, stop := range l.stops {
		stop()
	}
}

// running returns the credentials whose loops run, sorted.
func (l *loopingStates) running() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]int{}
	for k, v := range l.live {
		out[k] = v
	}
	return out
}

// An installation GitHub reports gone (the app uninstalled from its
// account, installed again under a new id: GitHub's ids are not reused)
// leaves the client: its pacer, its series and its shared pacing state,
// whose loop ends. However many times the app is uninstalled and
// installed again, the client keeps the app's credential and the one
// installation in use, whether the uninstall shows as the held token's
// 401 (the renewal's mint is 404) or as the next mint's 404.
func TestUninstalledInstallationsDropped(t *testing.T) {
	key, _ := newRSAKey(t)
	const (
		cycles   = 20
		lifetime = 10 * time.Minute
	)
	tests := []struct {
		name string
		// gone waits, after the uninstall, until the client finds out
		// at its next call.
		gone func()
	}{
		{"the held token refused", func() {}},
		{"the next mint refused", func() { time.Sleep(lifetime) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				emu := emulator.New(emulator.Options{App: &emulator.App{
					ID: appID, PublicKey: &key.PublicKey, TokenLifetime: lifetime,
					Installations: []emulator.Installation{{ID: 1, Account: "octo-org"}},
				}})
				emu.SeedDemo()
				tr := &memTransport{h: emu, auth: map[string]bool{}}
				app, err := credential.NewApp(credential.AppConfig{AppID: appID, PrivateKey: key, BaseURL: memRoot, Transport: tr})
				if err != nil {
					t.Fatal(err)
				}
				states := &loopingStates{live: map[string]int{}}
				reader := sdkmetric.NewManualReader()
				client := newClient(t, upstream.Config{BaseURL: memRoot, Credentials: app, HTTPClient: &http.Client{Transport: tr},
					SharedState: states.state, MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))})
				defer states.closeAll()
				ctx := context.Background()

				for cycle := range cycles {
					if _, err := client.GetPublicKey(ctx, orgScope); err != nil {
						t.Fatalf("cycle %d, installed: %v", cycle, err)
					}
					emu.Uninstall("octo-org")
					in, _ := emu.Install("octo-org")
					tc.gone()
					_, err := client.GetPublicKey(ctx, orgScope)
					wantNotInstalled(t, "after the uninstall", err)
					if _, err := client.GetPublicKey(ctx, orgScope); err != nil {
						t.Fatalf("cycle %d, installed again as %d: %v", cycle, in.ID, err)
					}
				}
				synctest.Wait()

				last, _ := emu.Install("octo-org")
				current := "installation:" + strconv.FormatInt(last.ID, 10)
				if got := strings.Join(client.Credentials(), " "); got != "app "+current {
					t.Errorf("after %d reinstalls the client keeps credentials %q, want %q", cycles, got, "app "+current)
				}
				if got := states.running(); len(got) != 2 || got["app"] != 1 || got[current] != 1 {
					t.Errorf("shared states' loops running %v, want one each for app and %s", got, current)
				}
				var series []string
				for k := range metricstest.Read(t, reader) {
					if strings.HasPrefix(k, "secretbroker_pacer_queue_depth{") {
						series = append(series, k)
					}
				}
				if len(series) != 2 {
					t.Errorf("queue depth series %v, want the app's and %s's", series, current)
				}
				if _, ok := client.PacerStatsOf("installation:1"); ok {
					t.Errorf("the first, uninstalled installation still has a pacer")
				}
			})
		})
	}
}
