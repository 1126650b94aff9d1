package main

// setDetail sets what /readyz adds to a ready answer when the broker
// serves degraded (for example its pacing state's Redis is unreachable):
// detail returns "" when nothing degrades it.
func (r *readiness) setDetail(detail func() string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.detail = detail
}

// detailLine returns the degradation, one line; "" when none.
func (r *readiness) detailLine() string {
	r.mu.Lock()
	detail := r.detail
	r.mu.Unlock()
	if detail == nil {
		return ""
	}
	return oneLine(detail())
}
