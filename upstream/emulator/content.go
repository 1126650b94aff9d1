package emulator

import (
	"net/http"
	"time"
)

// contentHour is the span of the hourly content-creation limit.
const contentHour = time.Hour

// contentLog is the arrival times of the content-generating requests the
// limits accepted within the last hour, oldest first. It lives in
// limitState, under s.mu.
type contentLog struct {
	at []time.Time
}

// contentGenerating reports whether a request with method creates content
// under GitHub's content-creation limits: POST, PATCH, PUT and DELETE.
func contentGenerating(method string) bool {
	switch method {
	case http.MethodPost, http.MethodPatch, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// contentWait returns how long until a content-generating request arriving
// at now fits Limits.WritesPerMinute and WritesPerHour; -1 when it fits now
// (or is not content-generating). When it does not fit, it counts a
// content violation. st is the state of the request's credential (each
// installation has its own). Callers hold s.mu.
func (s *Server) contentWait(st *limitState, now time.Time, method string) time.Duration {
	l := &s.opts.Limits
	if !contentGenerating(method) || (l.WritesPerMinute <= 0 && l.WritesPerHour <= 0) {
		return -1
	}
	c := &st.content
	n := 0
	for n < len(c.at) && !c.at[n].After(now.Add(-contentHour)) {
		n++
	}
	if n > 0 {
		c.at = append(c.at[:0], c.at[n:]...)
	}
	wait := time.Duration(-1)
	over := func(limit int, window time.Duration) {
		if limit <= 0 {
			return
		}
		cut := now.Add(-window)
		inWindow := 0
		first := len(c.at)
		for i := len(c.at) - 1; i >= 0 && c.at[i].After(cut); i-- {
			inWindow++
			first = i
		}
		if inWindow+1 > limit {
			// The oldest that must leave is the (inWindow+1-limit)-th.
			w := c.at[first+inWindow-limit].Add(window).Sub(now)
			wait = max(wait, w)
		}
	}
	over(l.WritesPerMinute, pointsWindow)
	over(l.WritesPerHour, contentHour)
	if wait >= 0 {
		s.stats.ContentViolations++
	}
	return wait
}

// contentAdd records an accepted content-generating request in st.
// Callers hold s.mu.
func (s *Server) contentAdd(st *limitState, now time.Time, method string) {
	l := &s.opts.Limits
	if contentGenerating(method) && (l.WritesPerMinute > 0 || l.WritesPerHour > 0) {
		st.content.at = append(st.content.at, now)
	}
}
