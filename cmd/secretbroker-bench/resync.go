package main

// The re-sync workload (issue 11, "Sync without waste"): a deploy
// pipeline pushes the same secrets again and again. N secrets over K
// repository scopes are written once, then pushed again unchanged, then
// with one in ten changed, then once more unchanged after one in a hundred
// was changed behind the broker's back (emulator.Touch). Three clients run
// the same four phases, each against an emulator of its own so that the
// counts do not mix:
//
//   - broker (batch): one BatchPutSecrets per scope, all scopes at once,
//     through the real service on one upstream client (its pacer, key
//     cache and in-memory state kept across the phases);
//   - broker (sync): one SyncSecrets per scope (no prune), the same way;
//   - naive: one sealed PUT per secret per phase straight to the emulator,
//     the scope's key fetched once per phase, through an upstream client
//     of its own: the same pacer, so it stays within GitHub's limits as a
//     well-behaved client must, but no state: it writes every value every
//     time.
//
// Phases start --resync-gap after the previous one ended (default an hour,
// External Secrets' default refresh interval), so that each phase's time
// is its own: the hourly content budget the previous phase spent is free
// again.

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/nacl/box"
	"google.golang.org/genproto/googleapis/rpc/code"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/upstream"
)

// The re-sync workload's clients.
const (
	clientBatch = "broker (batch)"
	clientSync  = "broker (sync)"
	clientNaive = "naive"
)

// resyncClients are the clients the workload runs, in the table's order.
var resyncClients = []string{clientBatch, clientSync, clientNaive}

// The re-sync workload's phases.
const (
	phaseInitial   = "initial write"
	phaseUnchanged = "unchanged"
	phaseChanged   = "10% changed"
	phaseDrift     = "1% changed behind its back"
)

// resyncPhases are the workload's phases, in order.
var resyncPhases = []string{phaseInitial, phaseUnchanged, phaseChanged, phaseDrift}

// changedInPhase3 reports whether item i (of k scopes) gets a new value in
// the 10% phase: every tenth secret of each scope, the scope's first
// included.
func changedInPhase3(i, k int) bool { return (i/k)%10 == 0 }

// touchedInPhase4 reports whether item i is changed behind the broker's
// back before the drift phase: the 56th secret of each scope's every
// hundred, none of which the 10% phase changed.
func touchedInPhase4(i, k int) bool { return (i/k)%100 == 55 }

// phaseResult is what one client's phase cost and what it reported.
type phaseResult struct {
	client, phase string
	secrets       int // pushed in the phase
	changed       int // with a new value
	touched       int // changed behind the client's back before the phase
	requests      int // every request the emulator received
	gets, puts    int
	notModified   int // GETs answered 304 (key revalidations)
	points        int // of the requests the emulator accepted
	violations    int // secondary and primary rate-limit answers
	written       int // reported written (or, naive, PUT without error)
	unchanged     int // reported unchanged
	drifted       []string
	driftExact    bool // drifted is exactly the touched secrets
	failed        int  // reported failed
	lost          int  // not in the emulator with the value pushed, after the phase
	elapsed       time.Duration
}

// methodCounter counts the requests that reach the emulator by method and
// the 304 answers.
type methodCounter struct {
	next                    http.RoundTripper
	gets, puts, other, n304 atomic.Int64
}

func (m *methodCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	switch r.Method {
	case http.MethodGet:
		m.gets.Add(1)
	case http.MethodPut:
		m.puts.Add(1)
	default:
		m.other.Add(1)
	}
	resp, err := m.next.RoundTrip(r)
	if err == nil && resp.StatusCode == http.StatusNotModified {
		m.n304.Add(1)
	}
	return resp, err
}

// pusher pushes one phase's values; it reports per item whether it was
// written, unchanged, or drifted, and its error.
type pusher interface {
	push(ctx context.Context, items []item) ([]outcome, error)
}

// outcome is one item's result in a phase.
type outcome struct {
	ok, unchanged, drift bool
}

