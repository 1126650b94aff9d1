package service

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/crypto/nacl/box"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/service/state"
	"github.com/secretbroker/secretbroker/upstream"
	"github.com/secretbroker/secretbroker/upstream/emulator"
)

// FuzzBrokerModel checks the broker's core promise on random sequences of
// operations: it never loses a write it acknowledged, and its unchanged
// answers are true. A model keeps what GitHub must hold for six secrets
// (two names in an organization, a repository and an environment scope);
// after every operation each of them is compared with what the emulator
// holds (Open, its visibility and selection), and every unchanged answer
// is checked against what GitHub held when it was given. Operations that
// go behind the broker's back (an external PUT, DELETE, settings change,
// Touch) first let a minute of the bubble's time pass: GitHub's updated_at
// has a resolution of a second and a PutSecret's answer bounds it to a
// few seconds, within which the README says a change goes unnoticed.

// The model's secrets: index = scope*2 + name.
var (
	modelScopes  = []string{orgScope, repoScope, stagingEnv}
	modelNames   = []string{"MA", "MB"}
	modelValues  = []string{"val-one", "val-two", "val-three"}
	modelVisible = []string{"", "all", "private", "selected"}
)

const modelSecrets = 6

func modelSecret(i int) (scope, name string) { return modelScopes[i/2], modelNames[i%2] }

// modelState is what GitHub must hold for one secret.
type modelState struct {
	exists     bool
	value      string
	visibility string  // org secrets
	selected   []int64 // org secrets with visibility "selected", sorted
}

// settings is a requested organization visibility and selection; vis ""
// keeps the current ones, and "selected" without ids keeps the current
// selection.
type settings struct {
	vis string
	ids []int64
}

// apply returns m's settings after a write of s.
func (s settings) apply(m modelState) (string, []int64) {
	switch {
	case s.vis == "":
		return m.visibility, m.selected
	case s.vis != "selected":
		return s.vis, nil
	case len(s.ids) == 0:
		if m.visibility == "selected" {
			return "selected", m.selected
		}
		return "selected", nil
	default:
		ids := slices.Clone(s.ids)
		slices.Sort(ids)
		return "selected", slices.Compact(ids)
	}
}

// holds reports whether m is what a write of value (nil: settings only)
// with s would leave: the truth an unchanged answer claims.
func (s settings) holds(m modelState, value *string, org bool) bool {
	if !m.exists || (value != nil && *value != m.value) {
		return false
	}
	if !org {
		return true
	}
	vis, ids := s.apply(m)
	return vis == m.visibility && slices.Equal(ids, m.selected)
}

// fuzzBytes reads the fuzz input; past its end it reads zeros.
type fuzzBytes struct {
	b []byte
}

func (f *fuzzBytes) next() int {
	if len(f.b) == 0 {
		return 0
	}
	c := f.b[0]
	f.b = f.b[1:]
	return int(c)
}

func (f *fuzzBytes) pick(n int) int { return f.next() % n }

type modelRun struct {
	t      *testing.T
	emu    *emulator.Server
	tr     *emulatorTransport
	st     state.Store
	logs   *syncBuffer
	broker secretbrokerv1.SecretServiceClient
	repos  []int64
	model  [modelSecrets]modelState
	// external is whether someone other than the broker changed the
	// secret (or its updated_at) since the broker's last write of it:
	// only then may an answer report drift.
	external [modelSecrets]bool
	// owner is the owner the broker's record gives the secret's prune
	// rights to: the last writer through the broker; "" when it has no
	// record, or GitHub created the secret again behind its back.
	owner [modelSecrets]string
	log   []string // what was done, for failure messages
}

func (r *modelRun) fail(format string, args ...any) {
	r.t.Helper()
	r.t.Fatalf("%s\nsteps:\n  %s", fmt.Sprintf(format, args...), strings.Join(r.log, "\n  "))
}

// start builds a broker on the shared emulator and state store: at the
// beginning, and again for a restart.
func (r *modelRun) start() {
	logger := newTestLogger(r.logs)
	client, err := upstream.New(upstream.Config{
		BaseURL:    emulatorURL,
		Token:      upstream.Token(testToken),
		HTTPClient: &http.Client{Transport: r.tr},
		Logger:     logger,
	})
	if err != nil {
		r.t.Fatal(err)
	}
	h := newHarnessWith(r.t, client, r.logs, Options{Logger: logger, State: r.st})
	r.broker = h.broker
}

