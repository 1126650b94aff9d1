package upstream

import "time"

// Pacing returns the pacing the client applies (New's defaults filled in).
func (c *Client) Pacing() Pacing { return c.pacing }

// WritesDuration estimates how long n more writes take under p on one
// credential: n times WriteInterval, but never less than the content
// budgets allow (WritesPerMinute writes in any minute, WritesPerHour in
// any hour; the first of them start at once). It ignores the budget
// already spent and the other callers' writes, so it is a lower bound of
// sorts, good for an estimated completion time, not a promise. It is zero
// for n <= 0.
func (p Pacing) WritesDuration(n int) time.Duration {
	if n <= 0 {
		return 0
	}
	d := time.Duration(n) * p.WriteInterval
	if p.WritesPerMinute > 0 {
		d = max(d, time.Duration((n-1)/p.WritesPerMinute)*time.Minute)
	}
	if p.WritesPerHour > 0 {
		d = max(d, time.Duration((n-1)/p.WritesPerHour)*time.Hour)
	}
	return d
}
