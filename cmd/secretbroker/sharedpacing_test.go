package main

import (
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/secretbroker/secretbroker/upstream"
	"github.com/secretbroker/secretbroker/upstream/pace/redistest"
)

// The Redis settings: a password never in a flag value; the URL from a
// file may hold one; REDIS_PASSWORD fills it in; no error or log shows it.
func TestRedisURLSettings(t *testing.T) {
	const password = "s3cret-redis-pw"
	file := filepath.Join(t.TempDir(), "redis-url")
	if err := os.WriteFile(file, []byte("rediss://app:"+password+"@redis.internal:6380/2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string // "" accepted
		wantURL string // the URL in use, password included
	}{
		{name: "none", args: nil, wantURL: ""},
		{name: "redis URL, password from the environment", args: []string{"--redis-url=redis://redis.internal:6379"},
			env: map[string]string{"REDIS_PASSWORD": password}, wantURL: "redis://:" + password + "@redis.internal:6379"},
		{name: "password in the flag", args: []string{"--redis-url=redis://u:" + password + "@redis.internal"},
			wantErr: "--redis-url must not hold a password"},
		{name: "password in the environment variable of the flag", args: nil,
			env: map[string]string{"SECRETBROKER_REDIS_URL": "redis://u:" + password + "@redis.internal"}, wantErr: "must not hold a password"},
		{name: "URL from a file, with its password", args: []string{"--redis-url-file=" + file},
			wantURL: "rediss://app:" + password + "@redis.internal:6380/2"},
		{name: "password in the flag's query", args: []string{"--redis-url=redis://redis.internal/0?password=" + password},
			wantErr: "--redis-url must not hold a password"},
		{name: "both", args: []string{"--redis-url=redis://h", "--redis-url-file=" + file}, wantErr: "exclusive"},
		{name: "scheme", args: []string{"--redis-url=http://h"}, wantErr: "scheme must be redis or rediss"},
		{name: "replicas", args: []string{"--expected-replicas=0"}, wantErr: "--expected-replicas must be 1 to 100"},
		{name: "replicas past GitHub's concurrent requests", args: []string{"--expected-replicas=10000000000"}, wantErr: "--expected-replicas must be 1 to 100"},
		{name: "replicas without Redis", env: map[string]string{"SECRETBROKER_EXPECTED_REPLICAS": "2"}, wantErr: "--expected-replicas 2 needs --redis-url"},
		{name: "replicas with Redis", args: []string{"--expected-replicas=3", "--redis-url-file=" + file},
			wantURL: "rediss://app:" + password + "@redis.internal:6380/2"},
		{name: "writes per minute", args: []string{"--upstream-writes-per-minute=-1"}, wantErr: "--upstream-writes-per-minute"},
		{name: "writes per hour off", args: []string{"--upstream-writes-per-hour=0"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{"GITHUB_TOKEN": "ghp_x"}
			for k, v := range tc.env {
				env[k] = v
			}
			cfg, err := loadConfig(append([]string{"--allow-unauthenticated"}, tc.args...), envMap(env), io.Discard)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), password) {
					t.Fatalf("the error shows the password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			if u := cfg.RedisURLInUse(); u != nil {
				got = u.String()
			}
			if got != tc.wantURL {
				t.Errorf("URL in use %q, want %q", got, tc.wantURL)
			}
			if s := cfg.String(); strings.Contains(s, password) {
				t.Errorf("the configuration shows the password: %s", s)
			}
		})
	}
}

// A broker whose Redis is unreachable serves, degraded: /readyz answers
// 200 with the reason, the metric says 0; with Redis up, plain ok and 1.
func TestRunWithRedis(t *testing.T) {
	srv := redistest.Start(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close() // nothing listens there: unreachable

	tests := []struct {
		name, addr, readyz string
		up                 float64
	}{
		{"unreachable", closed, "ok (degraded: pacing state for token: Redis unreachable since", 0},
		{"reachable", srv.Addr, "ok\n", 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := devConfig(t)
			cfg.RedisURL = "redis://" + tc.addr
			if err := cfg.SharedPacing.resolve(envMap(nil)); err != nil {
				t.Fatal(err)
			}
			b := startBroker(t, cfg)
			if code, body := b.adminGet(t, "/readyz"); code != 200 || !strings.HasPrefix(body, tc.readyz) {
				t.Errorf("/readyz %d %q, want 200 %q", code, body, tc.readyz)
			}
			fams, _ := b.scrape(t)
			if v, ok := metricValue(fams, "secretbroker_pacer_shared_state_up", map[string]string{"credential": "token"}); !ok || v != tc.up {
				t.Errorf("secretbroker_pacer_shared_state_up = %v (found %v), want %v", v, ok, tc.up)
			}
			if tc.up == 0 && strings.Count(b.logs.String(), "Redis unreachable") != 1 {
				t.Errorf("want one log line for the outage; logs:\n%s", b.logs)
			}
		})
	}
}

// redisDBPath is a Redis URL's path as the Redis client takes it.
var redisDBPath = regexp.MustCompile(`^(?:/[0-9]{0,9})?$`)