// rest sends a request straight to the emulator, as someone other than
// the broker would.
func (r *modelRun) rest(method, path string, body any) (int, []byte) {
	var rd *bytes.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			r.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req := httptest.NewRequest(method, emulatorURL+"/"+path, rd)
	req.Header.Set("Authorization", "Bearer "+testToken)
	req.Header.Set("X-GitHub-Api-Version", "2022-11-28")
	rec := httptest.NewRecorder()
	r.emu.ServeHTTP(rec, req)
	return rec.Code, rec.Body.Bytes()
}

// held reads what GitHub holds for secret i.
func (r *modelRun) held(i int) modelState {
	r.t.Helper()
	scope, name := modelSecret(i)
	code, body := r.rest(http.MethodGet, scope+"/secrets/"+name, nil)
	switch code {
	case http.StatusNotFound:
		return modelState{}
	case http.StatusOK:
	default:
		r.fail("GET %s/%s: %d", scope, name, code)
	}
	got, err := r.emu.Open(scope, name)
	if err != nil {
		r.fail("Open %s/%s: %v", scope, name, err)
	}
	m := modelState{exists: true, value: string(got)}
	if scope != orgScope {
		return m
	}
	var sec struct {
		Visibility string `json:"visibility"`
	}
	if err := json.Unmarshal(body, &sec); err != nil {
		r.t.Fatal(err)
	}
	ids, err := r.emu.SelectedRepositoryIDs(scope, name)
	if err != nil {
		r.t.Fatal(err)
	}
	if len(ids) > 0 {
		m.selected = ids
	}
	m.visibility = sec.Visibility
	return m
}

func (m modelState) equal(o modelState) bool {
	return m.exists == o.exists && m.value == o.value && m.visibility == o.visibility && slices.Equal(m.selected, o.selected)
}

// check compares every secret at the emulator with the model.
func (r *modelRun) check(after string) {
	r.t.Helper()
	for i := range modelSecrets {
		if got := r.held(i); !got.equal(r.model[i]) {
			scope, name := modelSecret(i)
			r.fail("after %s: %s/%s at GitHub %+v, the model %+v", after, scope, name, got, r.model[i])
		}
	}
}

// drift checks a drift answer for secret i: it claims a change behind the
// broker's back since its last write.
func (r *modelRun) drift(i int, drift bool, what string) {
	r.t.Helper()
	if drift && !r.external[i] {
		r.fail("%s answered drift: nothing changed the secret behind the broker's back", what)
	}
}

// refusal: a refused call must be one of the documented codes; check then
// proves GitHub unchanged.
func (r *modelRun) refusal(what string, err error) {
	r.t.Helper()
	switch status.Code(err) {
	case codes.InvalidArgument, codes.NotFound, codes.FailedPrecondition:
		r.log = append(r.log, fmt.Sprintf("  -> refused %v", status.Code(err)))
	default:
		r.fail("%s: %v", what, err)
	}
}

func (r *modelRun) settingsFrom(in *fuzzBytes) settings {
	s := settings{vis: modelVisible[in.pick(len(modelVisible))]}
	if s.vis == "selected" {
		mask := in.next()
		for j, id := range r.repos {
			if mask&(1<<j) != 0 {
				s.ids = append(s.ids, id)
			}
		}
	}
	return s
}

// behind lets a minute pass: see the type's comment. It is called only
// by a run's steps, which FuzzBrokerModel runs inside a synctest bubble:
// the minute is fake time, and no wall clock passes.
func behind() { time.Sleep(time.Minute) }

