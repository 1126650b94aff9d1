package upstream

import (
	"net/http"
	"testing"
	"time"
)

func TestUpdatedWithin(t *testing.T) {
	date := time.Date(2026, 11, 27, 21, 30, 5, 0, time.UTC)
	dated := http.Header{"Date": {date.Format(http.TimeFormat)}}
	tests := []struct {
		name     string
		h        http.Header
		took     time.Duration
		wantOK   bool
		from, to time.Time
	}{
		{"quick answer", dated, 30 * time.Millisecond, true, date.Add(-2 * time.Second), date.Add(time.Second)},
		{"no time at all", dated, 0, true, date.Add(-time.Second), date.Add(time.Second)},
		{"slow answer", dated, 2500 * time.Millisecond, true, date.Add(-4 * time.Second), date.Add(time.Second)},
		{"no Date", http.Header{}, time.Millisecond, false, time.Time{}, time.Time{}},
		{"unparsable Date", http.Header{"Date": {"yesterday"}}, time.Millisecond, false, time.Time{}, time.Time{}},
		{"RFC 850 Date", http.Header{"Date": {"Friday, 27-Nov-26 21:30:05 GMT"}}, 0, true, date.Add(-time.Second), date.Add(time.Second)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			from, to, ok := updatedWithin(tt.h, tt.took)
			if ok != tt.wantOK || !from.Equal(tt.from) || !to.Equal(tt.to) {
				t.Errorf("updatedWithin = %v, %v, %v; want %v, %v, %v", from, to, ok, tt.from, tt.to, tt.wantOK)
			}
			if ok && (from.Location() != time.UTC || to.Location() != time.UTC) {
				t.Errorf("times not in UTC: %v, %v", from, to)
			}
		})
	}
}

// TestPutSecretWritten: PutSecretFunc reports 201 as created and bounds
// updated_at from the answer's Date, which net/http's server sets.
func TestPutSecretWritten(t *testing.T) {
	tests := []struct {
		status      int
		wantCreated bool
	}{
		{http.StatusCreated, true},
		{http.StatusNoContent, false},
	}
	for _, tt := range tests {
		t.Run(http.StatusText(tt.status), func(t *testing.T) {
			f := newFake(t, fixed(reply{Status: tt.status}))
			c := newClient(t, Config{BaseURL: f.URL})
			before := time.Now().Truncate(time.Second)
			w, err := c.PutSecretFunc(t.Context(), repActions, "S", func() (PutSecretBody, error) {
				return PutSecretBody{EncryptedValue: "dmFs", KeyID: "k"}, nil
			})
			after := time.Now()
			if err != nil {
				t.Fatal(err)
			}
			if w.Created != tt.wantCreated {
				t.Errorf("created %v, want %v", w.Created, tt.wantCreated)
			}
			// The server's clock is this one: the write happened
			// between before and after, which the range must hold.
			if w.UpdatedFrom.After(before) || w.UpdatedTo.Before(after.Truncate(time.Second)) {
				t.Errorf("range %v..%v does not hold %v..%v", w.UpdatedFrom, w.UpdatedTo, before, after)
			}
		})
	}
}