// FuzzRedisURL: whatever --redis-url holds, resolve neither panics nor
// repeats a password in its error, and accepts a URL only with a redis or
// rediss scheme, a host, no password and a database number for a path.
func FuzzRedisURL(f *testing.F) {
	for _, seed := range []string{
		"redis://h:6379", "rediss://user@h:6380/1", "redis://:pw-secret@h", "redis://u:pw-secret@h",
		"http://h", "redis://", "redis:///x", "%zz", "redis://u:pw%zzsecret@h", "rediss://[::1]:6379",
		"redis://h:6379/0", "redis://h/", "redis://h/01", "redis://h/0/", "redis://h/%30", "redis://u/:x@h", "redis://h:6379/-1",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		s := SharedPacing{RedisURL: raw, ExpectedReplicas: 1}
		err := s.resolve(envMap(nil))
		if err != nil {
			for _, secret := range []string{"pw-secret", "pw%zzsecret"} {
				if strings.Contains(raw, secret) && strings.Contains(err.Error(), secret) {
					t.Fatalf("error repeats the password: %v", err)
				}
			}
			return
		}
		if raw == "" {
			return
		}
		u := s.RedisURLInUse()
		if u == nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
			t.Fatalf("accepted %q as %v", raw, u)
		}
		if _, has := u.User.Password(); has {
			t.Fatalf("accepted a password in the flag: %q", raw)
		}
		if !redisDBPath.MatchString(u.EscapedPath()) {
			t.Fatalf("accepted %q with path %q, not a database number", raw, u.EscapedPath())
		}
	})
}

// FuzzRedisURLPassword: a Redis URL read from --redis-url-file, written as
// an operator writes it (the password as it is, unescaped, anywhere a
// password goes), is refused or shown without its password: neither the
// error nor the URL as logs show it (redisShown) holds the password.
func FuzzRedisURLPassword(f *testing.F) {
	for _, seed := range []struct{ user, pw, host, rest string }{
		{"default", "pw-secret-1", "redis:6379", "/0"},
		{"", "pw-secret-1", "redis", ""},
		{"u", "pw?secret=1", "h", ""},
		{"u", "pw#secret", "h", ""},
		{"default", "4/Kx9pw-secret", "redis:6379", ""},
		{"", "123/pw-secret", "redis", "/0"},
		{"u", "p@ss:w%rd", "h:1", "?db=0"},
		{"u", "pw-secret", "[::1]:6379", "/1?password=pw-secret"},
		{"0", "000000", "\x8000000", ""}, // the host prints as "%8000000"
		{"@", "00000#", "00", ""},        // the user's "@" ends the user information
	} {
		f.Add(seed.user, seed.pw, seed.host, seed.rest)
	}
	file := filepath.Join(f.TempDir(), "redis-url")
	f.Fuzz(func(t *testing.T, user, pw, host, rest string) {
		// The password stands out: not a piece of the URL's other text,
		// nor of the fixed texts around it.
		if len(pw) < 6 || strings.ContainsAny(pw, "\r\n\t ") || strings.Contains(user+host+rest+"redis://redacted(none)", pw) {
			return
		}
		// Nor of the other text as a URL prints it: "\x80" + "00000" in
		// the host prints as "%80" + "00000", which holds "000000". The
		// reference holds no password, so a password misread as the host
		// or path still counts as shown. It is read as resolve reads the
		// file, without the blanks around it: a host "\x8000000" and a
		// rest " " print as "%8000000".
		if ref, err := url.Parse(strings.TrimSpace("redis://" + host + rest)); err == nil && strings.Contains(ref.String(), pw) {
			return
		}
		raw := "redis://" + user + ":" + pw + "@" + host + rest
		if err := os.WriteFile(file, []byte(raw), 0o600); err != nil {
			t.Fatal(err)
		}
		s := SharedPacing{RedisURLFile: file, ExpectedReplicas: 1}
		if err := s.resolve(envMap(nil)); err != nil {
			if strings.Contains(err.Error(), pw) {
				t.Fatalf("the error shows the password: %v", err)
			}
			return
		}
		if shown := s.redisShown(); strings.Contains(shown, pw) {
			t.Fatalf("%q is shown as %q", raw, shown)
		}
	})
}

