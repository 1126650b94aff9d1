package upstream

import (
	"fmt"

	"github.com/secretbroker/secretbroker/upstream/pace"
)

// StateFunc returns the pacing state a credential shares with the other
// replicas of the broker (for example a redisstate.State), for the limits
// lim taken from Pacing. credential names the credential (Credential
// for Config.Token); it is never the token itself. A state with a
// Close() method is closed when the client drops its credential: a GitHub
// App installation GitHub reports gone (uninstalled).
type StateFunc func(credential string, lim pace.StateLimits) (pace.State, error)

// StateLimits returns the limits of p that replicas share, and GitHub's
// limit on requests in flight (MaxInFlightLimit), which binds the
// replicas together: each keeps to its own MaxInFlight, and all of them
// to MaxInFlightLimit.
func (p Pacing) StateLimits() pace.StateLimits {
	return pace.StateLimits{
		PointsPerMinute: p.PointsPerMinute,
		WriteInterval:   p.WriteInterval,
		WritesPerMinute: p.WritesPerMinute,
		WritesPerHour:   p.WritesPerHour,
		SecondaryPause:  p.SecondaryPause,
		MaxInFlight:     MaxInFlightLimit,
		CPUPerMinute:    p.CPUPerMinute,
	}
}

// paceConfig is p's pace.Config, with the shared state newState returns for
// credential when newState is set.
func (p Pacing) paceConfig(newState StateFunc, credential string) (pace.Config, error) {
	cfg := p.config()
	if newState == nil {
		return cfg, nil
	}
	st, err := newState(credential, p.StateLimits())
	if err != nil {
		return pace.Config{}, fmt.Errorf("upstream: shared pacing state of %s: %w", credential, err)
	}
	cfg.State = st
	return cfg, nil
}