// measureResync runs the four phases for one client against a fresh
// emulator with n secrets over k scopes. Its times are read from package
// time: fake and exact in a synctest bubble.
func measureResync(ctx context.Context, c config, client string) ([]phaseResult, error) {
	n, k := c.resyncSecrets, c.resyncScopes
	w := newWorld(n, k, c.latency)
	mc := &methodCounter{next: w.hc.Transport}
	w.hc = &http.Client{Transport: mc, Timeout: w.hc.Timeout}
	up, err := upstream.New(upstream.Config{BaseURL: emulatorURL, Token: benchToken, Pacing: &c.pacing, HTTPClient: w.hc})
	if err != nil {
		return nil, err
	}
	var p pusher
	switch client {
	case clientBatch, clientSync:
		b, stop, err := startBroker(up)
		if err != nil {
			return nil, err
		}
		defer stop()
		p = &brokerPusher{client: b, sync: client == clientSync}
	case clientNaive:
		p = &naivePusher{up: up, concurrency: c.naiveConcurrency}
	default:
		return nil, fmt.Errorf("unknown client %q", client)
	}
	var out []phaseResult
	for ph, phase := range resyncPhases {
		if ph > 0 && c.resyncGap > 0 {
			select {
			case <-time.After(c.resyncGap):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		r := phaseResult{client: client, phase: phase, secrets: n}
		touched := map[string]bool{}
		for i := range w.items {
			it := &w.items[i]
			switch {
			case phase == phaseChanged && changedInPhase3(i, k):
				it.value = rand.Text()
				r.changed++
			case phase == phaseDrift && touchedInPhase4(i, k):
				if err := w.emu.Touch(it.scope, it.name, time.Now()); err != nil {
					return nil, fmt.Errorf("touching %s: %w", it.name, err)
				}
				touched[it.scope+"/secrets/"+it.name] = true
			}
		}
		r.touched = len(touched)
		st0 := w.emu.Stats()
		g0, p0, o0, m0 := mc.gets.Load(), mc.puts.Load(), mc.other.Load(), mc.n304.Load()
		start := time.Now()
		outs, err := p.push(ctx, w.items)
		r.elapsed = time.Since(start)
		if err != nil {
			return nil, fmt.Errorf("%s, %s: %w", client, phase, err)
		}
		st := w.emu.Stats()
		r.gets, r.puts = int(mc.gets.Load()-g0), int(mc.puts.Load()-p0)
		r.notModified = int(mc.n304.Load() - m0)
		r.requests = r.gets + r.puts + int(mc.other.Load()-o0)
		r.points = st.Points - st0.Points
		r.violations = st.SecondaryViolations + st.PrimaryViolations - st0.SecondaryViolations - st0.PrimaryViolations
		for i, o := range outs {
			it := w.items[i]
			switch {
			case !o.ok:
				r.failed++
			case o.unchanged:
				r.unchanged++
			default:
				r.written++
			}
			if o.drift {
				r.drifted = append(r.drifted, it.scope+"/secrets/"+it.name)
			}
			if got, err := w.emu.Open(it.scope, it.name); err != nil || string(got) != it.value {
				r.lost++
			}
		}
		r.driftExact = len(r.drifted) == len(touched)
		for _, d := range r.drifted {
			r.driftExact = r.driftExact && touched[d]
		}
		out = append(out, r)
	}
	return out, nil
}

// brokerPusher sends one BatchPutSecrets (or SyncSecrets) per scope, all
// scopes at once, as one deploy pipeline per repository would.
type brokerPusher struct {
	client secretbrokerv1.SecretServiceClient
	sync   bool
}

func (b *brokerPusher) push(ctx context.Context, items []item) ([]outcome, error) {
	byScope := map[string][]int{}
	var scopes []string
	for i, it := range items {
		if byScope[it.scope] == nil {
			scopes = append(scopes, it.scope)
		}
		byScope[it.scope] = append(byScope[it.scope], i)
	}
	index := make(map[string]int, len(items)) // by resource name
	for i, it := range items {
		index[it.scope+"/secrets/"+it.name] = i
	}
	outs := make([]outcome, len(items))
	errs := make([]error, len(scopes))
	var wg sync.WaitGroup
	for s, scope := range scopes {
		wg.Go(func() {
			var err error
			if b.sync {
				err = b.syncScope(ctx, scope, items, byScope[scope], index, outs)
			} else {
				err = b.batchScope(ctx, items, byScope[scope], outs)
			}
			errs[s] = err
		})
	}
	wg.Wait()
	return outs, errors.Join(errs...)
}

// batchScope sends one scope's items in one BatchPutSecrets.
func (b *brokerPusher) batchScope(ctx context.Context, items []item, idx []int, outs []outcome) error {
	req := &secretbrokerv1.BatchPutSecretsRequest{}
	for _, i := range idx {
		it := items[i]
		req.Requests = append(req.Requests, &secretbrokerv1.PutSecretRequest{
			Name:    it.scope + "/secrets/" + it.name,
			Payload: &secretbrokerv1.PutSecretRequest_Value{Value: it.value},
		})
	}
	resp, err := b.client.BatchPutSecrets(ctx, req)
	if err != nil {
		return err
	}
	if len(resp.GetResults()) != len(idx) {
		return fmt.Errorf("%d results for %d items", len(resp.GetResults()), len(idx))
	}
	for j, res := range resp.GetResults() {
		outs[idx[j]] = outcome{ok: res.GetCode() == code.Code_OK, unchanged: res.GetUnchanged(), drift: res.GetDrift()}
	}
	return nil
}

// syncScope sends one scope's items in one SyncSecrets, without prune.
func (b *brokerPusher) syncScope(ctx context.Context, scope string, items []item, idx []int, index map[string]int, outs []outcome) error {
	req := &secretbrokerv1.SyncSecretsRequest{Parent: scope, Secrets: make(map[string]string, len(idx))}
	for _, i := range idx {
		req.Secrets[items[i].name] = items[i].value
	}
	resp, err := b.client.SyncSecrets(ctx, req)
	if err != nil {
		return err
	}
	seen := 0
	for _, res := range resp.GetResults() {
		i, ok := index[res.GetName()]
		if !ok {
			return fmt.Errorf("a result for %q, which was not sent", res.GetName())
		}
		seen++
		outs[i] = outcome{
			ok:        res.GetCode() == code.Code_OK,
			unchanged: res.GetAction() == secretbrokerv1.SyncAction_SYNC_ACTION_UNCHANGED,
			drift:     res.GetDrift(),
		}
	}
	if seen != len(idx) {
		return fmt.Errorf("%d results for %d secrets", seen, len(idx))
	}
	return nil
}

// naivePusher writes every item every phase: each scope's key fetched
// once, then one sealed PUT per secret, through an upstream client's
// pacer, concurrency at a time.
type naivePusher struct {
	up          *upstream.Client
	concurrency int
}

func (p *naivePusher) push(ctx context.Context, items []item) ([]outcome, error) {
	keys := map[string]upstream.PublicKey{}
	for _, it := range items {
		if _, ok := keys[it.scope]; ok {
			continue
		}
		pk, err := p.up.GetPublicKey(ctx, scopeOf(it.scope))
		if err != nil {
			return nil, fmt.Errorf("the key of %s: %w", it.scope, err)
		}
		keys[it.scope] = pk
	}
	outs := make([]outcome, len(items))
	sem := make(chan struct{}, p.concurrency)
	var wg sync.WaitGroup
	for i, it := range items {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			pk := keys[it.scope]
			_, err := p.up.PutSecretFunc(ctx, scopeOf(it.scope), it.name, func() (upstream.PutSecretBody, error) {
				var key [32]byte
				if err := decodeKey(pk.Key, &key); err != nil {
					return upstream.PutSecretBody{}, err
				}
				sealed, err := box.SealAnonymous(nil, []byte(it.value), &key, rand.Reader)
				if err != nil {
					return upstream.PutSecretBody{}, err
				}
				return upstream.PutSecretBody{EncryptedValue: encode(sealed), KeyID: pk.KeyID}, nil
			})
			outs[i] = outcome{ok: err == nil}
		})
	}
	wg.Wait()
	return outs, ctx.Err()
}