func (r *modelRun) step(ctx context.Context, in *fuzzBytes) {
	op := in.pick(12)
	switch op {
	case 0, 1: // PutSecret with a value
		i := in.pick(modelSecrets)
		scope, name := modelSecret(i)
		value := modelValues[in.pick(len(modelValues))]
		flags := in.next()
		req := plain(scope+"/secrets/"+name, value)
		req.Force = flags&1 != 0
		var s settings
		if scope == orgScope {
			s = r.settingsFrom(in)
			req.Visibility, req.SelectedRepositoryIds = s.vis, s.ids
		}
		r.log = append(r.log, fmt.Sprintf("put %s/%s=%s force=%v vis=%q ids=%v", scope, name, value, req.Force, s.vis, s.ids))
		before := r.model[i]
		resp, err := r.broker.PutSecret(ctx, req)
		if err != nil {
			r.refusal("PutSecret", err)
			return
		}
		r.log = append(r.log, fmt.Sprintf("  -> created=%v unchanged=%v drift=%v", resp.GetCreated(), resp.GetUnchanged(), resp.GetDrift()))
		r.drift(i, resp.GetDrift(), "PutSecret")
		r.written(i, before, value, s, resp.GetCreated(), resp.GetUnchanged(), req.Force)
	case 2: // PutSecret without a value: settings only, org scope
		i := in.pick(2)
		scope, name := modelSecret(i)
		s := r.settingsFrom(in)
		if s.vis == "" {
			s.vis = "private"
		}
		req := &secretbrokerv1.PutSecretRequest{Name: scope + "/secrets/" + name, Visibility: s.vis, SelectedRepositoryIds: s.ids}
		r.log = append(r.log, fmt.Sprintf("settings %s/%s vis=%q ids=%v", scope, name, s.vis, s.ids))
		before := r.model[i]
		resp, err := r.broker.PutSecret(ctx, req)
		if err != nil {
			r.refusal("settings-only PutSecret", err)
			return
		}
		r.log = append(r.log, fmt.Sprintf("  -> created=%v unchanged=%v drift=%v", resp.GetCreated(), resp.GetUnchanged(), resp.GetDrift()))
		r.drift(i, resp.GetDrift(), "settings-only PutSecret")
		if !before.exists {
			r.fail("settings-only put of a secret GitHub does not hold answered OK")
		}
		if resp.GetCreated() || resp.GetKeyId() != "" {
			r.fail("settings-only put: created %v key_id %q", resp.GetCreated(), resp.GetKeyId())
		}
		if resp.GetUnchanged() {
			if !s.holds(before, nil, true) {
				r.fail("settings-only put answered unchanged, GitHub held %+v", before)
			}
			return
		}
		m := &r.model[i]
		m.visibility, m.selected = s.apply(before)
		r.external[i] = false
		r.owner[i] = anonymousOwner
	case 3: // BatchPutSecrets
		n := 1 + in.pick(3)
		req := &secretbrokerv1.BatchPutSecretsRequest{}
		type item struct {
			i     int
			value string
			s     settings
		}
		var items []item
		for range n {
			it := item{i: in.pick(modelSecrets), value: modelValues[in.pick(len(modelValues))]}
			scope, name := modelSecret(it.i)
			p := plain(scope+"/secrets/"+name, it.value)
			if scope == orgScope {
				it.s = r.settingsFrom(in)
				p.Visibility, p.SelectedRepositoryIds = it.s.vis, it.s.ids
			}
			items = append(items, it)
			req.Requests = append(req.Requests, p)
			r.log = append(r.log, fmt.Sprintf("batch item %s/%s=%s vis=%q ids=%v", scope, name, it.value, it.s.vis, it.s.ids))
		}
		before := r.model
		resp, err := r.broker.BatchPutSecrets(ctx, req)
		if err != nil {
			r.refusal("BatchPutSecrets", err)
			return
		}
		if len(resp.GetResults()) != len(items) {
			r.fail("batch: %d results for %d items", len(resp.GetResults()), len(items))
		}
		done := map[int]bool{}
		for k, res := range resp.GetResults() {
			it := items[k]
			r.log = append(r.log, fmt.Sprintf("  -> item %d: %v created=%v unchanged=%v drift=%v %s", k, res.GetCode(), res.GetCreated(), res.GetUnchanged(), res.GetDrift(), res.GetMessage()))
			switch res.GetCode() {
			case code.Code_OK:
			case code.Code_INVALID_ARGUMENT, code.Code_NOT_FOUND, code.Code_FAILED_PRECONDITION:
				continue
			default:
				r.fail("batch item %d: %v %s", k, res.GetCode(), res.GetMessage())
			}
			if done[it.i] {
				r.fail("batch: two items of one secret answered OK")
			}
			done[it.i] = true
			r.drift(it.i, res.GetDrift(), "batch item")
			r.written(it.i, before[it.i], it.value, it.s, res.GetCreated(), res.GetUnchanged(), false)
		}
	case 4: // SyncSecrets
		sc := in.pick(len(modelScopes))
		flags := in.next()
		req := &secretbrokerv1.SyncSecretsRequest{
			Parent:  modelScopes[sc],
			Secrets: map[string]string{},
			Prune:   flags&1 != 0,
			DryRun:  flags&2 != 0,
			Force:   flags&4 != 0,
		}
		if flags&8 != 0 {
			req.Owner = "team-b"
		}
		for j := range modelNames {
			if v := in.pick(len(modelValues) + 1); v < len(modelValues) {
				req.Secrets[modelNames[j]] = modelValues[v]
			}
		}
		var s settings
		if sc == 0 {
			s = r.settingsFrom(in)
			if s.vis == "" {
				s.vis = "all"
			}
			if s.vis == "selected" && len(s.ids) == 0 {
				s.ids = r.repos[:1]
			}
			req.Visibility, req.SelectedRepositoryIds = s.vis, s.ids
		}
		r.log = append(r.log, fmt.Sprintf("sync %s %v prune=%v dry=%v force=%v owner=%q vis=%q ids=%v", req.Parent, req.Secrets, req.Prune, req.DryRun, req.Force, req.Owner, s.vis, s.ids))
		syncOwner := req.Owner
		if syncOwner == "" {
			syncOwner = anonymousOwner
		}
		before := r.model
		resp, err := r.broker.SyncSecrets(ctx, req)
		if err != nil {
			r.refusal("SyncSecrets", err)
			return
		}
		seen := map[string]bool{}
		for _, res := range resp.GetResults() {
			r.log = append(r.log, fmt.Sprintf("  -> %s %v %v drift=%v %s", res.GetName(), res.GetAction(), res.GetCode(), res.GetDrift(), res.GetMessage()))
			scope, name, ok := strings.Cut(res.GetName(), "/secrets/")
			j := slices.Index(modelNames, name)
			if !ok || scope != req.Parent || j < 0 {
				r.fail("sync result for %q", res.GetName())
			}
			if seen[name] {
				r.fail("sync: two results for %s", name)
			}
			seen[name] = true
			i := sc*2 + j
			m := before[i]
			r.drift(i, res.GetDrift(), "sync item")
			value, listed := req.Secrets[name]
			switch c := res.GetCode(); {
			case c == code.Code_OK:
			case c == code.Code_INVALID_ARGUMENT || c == code.Code_NOT_FOUND || c == code.Code_FAILED_PRECONDITION:
				continue
			default:
				r.fail("sync item %s: %v %s", name, c, res.GetMessage())
			}
			act := res.GetAction()
			switch act {
			case secretbrokerv1.SyncAction_SYNC_ACTION_FOREIGN:
				if listed || !m.exists {
					r.fail("sync: %s FOREIGN, listed %v, at GitHub %v", name, listed, m.exists)
				}
				continue
			case secretbrokerv1.SyncAction_SYNC_ACTION_DELETE:
				if listed || !m.exists || !req.Prune {
					r.fail("sync: %s DELETE, listed %v, at GitHub %v, prune %v", name, listed, m.exists, req.Prune)
				}
				if r.owner[i] != syncOwner {
					r.fail("sync of owner %q: DELETE of %s, whose broker-recorded owner is %q", syncOwner, name, r.owner[i])
				}
				if !req.DryRun {
					r.model[i], r.external[i], r.owner[i] = modelState{}, false, ""
				}
				continue
			}
			if !listed {
				r.fail("sync: %s %v but not listed", name, act)
			}
			switch act {
			case secretbrokerv1.SyncAction_SYNC_ACTION_UNCHANGED:
				if !s.holds(m, &value, sc == 0) {
					r.fail("sync: %s UNCHANGED, GitHub held %+v", name, m)
				}
				continue
			case secretbrokerv1.SyncAction_SYNC_ACTION_CREATE:
				if m.exists {
					r.fail("sync: %s CREATE of a secret GitHub holds", name)
				}
			case secretbrokerv1.SyncAction_SYNC_ACTION_UPDATE, secretbrokerv1.SyncAction_SYNC_ACTION_DRIFTED:
				if !m.exists {
					r.fail("sync: %s %v of a secret GitHub does not hold", name, act)
				}
			case secretbrokerv1.SyncAction_SYNC_ACTION_CONFLICT:
				if !req.Force && !req.DryRun {
					r.fail("sync: %s CONFLICT OK without force", name)
				}
			default:
				r.fail("sync: %s action %v", name, act)
			}
			if !req.DryRun {
				r.model[i].exists, r.model[i].value = true, value
				r.external[i], r.owner[i] = false, syncOwner
				if sc == 0 {
					r.model[i].visibility, r.model[i].selected = s.apply(m)
				}
			}
		}
		for name := range req.Secrets {
			if !seen[name] {
				r.fail("sync: no result for listed %s", name)
			}
		}
	case 5: // DeleteSecret
		i := in.pick(modelSecrets)
		scope, name := modelSecret(i)
		r.log = append(r.log, fmt.Sprintf("delete %s/%s", scope, name))
		if _, err := r.broker.DeleteSecret(ctx, &secretbrokerv1.DeleteSecretRequest{Name: scope + "/secrets/" + name}); err != nil {
			r.refusal("DeleteSecret", err)
			if status.Code(err) == codes.NotFound && r.model[i].exists {
				r.fail("DeleteSecret NOT_FOUND of a secret GitHub holds")
			}
			return
		}
		r.model[i], r.external[i], r.owner[i] = modelState{}, false, ""
	case 6: // an external PUT of a value
		i := in.pick(modelSecrets)
		scope, name := modelSecret(i)
		value := modelValues[in.pick(len(modelValues))]
		var s settings
		if scope == orgScope {
			s = r.settingsFrom(in)
			if s.vis == "" {
				s.vis = "private"
			}
		}
		behind()
		code, body := r.rest(http.MethodGet, scope+"/secrets/public-key", nil)
		if code != http.StatusOK {
			r.t.Fatalf("public key: %d %s", code, body)
		}
		var pk struct {
			KeyID string `json:"key_id"`
			Key   string `json:"key"`
		}
		if err := json.Unmarshal(body, &pk); err != nil {
			r.t.Fatal(err)
		}
		raw, err := base64.StdEncoding.DecodeString(pk.Key)
		if err != nil || len(raw) != 32 {
			r.t.Fatalf("public key %q: %v", pk.Key, err)
		}
		sealed, err := box.SealAnonymous(nil, []byte(value), (*[32]byte)(raw), rand.Reader)
		if err != nil {
			r.t.Fatal(err)
		}
		put := map[string]any{"encrypted_value": base64.StdEncoding.EncodeToString(sealed), "key_id": pk.KeyID}
		if scope == orgScope {
			put["visibility"] = s.vis
			if s.vis == "selected" {
				put["selected_repository_ids"] = append([]int64{}, s.ids...)
			}
		}
		r.log = append(r.log, fmt.Sprintf("EXTERNAL put %s/%s=%s vis=%q ids=%v", scope, name, value, s.vis, s.ids))
		if code, body := r.rest(http.MethodPut, scope+"/secrets/"+name, put); code != http.StatusCreated && code != http.StatusNoContent {
			r.t.Fatalf("external PUT: %d %s", code, body)
		}
		m := &r.model[i]
		if !m.exists {
			r.owner[i] = "" // created again behind the broker's back
		}
		m.exists, m.value = true, value
		if scope == orgScope {
			m.visibility, m.selected = settings{vis: s.vis, ids: s.ids}.apply(modelState{})
		}
		r.external[i] = true
	case 7: // an external DELETE
		i := in.pick(modelSecrets)
		scope, name := modelSecret(i)
		behind()
		r.log = append(r.log, fmt.Sprintf("EXTERNAL delete %s/%s", scope, name))
		code, _ := r.rest(http.MethodDelete, scope+"/secrets/"+name, nil)
		if code != http.StatusNoContent && code != http.StatusNotFound {
			r.t.Fatalf("external DELETE: %d", code)
		}
		r.model[i], r.external[i] = modelState{}, true
	case 8: // an external settings change of an org secret
		i := in.pick(2)
		scope, name := modelSecret(i)
		viaSelection := in.next()&1 != 0
		s := r.settingsFrom(in)
		behind()
		m := &r.model[i]
		if viaSelection {
			// The selection route: updated_at does not move.
			r.log = append(r.log, fmt.Sprintf("EXTERNAL selection %s/%s ids=%v", scope, name, s.ids))
			code, _ := r.rest(http.MethodPut, scope+"/secrets/"+name+"/repositories", map[string]any{"selected_repository_ids": append([]int64{}, s.ids...)})
			if code == http.StatusNoContent {
				_, m.selected = settings{vis: "selected", ids: s.ids}.apply(modelState{})
				r.external[i] = true
			}
			return
		}
		if s.vis == "" {
			s.vis = "all"
		}
		put := map[string]any{"visibility": s.vis}
		if s.vis == "selected" {
			put["selected_repository_ids"] = append([]int64{}, s.ids...)
		}
		r.log = append(r.log, fmt.Sprintf("EXTERNAL settings %s/%s vis=%q ids=%v", scope, name, s.vis, s.ids))
		code, _ := r.rest(http.MethodPut, scope+"/secrets/"+name, put)
		if code == http.StatusNoContent {
			m.visibility, m.selected = settings{vis: s.vis, ids: s.ids}.apply(modelState{})
			r.external[i] = true
		}
	case 9: // key rotation, or Touch
		if in.next()&1 == 0 {
			sc := modelScopes[in.pick(len(modelScopes))]
			r.log = append(r.log, "rotate "+sc)
			r.emu.RotateKey(sc)
			return
		}
		i := in.pick(modelSecrets)
		scope, name := modelSecret(i)
		behind()
		r.log = append(r.log, fmt.Sprintf("touch %s/%s", scope, name))
		if r.emu.Touch(scope, name, time.Now()) == nil {
			r.external[i] = true
		}
	case 10: // restart on the same state store
		r.log = append(r.log, "restart")
		r.start()
	case 11: // two calls on one secret at once
		r.concurrent(ctx, in)
	}
}

