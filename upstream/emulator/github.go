package emulator

import "time"

// GitHubLimits returns github.com's published rate limits for the REST API
// with one user token, per "Rate limits for the REST API": a secondary
// budget of 900 points a minute, at most 100 requests in flight at once,
// no more than 90 s of CPU time (response time, as GitHub suggests
// estimating it) per 60 s, a primary quota of 5,000 requests an hour, and
// the content-creation limits of 80 content-generating requests a minute
// and 500 an hour. The other fields keep
// their zero values: secondary answers are 403 with Retry-After, and a
// violation is followed by a 60 s penalty.
//
// It is the one statement of those numbers for "secretbroker --dev", the
// benchmark and the tests that run the broker against github.com's
// limits. They are written here, independently of the broker's own pacing
// defaults (package upstream), so that a test against the emulator checks
// the client against GitHub's numbers rather than against itself.
func GitHubLimits() Limits {
	return Limits{PointsPerMinute: 900, MaxConcurrent: 100, PrimaryPerHour: 5000, WritesPerMinute: 80, WritesPerHour: 500,
		CPUPerMinute: 90 * time.Second}
}
