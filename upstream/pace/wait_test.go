package pace

import (
	"net/http"
	"strconv"
	"testing"
	"testing/synctest"
	"time"
)

// Permit.Waited says how long a request waited and what held it back last:
// nothing, the places in flight, the write spacing, the points budget, or
// a pause GitHub imposed.
func TestPermitWaited(t *testing.T) {
	for _, tc := range []struct {
		name     string
		cfg      Config
		setup    func(t *testing.T, p *Pacer) // occupies the pacer
		method   string
		wantWait time.Duration
		wantWhy  Reason
	}{{
		name:   "admitted at once",
		cfg:    Config{MaxInFlight: 1},
		setup:  func(*testing.T, *Pacer) {},
		method: http.MethodGet,
	}, {
		name: "places in flight",
		cfg:  Config{MaxInFlight: 1},
		setup: func(t *testing.T, p *Pacer) {
			pm, err := p.Acquire(t.Context(), Request{Method: http.MethodGet})
			if err != nil {
				t.Fatal(err)
			}
			time.AfterFunc(3*time.Second, func() { pm.Done(200, nil, time.Millisecond) })
		},
		method:   http.MethodGet,
		wantWait: 3 * time.Second,
		wantWhy:  ReasonQueue,
	}, {
		name: "write spacing",
		cfg:  Config{MaxInFlight: 10, WriteInterval: time.Second},
		setup: func(t *testing.T, p *Pacer) {
			pm, err := p.Acquire(t.Context(), Request{Method: http.MethodPut})
			if err != nil {
				t.Fatal(err)
			}
			pm.Done(204, nil, 0)
		},
		method:   http.MethodPut,
		wantWait: time.Second,
		wantWhy:  ReasonSpacing,
	}, {
		name: "points budget",
		cfg:  Config{MaxInFlight: 10, PointsPerMinute: WritePoints},
		setup: func(t *testing.T, p *Pacer) {
			pm, err := p.Acquire(t.Context(), Request{Method: http.MethodPut})
			if err != nil {
				t.Fatal(err)
			}
			pm.Done(204, nil, 0)
		},
		method:   http.MethodGet,
		wantWait: Window,
		wantWhy:  ReasonBudget,
	}, {
		name: "a pause GitHub imposed",
		cfg:  Config{MaxInFlight: 10, SecondaryPause: time.Minute},
		setup: func(t *testing.T, p *Pacer) {
			pm, err := p.Acquire(t.Context(), Request{Method: http.MethodGet})
			if err != nil {
				t.Fatal(err)
			}
			pm.Done(http.StatusTooManyRequests, http.Header{"Retry-After": {strconv.Itoa(30)}}, 0)
		},
		method:   http.MethodGet,
		wantWait: 30 * time.Second,
		wantWhy:  ReasonPause,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p := newPacer(t, tc.cfg)
				tc.setup(t, p)
				pm, err := p.Acquire(t.Context(), Request{Method: tc.method})
				if err != nil {
					t.Fatal(err)
				}
				defer pm.Done(200, nil, 0)
				if d, why := pm.Waited(); d != tc.wantWait || why != tc.wantWhy {
					t.Errorf("Waited() = %v, %v; want %v, %v", d, why, tc.wantWait, tc.wantWhy)
				}
			})
		})
	}
}
