package upstream

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// legacyRepo answers GET /repos/acme/api for repository id: with its JSON
// and ETag W/"r<id>", or 304 to a request conditional on that ETag.
func legacyRepo(w *memWriter, r *http.Request, id int64) {
	etag := fmt.Sprintf(`W/"r%d"`, id)
	w.Header().Set("ETag", etag)
	if r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = fmt.Fprintf(w, `{"id":%d,"name":"api","full_name":"acme/api"}`, id)
}

// legacyEnv answers the legacy environment routes of any repository id.
func legacyEnv(w *memWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodPut:
		w.WriteHeader(http.StatusCreated)
	case r.Method == http.MethodDelete:
		w.WriteHeader(http.StatusNoContent)
	case strings.HasSuffix(r.URL.Path, "/public-key"):
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"key_id":"k1","key":"a2V5"}`)
	default:
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, secretListJSON)
	}
}

const legacyLookupPath = "/api/v3/repos/acme/api"

// The id of a legacy route is GitHub's for the name at the time of the
// call: each call asks GitHub again, conditionally on the cached answer's
// ETag. What that lookup answers decides where the call goes, whether it
// goes at all, and what the next lookup is conditional on.
func TestLegacyRevalidation(t *testing.T) {
	tests := []struct {
		name string
		// later answers every lookup after the first, which gives id
		// 4242 (the retries of the second included).
		later      func(w *memWriter, r *http.Request)
		wantPut    string // the path the PUT went to; "" for none
		wantStatus int    // the *Error the PUT fails with; 0 for success
		wantErr    error  // or the error it wraps
		// wantThird is the If-None-Match of the third lookup: the ETag
		// of the id kept, or "" when the id was forgotten.
		wantThird string
	}{
		{"unchanged: 304", func(w *memWriter, r *http.Request) { legacyRepo(w, r, 4242) },
			"/api/v3/repositories/4242/environments/prod%2Feu/secrets/S", 0, nil, `W/"r4242"`},
		{"renamed, another repository took the name: 200 with a new id", func(w *memWriter, r *http.Request) { legacyRepo(w, r, 5353) },
			"/api/v3/repositories/5353/environments/prod%2Feu/secrets/S", 0, nil, `W/"r5353"`},
		{"deleted: 404", func(w *memWriter, r *http.Request) {
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, `{"message":"Not Found"}`)
		}, "", http.StatusNotFound, nil, ""},
		{"renamed away: 301 to the new name", func(w *memWriter, r *http.Request) {
			w.Header().Set("Location", "https://ghes.example/api/v3/repositories/4242")
			w.WriteHeader(http.StatusMovedPermanently)
			_, _ = io.WriteString(w, `{"message":"Moved Permanently","url":"https://ghes.example/api/v3/repositories/4242"}`)
		}, "", http.StatusMovedPermanently, nil, ""},
		{"server error: 502 on every attempt", func(w *memWriter, r *http.Request) {
			w.WriteHeader(http.StatusBadGateway)
		}, "", http.StatusBadGateway, nil, `W/"r4242"`},
		{"dropped connection on every attempt", func(w *memWriter, r *http.Request) { w.Drop() },
			"", 0, io.EOF, `W/"r4242"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var lookups atomic.Int32
				s := newMemServer(func(_ int, _ arrival, w *memWriter, r *http.Request) {
					if r.URL.Path != legacyLookupPath {
						legacyEnv(w, r)
						return
					}
					if lookups.Add(1) > 1 {
						tt.later(w, r)
						return
					}
					legacyRepo(w, r, 4242)
				})
				c := memClientWith(t, s, Config{BaseURL: "https://ghes.example/api/v3", LegacyRoutes: true})
				ctx := t.Context()
				if _, err := c.GetPublicKey(ctx, envActions); err != nil {
					t.Fatal(err)
				}

				before := s.Count()
				_, err := c.PutSecret(ctx, envActions, "S", PutSecretBody{EncryptedValue: "eA==", KeyID: "k1"})
				e, isErr := errors.AsType[*Error](err)
				switch {
				case tt.wantStatus == 0 && tt.wantErr == nil && err != nil:
					t.Fatalf("PutSecret: %v", err)
				case tt.wantStatus != 0 && (!isErr || e.StatusCode != tt.wantStatus || e.Route != "/repos/{owner}/{repo}"):
					t.Fatalf("PutSecret: %v, want the lookup's %d *Error", err, tt.wantStatus)
				case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
					t.Fatalf("PutSecret: %v, want %v", err, tt.wantErr)
				}
				var puts []string
				for _, a := range s.Arrivals()[before:] {
					switch {
					case a.Path == legacyLookupPath:
						if got := a.Header.Get("If-None-Match"); got != `W/"r4242"` {
							t.Errorf("lookup before the PUT with If-None-Match %q, want the first answer's ETag", got)
						}
					case a.Method == http.MethodPut:
						puts = append(puts, a.Path)
					default:
						t.Errorf("unexpected %s %s", a.Method, a.Path)
					}
				}
				var want []string
				if tt.wantPut != "" {
					want = []string{tt.wantPut}
				}
				if fmt.Sprint(puts) != fmt.Sprint(want) {
					t.Errorf("PUTs to %v, want %v", puts, want)
				}

				before = s.Count()
				_, _ = c.GetPublicKey(ctx, envActions)
				third := s.Arrivals()[before]
				if third.Path != legacyLookupPath {
					t.Fatalf("the next call began with %s %s, want the lookup", third.Method, third.Path)
				}
				if got := third.Header.Get("If-None-Match"); got != tt.wantThird {
					t.Errorf("next lookup with If-None-Match %q, want %q", got, tt.wantThird)
				}
			})
		})
	}
}

