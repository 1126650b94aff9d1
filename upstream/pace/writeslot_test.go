package pace

import (
	"testing"
	"time"
)

func TestWriteSlot(t *testing.T) {
	const ms = time.Millisecond
	type step struct {
		op       string // "start", "done", "unsent", "next"
		at       time.Duration
		wantAt   time.Duration // for next
		wantBusy bool          // for next
	}
	for _, tc := range []struct {
		name     string
		interval time.Duration
		steps    []step
	}{
		{"first write goes at once", time.Second, []step{
			{"next", 0, 0, false},
		}},
		{"one at a time, an interval apart", time.Second, []step{
			{"start", 0, 0, false},
			{"next", 100 * ms, time.Second, true},
			{"done", 300 * ms, 0, false},
			{"next", 300 * ms, time.Second, false},
			{"next", 2 * time.Second, 2 * time.Second, false},
		}},
		{"a slow write holds the slot past the interval", time.Second, []step{
			{"start", 0, 0, false},
			{"next", 1500 * ms, 1500 * ms, true},
			{"done", 1500 * ms, 0, false},
			{"next", 1500 * ms, 1500 * ms, false},
		}},
		{"an unsent write gives its place back", time.Second, []step{
			{"start", 0, 0, false},
			{"done", 300 * ms, 0, false},
			{"start", time.Second, 0, false},
			{"unsent", time.Second, 0, false},
			{"next", time.Second, time.Second, false},
		}},
		{"interval 0: neither serialized nor spaced", 0, []step{
			{"start", 0, 0, false},
			{"start", 0, 0, false},
			{"next", 0, 0, false},
			{"unsent", 0, 0, false},
			{"next", 0, 0, false},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewWriteSlot(tc.interval)
			for i, st := range tc.steps {
				switch st.op {
				case "start":
					s.Start(at(st.at))
				case "done":
					s.Done()
				case "unsent":
					s.Unsent()
				case "next":
					got, busy := s.Next(at(st.at))
					if !got.Equal(at(st.wantAt)) || busy != st.wantBusy {
						t.Errorf("step %d: Next(+%v) = +%v, busy %v; want +%v, busy %v", i, st.at, got.Sub(t0), busy, st.wantAt, st.wantBusy)
					}
				}
			}
		})
	}
}

func TestWriteSlotEstimate(t *testing.T) {
	s := NewWriteSlot(time.Second)
	s.Start(t0)
	for _, tc := range []struct {
		from  time.Duration
		ahead int
		want  time.Duration
	}{
		{0, 0, time.Second},
		{0, 3, 4 * time.Second},
		{10 * time.Second, 0, 10 * time.Second}, // held until then by something else
		{10 * time.Second, 2, 12 * time.Second},
	} {
		if got := s.Estimate(at(tc.from), tc.ahead); !got.Equal(at(tc.want)) {
			t.Errorf("Estimate(+%v, %d) = +%v, want +%v", tc.from, tc.ahead, got.Sub(t0), tc.want)
		}
	}
	if got := NewWriteSlot(0).Estimate(t0, 100); !got.Equal(t0) {
		t.Errorf("interval 0: Estimate = +%v, want now", got.Sub(t0))
	}
}