// concurrentCall is one of two calls concurrent sends on one secret.
type concurrentCall struct {
	kind  int // callPut, callSettings, callSync, callDelete
	value string
	s     settings
	// The answer.
	err                       error
	created, unchanged, drift bool
}

const (
	callPut = iota
	callSettings
	callSync
	callDelete
	callKinds
)

// after returns what GitHub holds after c, done on m, and false when c
// could not have answered OK after m (a settings-only put of a secret
// GitHub does not hold).
func (c *concurrentCall) after(m modelState, org bool) (modelState, bool) {
	switch {
	case c.err != nil || c.unchanged:
		return m, true
	case c.kind == callDelete:
		return modelState{}, true
	case c.kind == callSettings:
		if !m.exists {
			return m, false
		}
		m.visibility, m.selected = c.s.apply(m)
		return m, true
	}
	n := modelState{exists: true, value: c.value}
	if org {
		n.visibility, n.selected = c.s.apply(m)
	}
	return n, true
}

// claim reports whether c's unchanged answer is true of m.
func (c *concurrentCall) claim(m modelState, org bool) bool {
	if c.kind == callSettings {
		return c.s.holds(m, nil, org)
	}
	return c.s.holds(m, &c.value, org)
}

func (r *modelRun) send(ctx context.Context, c *concurrentCall, scope, name string) {
	switch c.kind {
	case callDelete:
		_, c.err = r.broker.DeleteSecret(ctx, &secretbrokerv1.DeleteSecretRequest{Name: scope + "/secrets/" + name})
	case callSync:
		resp, err := r.broker.SyncSecrets(ctx, &secretbrokerv1.SyncSecretsRequest{
			Parent: scope, Secrets: map[string]string{name: c.value},
			Visibility: c.s.vis, SelectedRepositoryIds: c.s.ids,
		})
		if c.err = err; err != nil {
			return
		}
		for _, res := range resp.GetResults() {
			if res.GetName() != scope+"/secrets/"+name {
				continue // another secret of the scope: foreign
			}
			if res.GetCode() != code.Code_OK {
				c.err = status.Error(codes.Code(res.GetCode()), res.GetMessage())
			}
			c.drift = res.GetDrift()
			c.unchanged = res.GetAction() == secretbrokerv1.SyncAction_SYNC_ACTION_UNCHANGED
			c.created = res.GetAction() == secretbrokerv1.SyncAction_SYNC_ACTION_CREATE
			return
		}
		c.err = status.Error(codes.Internal, "the sync has no result for its secret")
	default:
		req := plain(scope+"/secrets/"+name, c.value)
		if c.kind == callSettings {
			req.Payload = nil
		}
		req.Visibility, req.SelectedRepositoryIds = c.s.vis, c.s.ids
		resp, err := r.broker.PutSecret(ctx, req)
		c.err, c.created, c.unchanged, c.drift = err, resp.GetCreated(), resp.GetUnchanged(), resp.GetDrift()
	}
}