// Concurrent calls for one repository share one lookup: 64 calls arriving
// while it takes a second make one conditional GET, and every call goes
// when it is answered, to the id it gave. The next call asks again.
func TestLegacyRevalidationShared(t *testing.T) {
	tests := []struct {
		name   string
		id     int64 // the id GitHub gives acme/api from the second lookup on
		wantID string
	}{
		{"unchanged", 4242, "4242"},
		{"renamed, another repository took the name", 5353, "5353"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var lookups atomic.Int32
				s := newMemServer(func(_ int, _ arrival, w *memWriter, r *http.Request) {
					if r.URL.Path != legacyLookupPath {
						legacyEnv(w, r)
						return
					}
					if lookups.Add(1) == 1 {
						legacyRepo(w, r, 4242)
						return
					}
					time.Sleep(time.Second)
					legacyRepo(w, r, tt.id)
				})
				c := memClientWith(t, s, Config{BaseURL: "https://ghes.example/api/v3", Pacing: quickPacing(), LegacyRoutes: true})
				ctx := t.Context()
				if _, err := c.GetPublicKey(ctx, envActions); err != nil {
					t.Fatal(err)
				}

				before := s.Count()
				t0 := time.Now()
				errs := runAll(64, envCallMix(ctx, c))
				noErrors(t, errs)
				arr := s.Arrivals()[before:]
				if len(arr) != 65 || arr[0].Path != legacyLookupPath {
					t.Fatalf("%d requests, the first %s: want one lookup and the 64 calls", len(arr), arr[0].Path)
				}
				if got := arr[0].Header.Get("If-None-Match"); got != `W/"r4242"` {
					t.Errorf("the shared lookup had If-None-Match %q, want the cached answer's ETag", got)
				}
				prefix := "/api/v3/repositories/" + tt.wantID + "/"
				for _, a := range arr[1:] {
					if !strings.HasPrefix(a.Path, prefix) {
						t.Errorf("%s %s, want a path under %s", a.Method, a.Path, prefix)
					}
					if got := a.At.Sub(t0); got != time.Second {
						t.Errorf("%s %s went %v after the start, want when the lookup was answered, 1s", a.Method, a.Path, got)
					}
				}

				if _, err := c.GetPublicKey(ctx, envActions); err != nil {
					t.Fatal(err)
				}
				if n := lookups.Load(); n != 3 {
					t.Errorf("%d lookups, want 3: the first, the shared one, and the next call's", n)
				}
			})
		})
	}
}
