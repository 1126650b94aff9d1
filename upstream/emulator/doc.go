// Package emulator is an in-process, GitHub-compatible HTTP server for the
// secrets REST API, used by "secretbroker --dev" and by tests over real
// loopback sockets.
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
// escaped once). Test hooks (RotateKey, Open, SelectedRepositoryIDs, Count,
// InjectFault, LastRequestHeader) are Go methods only and never reachable
// over the network. The server never logs a decrypted value.
//
// Paths may carry GitHub Enterprise Server's "/api/v3" prefix; it is
// stripped before routing and kept in the absolute URLs the server builds.
package emulator