// concurrent sends two calls on one secret at once: puts, settings-only
// puts, syncs of the secret's scope listing only it, deletes. GitHub must
// then hold what one of the two orders of the calls answered OK leaves,
// and an unchanged answer must be true before the other call or after
// it. The model takes what GitHub holds: later steps check that the
// broker's record agrees (an unchanged answer it gives must be true).
func (r *modelRun) concurrent(ctx context.Context, in *fuzzBytes) {
	i := in.pick(modelSecrets)
	scope, name := modelSecret(i)
	org := scope == orgScope
	var calls [2]*concurrentCall
	for k := range calls {
		c := &concurrentCall{kind: in.pick(callKinds), value: modelValues[in.pick(len(modelValues))]}
		if c.kind == callSettings && !org {
			c.kind = callPut
		}
		if org && c.kind != callDelete {
			c.s = r.settingsFrom(in)
			if c.s.vis == "" && c.kind != callPut {
				c.s.vis = "private"
			}
			if c.kind == callSync && c.s.vis == "selected" && len(c.s.ids) == 0 {
				c.s.ids = r.repos[:1]
			}
		}
		calls[k] = c
		r.log = append(r.log, fmt.Sprintf("CONCURRENT %s %s/%s=%s vis=%q ids=%v", [...]string{"put", "settings", "sync", "delete"}[c.kind], scope, name, c.value, c.s.vis, c.s.ids))
	}
	var wg sync.WaitGroup
	for _, c := range calls {
		wg.Go(func() { r.send(ctx, c, scope, name) })
	}
	wg.Wait()
	before := r.model[i]
	for k, c := range calls {
		r.log = append(r.log, fmt.Sprintf("  -> call %d: err=%v created=%v unchanged=%v drift=%v", k, c.err, c.created, c.unchanged, c.drift))
		if c.err != nil {
			r.refusal("concurrent call", c.err)
			continue
		}
		r.drift(i, c.drift, "concurrent call")
		if c.unchanged {
			other, ok := calls[1-k].after(before, org)
			if !c.claim(before, org) && !(ok && c.claim(other, org)) {
				r.fail("concurrent call answered unchanged: GitHub held %+v before the other call, %+v after it", before, other)
			}
		}
	}
	got := r.held(i)
	var orders []modelState
	for _, o := range [][2]int{{0, 1}, {1, 0}} {
		m, ok1 := calls[o[0]].after(before, org)
		m, ok2 := calls[o[1]].after(m, org)
		if ok1 && ok2 {
			orders = append(orders, m)
		}
	}
	if !slices.ContainsFunc(orders, got.equal) {
		r.fail("after concurrent calls GitHub holds %+v, no order of them leaves that: %+v", got, orders)
	}
	if calls[0].err == nil && !calls[0].unchanged || calls[1].err == nil && !calls[1].unchanged {
		r.model[i], r.external[i] = got, false
		r.owner[i] = anonymousOwner
		if !got.exists {
			r.owner[i] = ""
		}
	}
}

