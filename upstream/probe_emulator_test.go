package upstream_test

import (
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/secretbroker/secretbroker/upstream"
	"github.com/secretbroker/secretbroker/upstream/emulator"
)

// answerLog is a GitHub (the emulator behind it) whose answers take lat on
// their way back. It records each request's arrival (from start) and
// whether it was refused, and every request that arrived while another
// was at GitHub after a refusal and before any answer that was no
// refusal.
type answerLog struct {
	next  http.RoundTripper
	lat   time.Duration
	start time.Time

	mu       sync.Mutex
	events   []string
	inFlight int
	probing  bool // a refusal was answered, and no success since
	overlaps []string
}

func (l *answerLog) RoundTrip(r *http.Request) (*http.Response, error) {
	l.mu.Lock()
	at := time.Since(l.start)
	if l.probing && l.inFlight > 0 {
		l.overlaps = append(l.overlaps, fmt.Sprintf("%s %s at +%v with %d at GitHub", r.Method, r.URL.Path, at, l.inFlight))
	}
	l.inFlight++
	l.mu.Unlock()
	resp, err := l.next.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	time.Sleep(l.lat)
	refused := resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusTooManyRequests
	l.mu.Lock()
	defer l.mu.Unlock()
	l.inFlight--
	l.probing = refused
	what := "answered"
	if refused {
		what = "refused"
	}
	l.events = append(l.events, fmt.Sprintf("+%v %s", at, what))
	return resp, nil
}

// One client against the embedded emulator, whose secondary limit
// answers without Retry-After: a write past the content-creation limit
// (one a minute here) is refused and starts a 90 s penalty, during which
// every request is refused too. The client pauses 60 s, then sends one
// request alone, the probe, while the five calls that came meanwhile and
// the refused write's retry wait: the penalty still holds, so the probe
// is refused, and the client pauses 2 min (the second refusal in a row).
// Then one probe again; once it is answered, everything else goes. GitHub
// sees two refusals, not seven.
func TestClientProbesAfterAHintlessSecondaryLimit(t *testing.T) {
	const lat = 100 * time.Millisecond
	synctest.Test(t, func(t *testing.T) {
		emu := emulator.New(emulator.Options{Token: replicaToken, Limits: emulator.Limits{
			WritesPerMinute: 1, SecondaryPenalty: 90 * time.Second, OmitRetryAfter: true}})
		emu.AddOrg("octo")
		emu.AddRepo("octo", "app", false)
		gh := &answerLog{next: &emuTransport{h: emu}, lat: lat, start: time.Now()}
		c := replicaClients(t, 1, gh, upstream.DefaultPacing(), nil)[0]
		scope := upstream.Scope{App: upstream.Actions, Owner: "octo", Repo: "app"}

		// +0 the key, +0.1 s the first write; the second, 1 s after the
		// first (the write spacing), is refused: paused until +61.2 s.
		pk, err := c.GetPublicKey(t.Context(), scope)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.PutSecret(t.Context(), scope, "FIRST", seal(t, pk, "one")); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		call := func(f func() error) {
			wg.Go(func() {
				if err := f(); err != nil {
					t.Errorf("a call failed: %v", err)
				}
			})
		}
		call(func() error {
			_, err := c.PutSecret(t.Context(), scope, "SECOND", seal(t, pk, "two"))
			return err
		})
		time.Sleep(2 * time.Second)
		synctest.Wait() // refused: the credential is paused
		for range 5 {
			call(func() error {
				_, err := c.GetPublicKey(t.Context(), scope)
				return err
			})
		}
		wg.Wait()

		gh.mu.Lock()
		defer gh.mu.Unlock()
		want := []string{"+0s answered", "+100ms answered", "+1.1s refused",
			"+1m1.2s refused", "+3m1.3s answered"}
		for range 5 { // the refused write's retry and the five reads, less the probe
			want = append(want, "+3m1.4s answered")
		}
		if !slices.Equal(gh.events, want) {
			t.Errorf("GitHub saw %q,\nwant         %q", gh.events, want)
		}
		if len(gh.overlaps) > 0 {
			t.Errorf("requests went while a probe was at GitHub: %v", gh.overlaps)
		}
		if st := emu.Stats(); st.SecondaryViolations != 2 || st.ContentViolations != 1 {
			t.Errorf("GitHub counted %d secondary violations (%d for content), want 2 (1)", st.SecondaryViolations, st.ContentViolations)
		}
	})
}