// scopeOf returns the upstream scope of a workload scope path,
// "repos/OWNER/REPO/actions".
func scopeOf(path string) upstream.Scope {
	parts := strings.Split(path, "/")
	return upstream.Scope{App: upstream.Actions, Owner: parts[1], Repo: parts[2]}
}

// resyncRunFunc runs one client's phases: measureResync itself on the
// wall clock, or in a synctest bubble.
type resyncRunFunc func(ctx context.Context, c config, client string) ([]phaseResult, error)

const resyncHeader = "| client | phase | secrets | changed | changed behind its back | requests | GET | of which 304 | PUT | points | violations | written | unchanged | drift reported | failed | lost | time |\n" +
	"| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"

func (r phaseResult) row() string {
	drift := "n/a"
	if r.client != clientNaive {
		drift = fmt.Sprintf("%d", len(r.drifted))
		if r.touched > 0 || len(r.drifted) > 0 {
			exact := "not the touched set"
			if r.driftExact {
				exact = "exactly the touched"
			}
			drift += " (" + exact + ")"
		}
	}
	return fmt.Sprintf("| %s | %s | %d | %d | %d | %d | %d | %d | %d | %d | %d | %d | %d | %s | %d | %d | %s |",
		r.client, r.phase, r.secrets, r.changed, r.touched, r.requests, r.gets, r.notModified, r.puts, r.points,
		r.violations, r.written, r.unchanged, drift, r.failed, r.lost, r.elapsed.Round(10*time.Millisecond))
}