// A password with an unescaped "/" (base64 holds them) ends the
// authority early: url.Parse reads "redis://default:4/Kx...@redis:6379"
// as host "default", port 4 and a path holding the password. Such a URL
// is refused without quoting it, as is any path that is not a database
// number; a database number, or the password escaped, is taken.
func TestRedisURLPathIsADatabase(t *testing.T) {
	const planted = "Kx9-planted-pw"
	const misread = `an "@" outside the user information`
	file := filepath.Join(t.TempDir(), "redis-url") // a path without planted in it
	for _, tt := range []struct {
		raw  string
		want string // in the error; "" for none
	}{
		// A "/", "?" or "#" in the password, unescaped, ends the host early.
		{"redis://default:4/" + planted + "@redis:6379", misread},
		{"redis://:123/" + planted + "@redis/0", misread},
		{"redis://user/:" + planted + "@redis:6379", misread},
		{"redis://default:12?" + planted + "@redis:6379", misread},
		{"redis://default:12#" + planted + "@redis:6379", misread},
		// An "@" in the user name, with a "/", "?" or "#" after it in the
		// password: the user information ends at that "@".
		{"redis://@:12#" + planted + "@redis:6379", misread},
		{"redis://me@corp:12#" + planted + "@redis:6379", misread},
		{"redis://me@corp:12/" + planted + "@redis:6379", misread},
		{"redis://u:p@ss/" + planted + "@redis:6379", misread},
		// Without one, url.Parse ends the user information at the last
		// "@" before the host: read as written, taken.
		{"redis://me@corp:" + planted + "@redis:6379", ""},
		{"redis://default:p@ss" + planted + "@redis:6379/0", ""},
		{"redis://me%40corp:" + planted + "@redis:6379", ""},
		{"redis://redis:6379/" + planted, "database number"},
		{"redis://redis:6379/0/1", "database number"},
		{"redis://redis:6379/-1", "database number"},
		{"redis://default:4%2F" + planted + "@redis:6379", ""},
		{"redis://default:12%3F" + planted + "%23@redis:6379", ""},
		{"redis://default:" + planted + "@redis:6379/15", ""},
		{"redis://redis:6379/", ""},
		{"redis://redis:6379", ""},
	} {
		t.Run(tt.raw, func(t *testing.T) {
			if err := os.WriteFile(file, []byte(tt.raw), 0o600); err != nil {
				t.Fatal(err)
			}
			s := SharedPacing{RedisURLFile: file, ExpectedReplicas: 1}
			err := s.resolve(envMap(nil))
			if (err == nil) != (tt.want == "") {
				t.Fatalf("resolve(%q) = %v, want an error %q", tt.raw, err, tt.want)
			}
			if err != nil && (strings.Contains(err.Error(), planted) || !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("error %q, want one with %q and without the password", err, tt.want)
			}
			if shown := s.redisShown(); strings.Contains(shown, planted) {
				t.Fatalf("shown as %q", shown)
			}
		})
	}
}

// A Redis URL may carry its password where the user info does not show
// it (?password=, which go-redis refuses, or a fragment): the URL as logs
// and errors show it masks the query and fragment too.
func TestRedisURLShownWithoutItsQuery(t *testing.T) {
	const planted = "planted-redis-pw-q7"
	for _, raw := range []string{
		"redis://127.0.0.1:1/0?password=" + planted,
		"redis://u:" + planted + "@127.0.0.1:1/0?password=" + planted,
		"redis://127.0.0.1:1/0#" + planted,
	} {
		t.Run(raw[:12], func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "redis-url")
			if err := os.WriteFile(file, []byte(raw), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, err := loadConfig([]string{"--dev", "--redis-url-file=" + file}, envMap(nil), io.Discard)
			if err != nil {
				if strings.Contains(err.Error(), planted) {
					t.Fatalf("the error shows the password: %v", err)
				}
				t.Fatal(err)
			}
			if s := cfg.redisShown(); strings.Contains(s, planted) || !strings.HasPrefix(s, "redis://") {
				t.Errorf("redisShown() = %q", s)
			}
			s, err := newSharedStates(t.Context(), cfg, slog.New(slog.DiscardHandler))
			if s != nil {
				s.close()
			}
			if err != nil && strings.Contains(err.Error(), planted) {
				t.Errorf("the Redis client's refusal shows the password: %v", err)
			}
		})
	}
}

// A credential's shared state that the upstream client closes (a GitHub
// App installation GitHub reports gone) ends its heartbeat and leaves
// /readyz's detail and secretbroker_pacer_shared_state_up; the other
// credentials' states go on.
func TestSharedStateClosed(t *testing.T) {
	srv := redistest.Start(t)
	cfg := devConfig(t)
	cfg.RedisURL = "redis://" + srv.Addr
	if err := cfg.SharedPacing.resolve(envMap(nil)); err != nil {
		t.Fatal(err)
	}
	s, err := newSharedStates(t.Context(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.close) // after t.Context() ends
	newState := s.stateFunc()
	lim := upstream.DefaultPacing().StateLimits()
	closers := map[string]interface{ Close() }{}
	for _, cred := range []string{"app", "installation:1", "installation:2"} {
		st, err := newState(cred, lim)
		if err != nil {
			t.Fatal(err)
		}
		c, ok := st.(interface{ Close() })
		if !ok {
			t.Fatalf("the shared state of %s (%T) cannot be closed: its heartbeat runs until the broker stops", cred, st)
		}
		closers[cred] = c
	}
	closers["installation:1"].Close()
	closers["installation:1"].Close() // twice does no harm
	s.mu.Lock()
	var kept []string
	for cred := range s.states {
		kept = append(kept, cred)
	}
	s.mu.Unlock()
	slices.Sort(kept)
	if want := []string{"app", "installation:2"}; !slices.Equal(kept, want) {
		t.Errorf("shared states %v after closing installation:1's, want %v", kept, want)
	}
	// Every loop ends once its state is closed, before the broker's
	// context does.
	closers["app"].Close()
	closers["installation:2"].Close()
	s.loops.Wait()
}
