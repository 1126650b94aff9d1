package upstream

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestPacingValidate(t *testing.T) {
	mod := func(f func(*Pacing)) Pacing {
		p := DefaultPacing()
		f(&p)
		return p
	}
	for _, tc := range []struct {
		name       string
		p          Pacing
		field      string // "" when valid
		value      any
		ruleHas    string
		newFillsIt bool // New accepts it: MaxInFlight 0 selects the default
	}{
		{name: "default", p: DefaultPacing()},
		{name: "MaxInFlight 0", p: mod(func(p *Pacing) { p.MaxInFlight = 0 }), field: "MaxInFlight", value: 0, ruleHas: "between 1 and 100", newFillsIt: true},
		{name: "MaxInFlight 1", p: mod(func(p *Pacing) { p.MaxInFlight = 1 })},
		{name: "MaxInFlight 100", p: mod(func(p *Pacing) { p.MaxInFlight = MaxInFlightLimit })},
		{name: "MaxInFlight 101", p: mod(func(p *Pacing) { p.MaxInFlight = 101 }), field: "MaxInFlight", value: 101, ruleHas: "between 1 and 100"},
		{name: "MaxInFlight -1", p: mod(func(p *Pacing) { p.MaxInFlight = -1 }), field: "MaxInFlight", value: -1, ruleHas: "between 1 and 100"},
		{name: "WriteInterval 0", p: mod(func(p *Pacing) { p.WriteInterval = 0 })},
		{name: "WriteInterval negative", p: mod(func(p *Pacing) { p.WriteInterval = -time.Second }), field: "WriteInterval", value: -time.Second, ruleHas: "not be negative"},
		{name: "points off", p: mod(func(p *Pacing) { p.PointsPerMinute = 0 })},
		{name: "points 5", p: mod(func(p *Pacing) { p.PointsPerMinute = MinPointsPerMinute })},
		{name: "points 4", p: mod(func(p *Pacing) { p.PointsPerMinute = 4 }), field: "PointsPerMinute", value: 4, ruleHas: "at least 5"},
		{name: "points negative", p: mod(func(p *Pacing) { p.PointsPerMinute = -1 }), field: "PointsPerMinute", value: -1, ruleHas: "0 (off)"},
		{name: "MaxAttempts 1", p: mod(func(p *Pacing) { p.MaxAttempts = 1 })},
		{name: "MaxAttempts 20", p: mod(func(p *Pacing) { p.MaxAttempts = MaxAttemptsLimit })},
		{name: "MaxAttempts 0", p: mod(func(p *Pacing) { p.MaxAttempts = 0 }), field: "MaxAttempts", value: 0, ruleHas: "between 1 and 20"},
		{name: "MaxAttempts 21", p: mod(func(p *Pacing) { p.MaxAttempts = 21 }), field: "MaxAttempts", value: 21, ruleHas: "between 1 and 20"},
		{name: "backoff zero", p: mod(func(p *Pacing) { p.BackoffBase, p.BackoffMax = 0, 0 })},
		{name: "backoff negative", p: mod(func(p *Pacing) { p.BackoffBase = -1 }), field: "BackoffBase", value: time.Duration(-1), ruleHas: "not be negative"},
		{name: "backoff max below base", p: mod(func(p *Pacing) { p.BackoffMax = time.Millisecond }), field: "BackoffMax", value: time.Millisecond, ruleHas: "at least BackoffBase (1s)"},
		{name: "secondary pause zero", p: mod(func(p *Pacing) { p.SecondaryPause = 0 })},
		{name: "secondary pause negative", p: mod(func(p *Pacing) { p.SecondaryPause = -1 }), field: "SecondaryPause", value: time.Duration(-1), ruleHas: "not be negative"},
		{name: "queue bounds", p: mod(func(p *Pacing) { p.MaxQueue, p.MaxQueueWait = 1000, 30*time.Second })},
		{name: "MaxQueue negative", p: mod(func(p *Pacing) { p.MaxQueue = -1 }), field: "MaxQueue", value: -1, ruleHas: "0 (no bound)"},
		{name: "MaxQueueWait negative", p: mod(func(p *Pacing) { p.MaxQueueWait = -time.Second }), field: "MaxQueueWait", value: -time.Second, ruleHas: "0 (no bound)"},
		{name: "CPU time off", p: mod(func(p *Pacing) { p.CPUPerMinute = 0 })},
		{name: "CPU time negative", p: mod(func(p *Pacing) { p.CPUPerMinute = -time.Second }), field: "CPUPerMinute", value: -time.Second, ruleHas: "0 (off)"},
		{name: "first field wins", p: Pacing{MaxInFlight: 101, WriteInterval: -1, MaxAttempts: 0}, field: "MaxInFlight", value: 101, ruleHas: "between 1 and 100"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.p.Validate()
			_, newErr := New(Config{Pacing: &tc.p})
			if tc.field == "" {
				if err != nil || newErr != nil {
					t.Fatalf("Validate: %v; New: %v; want both nil", err, newErr)
				}
				return
			}
			var pe *PacingError
			if !errors.As(err, &pe) {
				t.Fatalf("Validate: %v (%T), want a *PacingError", err, err)
			}
			if pe.Field != tc.field || pe.Value != tc.value || !strings.Contains(pe.Rule, tc.ruleHas) ||
				!strings.HasPrefix(pe.Rule, "must ") {
				t.Errorf("PacingError %+v, want field %s, value %v, a rule with %q", *pe, tc.field, tc.value, tc.ruleHas)
			}
			if want := "upstream: pacing: " + tc.field + " " + pe.Rule + "; got "; !strings.HasPrefix(err.Error(), want) {
				t.Errorf("Error() = %q, want it to start %q", err, want)
			}
			if tc.newFillsIt {
				if newErr != nil {
					t.Errorf("New: %v, want MaxInFlight 0 filled with the default", newErr)
				}
			} else if !errors.As(newErr, &pe) || pe.Field != tc.field {
				t.Errorf("New: %v, want the same *PacingError on %s", newErr, tc.field)
			}
		})
	}
}