// written checks a put's (or batch item's) OK answer against before, what
// GitHub held, and records what GitHub must hold now.
func (r *modelRun) written(i int, before modelState, value string, s settings, created, unchanged, force bool) {
	r.t.Helper()
	scope, _ := modelSecret(i)
	org := scope == orgScope
	if unchanged {
		if force {
			r.fail("a forced put answered unchanged")
		}
		if created || !s.holds(before, &value, org) {
			r.fail("put answered unchanged (created %v), GitHub held %+v", created, before)
		}
		return
	}
	if created == before.exists {
		r.fail("put answered created %v, GitHub held the secret: %v", created, before.exists)
	}
	m := &r.model[i]
	m.exists, m.value = true, value
	if org {
		m.visibility, m.selected = s.apply(before)
	}
	r.external[i], r.owner[i] = false, anonymousOwner
}

func FuzzBrokerModel(f *testing.F) {
	// Seeds: sequences of operations (see step for the encoding).
	for _, seed := range [][]byte{
		// repeat put -> unchanged (repo, env, org private)
		{0, 2, 0, 0, 0, 2, 0, 0, 0, 4, 1, 0, 0, 4, 1, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 2},
		// external write -> drift
		{0, 2, 0, 0, 6, 2, 1, 0, 2, 0, 0, 0, 2, 0, 0},
		// settings-only after an external write
		{0, 0, 0, 0, 3, 0xff, 6, 0, 1, 1, 2, 0, 2, 7, 2, 0, 2, 7},
		// rotation then repeat
		{0, 2, 0, 0, 9, 0, 1, 0, 2, 0, 0, 0, 2, 1, 0},
		// restart then repeat
		{0, 3, 0, 0, 10, 0, 3, 0, 0, 0, 3, 0, 0},
		// sync, external delete, prune sync, touch, batch, delete
		{4, 1, 0, 0, 1, 7, 2, 4, 1, 1, 1, 3, 9, 1, 3, 3, 2, 3, 1, 4, 0, 5, 4, 5, 3},
		// two owners: team-b's prune leaves anonymous's secret (foreign),
		// anonymous's sync conflicts on team-b's and prunes its own
		{0, 2, 0, 0, 4, 1, 9, 3, 1, 4, 1, 1, 3, 0},
		// two puts at once, then each value again
		{0, 2, 0, 0, 11, 2, 1, 0, 1, 1, 0, 2, 0, 0, 0, 2, 1, 0, 0, 2, 1, 0},
		// an org secret's settings-only put and a put at once, then each again
		{0, 0, 0, 0, 2, 11, 0, 1, 0, 3, 3, 0, 1, 0, 0, 0, 1, 0, 0, 2, 0, 3, 3},
		// an org sync and a put at once, then each again
		{0, 0, 0, 0, 2, 11, 0, 2, 1, 1, 0, 2, 1, 0, 0, 1, 0, 1, 0, 0, 2, 0, 1},
		// a delete and a put at once, then a delete
		{0, 2, 0, 0, 11, 2, 3, 0, 0, 1, 0, 2, 1, 0, 5, 2},
		// sync, external put, sync again: drifted
		{4, 1, 0, 0, 0, 6, 2, 1, 4, 1, 0, 0, 0},
		// org sync selected, external selection change, repeat
		{4, 0, 0, 0, 0, 3, 1, 8, 0, 1, 3, 2, 0, 0, 0, 0, 3, 1},
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		synctest.Test(t, func(t *testing.T) {
			logs := &syncBuffer{}
			emu := emulator.New(emulator.Options{Token: testToken, Logger: newTestLogger(logs)})
			demo := emu.SeedDemo()
			st, err := state.NewMemory(state.Options{})
			if err != nil {
				t.Fatal(err)
			}
			r := &modelRun{t: t, emu: emu, tr: newEmulatorTransport(emu), st: st, logs: logs}
			for _, repo := range demo.Repos {
				r.repos = append(r.repos, repo.ID)
			}
			r.start()
			in := &fuzzBytes{b: data}
			for n := 0; n < 30 && len(in.b) > 0; n++ {
				r.step(t.Context(), in)
				r.check(r.log[len(r.log)-1])
			}
			if testing.Verbose() {
				t.Logf("steps:\n  %s", strings.Join(r.log, "\n  "))
			}
		})
	})
}
