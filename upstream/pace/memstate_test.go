package pace_test

import (
	"testing"

	"github.com/secretbroker/secretbroker/upstream/pace"
	"github.com/secretbroker/secretbroker/upstream/pace/statetest"
)

// MemoryState keeps the State contract; its replicas share one instance.
func TestMemoryStateContract(t *testing.T) {
	statetest.Run(t, func(_ *testing.T, lim pace.StateLimits, n int) ([]pace.State, []func()) {
		s := pace.NewMemoryState(lim)
		states, kill := make([]pace.State, n), make([]func(), n)
		for i := range n {
			states[i], kill[i] = s, func() {}
		}
		return states, kill
	})
}
