// Package seedconformance owns the broker's service against a GitHub written
// only from the seeds (GitHub's REST pages in /work/shared/seeds): the
// Actions secrets pages of github.com (2022-11-28) and of GitHub Enterprise
// Server 3.21 under /api/v3 (2026-03-10), and the Agents secrets page
// (2026-03-10). Its fake GitHub serves exactly those routes, with the
// statuses and bodies they document, and nothing the embedded emulator adds
// (ETag, x-ratelimit-* headers, Link, conditional requests, a Date it may
// leave out): the service must not rely on any of it.
//
// Every scenario also runs with that embedded emulator as GitHub (run's
// upstreams), which --dev users test their scripts against: the emulator
// must answer as the fake does (the same statuses to the same requests),
// but for what it adds on purpose, which the cases say: its headers, GET
// /repos/{owner}/{repo}, environment names without case.
// FuzzEmulatorAgainstFake holds the two to the same on arbitrary sequences
// of raw requests, with the same differences allowed.
//
// Every test runs inside a testing/synctest bubble, with the fake served in
// memory through an http.RoundTripper and clocked by the bubble's time, so
// waits (the pacer's write spacing) are exact and cost no wall time.
package seedconformance