// writeResync runs the re-sync workload for every client with run and
// writes its table and how it stands against issue 11's targets.
func writeResync(ctx context.Context, c config, stdout io.Writer, run resyncRunFunc) error {
	timeIs := "fake (testing/synctest), exact"
	if c.realTime {
		timeIs = "the wall clock"
	}
	fmt.Fprintf(stdout, "Re-sync workload: %d secrets over %d repository scopes; phases %s apart. Emulator limits: %s; answers in %v. Pacing (broker and naive client alike): %d in flight, writes %s apart, %d points a minute, %d writes a minute, %d an hour. Time: %s.\n\n",
		c.resyncSecrets, c.resyncScopes, c.resyncGap, describeLimits(), c.latency, c.pacing.MaxInFlight, c.pacing.WriteInterval,
		c.pacing.PointsPerMinute, c.pacing.WritesPerMinute, c.pacing.WritesPerHour, timeIs)
	fmt.Fprintln(stdout, resyncHeader)
	all := map[string][]phaseResult{}
	for _, client := range resyncClients {
		rs, err := run(ctx, c, client)
		if err != nil {
			return fmt.Errorf("re-sync, %s: %w", client, err)
		}
		all[client] = rs
		for _, r := range rs {
			fmt.Fprintln(stdout, r.row())
		}
	}
	fmt.Fprintln(stdout)
	for _, t := range resyncTargets(c, all) {
		fmt.Fprintln(stdout, "- "+t)
	}
	return nil
}

// phaseOf returns rs's result for phase.
func phaseOf(rs []phaseResult, phase string) phaseResult {
	for _, r := range rs {
		if r.phase == phase {
			return r
		}
	}
	return phaseResult{}
}

// resyncTargets checks issue 11's targets against the results, one line
// each, "met" or "MISSED" first.
func resyncTargets(c config, all map[string][]phaseResult) []string {
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "MISSED"
	}
	naive := phaseOf(all[clientNaive], phaseUnchanged)
	// Pages of 100 secrets per scope.
	pages := 0
	for s := range c.resyncScopes {
		inScope := (c.resyncSecrets - s + c.resyncScopes - 1) / c.resyncScopes
		pages += max(1, (inScope+99)/100)
	}
	var out []string
	for _, client := range []string{clientBatch, clientSync} {
		rs, ok := all[client]
		if !ok {
			continue
		}
		un := phaseOf(rs, phaseUnchanged)
		ch := phaseOf(rs, phaseChanged)
		dr := phaseOf(rs, phaseDrift)
		ratio := 0.0
		if un.requests > 0 {
			ratio = float64(naive.requests) / float64(un.requests)
		}
		out = append(out,
			fmt.Sprintf("%s: %s: unchanged re-sync in %d requests, at most 2 per scope per 100 secrets allow %d; no PUT (%d); took %v (target: seconds).",
				verdict(un.requests <= 2*pages && un.puts == 0 && un.elapsed < time.Minute), client, un.requests, 2*pages, un.puts, un.elapsed.Round(10*time.Millisecond)),
			fmt.Sprintf("%s: %s: %.1f times fewer requests than the naive client's %d for the unchanged re-sync (target: at least 100).",
				verdict(ratio >= 100), client, ratio, naive.requests),
			fmt.Sprintf("%s: %s: the 10%% phase wrote %d changed secrets with %d PUTs and %d GETs (%d list pages per listing of the scopes, %d key revalidations).",
				verdict(ch.puts == ch.changed && ch.written == ch.changed), client, ch.changed, ch.puts, ch.gets, pages, ch.notModified),
			fmt.Sprintf("%s: %s: drift reported for %d secrets, %d changed behind its back, %s.",
				verdict(dr.driftExact && dr.touched > 0), client, len(dr.drifted), dr.touched, map[bool]string{true: "the same set", false: "not the same set"}[dr.driftExact]),
		)
	}
	return out
}

// checkResync checks the re-sync workload's flags.
func checkResync(c config) error {
	switch {
	case c.resyncSecrets < 10 || c.resyncSecrets > 10000:
		return fmt.Errorf("--resync-secrets must be between 10 and 10000, got %d", c.resyncSecrets)
	case c.resyncScopes < 1 || c.resyncScopes > 100 || c.resyncScopes > c.resyncSecrets:
		return fmt.Errorf("--resync-scopes must be between 1 and 100 and at most --resync-secrets, got %d", c.resyncScopes)
	case (c.resyncSecrets+c.resyncScopes-1)/c.resyncScopes > 1000:
		return fmt.Errorf("--resync-secrets over --resync-scopes puts more than 1000 secrets in a scope (one batch)")
	case c.resyncGap < 0 || c.resyncGap > 24*time.Hour:
		return fmt.Errorf("--resync-gap must be between 0 and 24h, got %v", c.resyncGap)
	}
	return nil
}
