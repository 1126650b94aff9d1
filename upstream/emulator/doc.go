// Package emulator is an in-process, GitHub-compatible HTTP server for the
// secrets REST API, used by "secretbroker --dev" and by tests, over real
// loopback sockets or in memory.
//
// It owns GitHub's side of the conversation, written from GitHub's REST
// reference pages and independently of the broker's client (package
// upstream, which it must not import): the routes of organization,
// repository and environment secrets of GitHub Actions and organization and
// repository secrets of GitHub Agents, the legacy environment routes of old
// GitHub Enterprise Server (/repositories/{repository_id}/environments/...),
// per-scope NaCl key pairs and key rotation, validation of sealed values,
// visibility and selected repositories of organization secrets, pagination
// with Link headers, API versions, bearer-token authentication and GitHub's
// error bodies.
//
// Everything is keyed by a scope's REST path prefix without the leading
// slash, for example "orgs/octo-org/actions",
// "repos/octo-org/hello-world/agents" or
// "repos/octo-org/hello-world/environments/prod%2Feu" (the environment
// escaped once). Test hooks (RotateKey, Touch, Open, SelectedRepositoryIDs, Count,
// InjectFault, LastRequestHeader, Stats, ResetCounts, ResetLimits) are Go
// methods only and never reachable over the network. The server never logs a decrypted value.
//
// Paths may carry GitHub Enterprise Server's "/api/v3" prefix; it is
// stripped before routing and kept in the absolute URLs the server builds.
// Under it the server is GitHub Enterprise Server as its reference pages
// give it: no Agents secrets, and Actions routes that take API version
// 2026-03-10 (or none) but not 2022-11-28; with Options.LegacyRoutes it is
// the older release, whose reference has no API versions and no route
// listing a repository's organization secrets.
//
// Request bodies are checked as the reference of the GitHub played types
// them: repository ids are JSON integers, except that the old GitHub
// Enterprise Server's create-or-update of an organization secret also
// takes strings of digits; encrypted_value and key_id are required where
// the reference marks them Required (environment secrets, Agents, GitHub
// Enterprise Server 3.21) and optional for Actions organization and
// repository secrets on github.com and the old release, where a PUT
// without them updates an existing secret's other settings and cannot
// create one.
//
// # Rate limits
//
// Options.Limits makes the server enforce GitHub's published rate limits
// for the REST API (see Limits); the zero value enforces none. Secondary
// limits: points per sliding minute (1 for GET, HEAD and OPTIONS, 5 for
// POST, PATCH, PUT and DELETE), requests in flight at once, and CPU time
// per sliding minute, taken to be the requests' response time
// (Limits.CPUPerMinute, counted in Stats.CPUViolations too); a
// violation gets 403 (or Limits.SecondaryStatus) with GitHub's "You have
// exceeded a secondary rate limit" body and, unless omitted on purpose, a
// Retry-After header, and starts a penalty during which every request is
// refused the same way. Content-creation limits: POST, PATCH, PUT and
// DELETE requests per sliding minute and hour (Limits.WritesPerMinute and
// WritesPerHour), refused with the secondary answer and counted in
// Stats.ContentViolations too. Primary limit: a quota of requests per hour, with
// X-RateLimit-* headers on every answer; 304 answers do not use it, and a
// used-up quota gets 403 "API rate limit exceeded" with
// X-RateLimit-Remaining 0 until X-RateLimit-Reset. The server has one
// quota for every caller and applies the limits before authentication,
// except that with a GitHub App each installation token has its own.
// Stats reports what happened (violations, points, peak concurrency,
// dropped connections); ResetCounts resets those counters and ResetLimits
// the limits' windows, penalty and quota.
//
// # GitHub App
//
// Options.App registers a GitHub App (see App): GET /app, GET
// /orgs/{org}/installation, GET /repos/{owner}/{repo}/installation (404
// for a repository that does not exist), GET
// /users/{username}/installation and POST /app/installations/{installation_id}/access_tokens verify the app's
// JWT (RS256 against the app's public key, iss the app id, exp at most 10
// minutes away), the last mints installation tokens with an expires_at
// (an hour unless App.TokenLifetime says otherwise), and the secrets
// routes accept those tokens until they expire (401 after), for their
// installation's account only (403 "Resource not accessible by
// integration" for another), with Limits applied per installation.
// Install adds an installation; AppStats and ExpireTokens are test hooks.
//
// # Time
//
// The limits' windows, penalties and injected latency, and the created_at
// and updated_at of secrets (UTC, truncated to whole seconds), read time
// directly (time.Now and timers); there is no injected clock. Tests and
// benchmarks that must live through GitHub's minute and hour windows, or
// assert exact timestamps, run the server inside a testing/synctest
// bubble, where time is fake and a wait passes at once, and reach it in
// memory (an http.RoundTripper calling ServeHTTP) rather than over a
// socket, which would not block durably.
//
// # Faults
//
// InjectFault queues misbehaviours for matching requests (see Fault): a
// canned answer, a delay, or a connection closed
// without an answer, either before the request is handled or after it was
// (the write landed, the client never hears of it). Faults apply only to
// requests the rate limits let through, and take effect before
// authentication. ServeHTTP's documentation lists the exact order of the
// steps a request goes through.
package emulator
