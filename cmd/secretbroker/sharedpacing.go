package main

import (
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/secretbroker/secretbroker/upstream"
	"github.com/secretbroker/secretbroker/upstream/credential"
)

// envRedisPassword holds the Redis password when the URL has none.
const envRedisPassword = "REDIS_PASSWORD"

// defaultExpectedReplicas is --expected-replicas' default.
const defaultExpectedReplicas = 1

// maxExpectedReplicas is --expected-replicas' greatest value: GitHub's 100
// concurrent requests are divided among the replicas, at least one each.
const maxExpectedReplicas = 100

// SharedPacing is the part of Config for GitHub's content-creation limits
// and for the pacing state the broker's replicas share through Redis.
type SharedPacing struct {
	// UpstreamWritesPerMinute and UpstreamWritesPerHour are GitHub's
	// content-creation limits on PUT and DELETE requests. Flags
	// --upstream-writes-per-minute (default 80) and
	// --upstream-writes-per-hour (default 500); 0 turns each off.
	UpstreamWritesPerMinute int
	UpstreamWritesPerHour   int

	// RedisURL is the Redis the replicas share their pacing through,
	// redis:// or rediss://, without a password (REDIS_PASSWORD holds
	// it). Flag --redis-url. Default: none, the pacing state stays in
	// memory.
	RedisURL string
	// RedisURLFile is a file holding the Redis URL, which may include its
	// password. Flag --redis-url-file.
	RedisURLFile string
	// ExpectedReplicas is how many replicas share the budget: while Redis
	// is unreachable each paces within 1/ExpectedReplicas of it. Flag
	// --expected-replicas. Default 1, at most 100 (maxExpectedReplicas);
	// above 1 needs a Redis URL.
	ExpectedReplicas int

	// redis is the URL in use, password included: never logged.
	redis *url.URL
}

// register adds the flags to fs, with p's defaults.
func (s *SharedPacing) register(fs *flag.FlagSet, p upstream.Pacing) {
	fs.IntVar(&s.UpstreamWritesPerMinute, "upstream-writes-per-minute", p.WritesPerMinute,
		"GitHub's content-creation limit: PUT and DELETE requests in any 60 s window; 0 turns it off")
	fs.IntVar(&s.UpstreamWritesPerHour, "upstream-writes-per-hour", p.WritesPerHour,
		"GitHub's content-creation limit: PUT and DELETE requests in any hour; 0 turns it off")
	fs.StringVar(&s.RedisURL, "redis-url", "",
		"`URL` (redis:// or rediss://, no password: set "+envRedisPassword+") of the Redis the replicas share the GitHub budget through")
	fs.StringVar(&s.RedisURLFile, "redis-url-file", "",
		"`file` holding the Redis URL, password allowed (instead of --redis-url)")
	fs.IntVar(&s.ExpectedReplicas, "expected-replicas", defaultExpectedReplicas,
		"replicas sharing the GitHub budget through --redis-url, 1 to 100; while Redis is unreachable each keeps within 1/N of it")
}

// resolve checks the settings and reads the Redis URL (from the file, or
// the flag with REDIS_PASSWORD). Its errors never hold a password.
func (s *SharedPacing) resolve(lookupEnv func(string) (string, bool)) error {
	if s.ExpectedReplicas < 1 || s.ExpectedReplicas > maxExpectedReplicas {
		return fmt.Errorf("--expected-replicas must be 1 to %d, got %d", maxExpectedReplicas, s.ExpectedReplicas)
	}
	if s.UpstreamWritesPerMinute < 0 {
		return fmt.Errorf("--upstream-writes-per-minute must be 0 (off) or positive, got %d", s.UpstreamWritesPerMinute)
	}
	if s.UpstreamWritesPerHour < 0 {
		return fmt.Errorf("--upstream-writes-per-hour must be 0 (off) or positive, got %d", s.UpstreamWritesPerHour)
	}
	raw, from := s.RedisURL, "--redis-url"
	switch {
	case s.RedisURL != "" && s.RedisURLFile != "":
		return errors.New("--redis-url and --redis-url-file are exclusive: give one")
	case s.RedisURLFile != "":
		b, err := os.ReadFile(s.RedisURLFile)
		if err != nil {
			return fmt.Errorf("reading --redis-url-file: %w", credential.WithoutPath(err))
		}
		raw, from = strings.TrimSpace(string(b)), "--redis-url-file "+s.RedisURLFile
		if raw == "" {
			return fmt.Errorf("%s is empty", from)
		}
	case raw == "":
		if s.ExpectedReplicas > 1 {
			// Without Redis each replica paces alone with the whole
			// budget: the setting would divide nothing.
			return fmt.Errorf("--expected-replicas %d needs --redis-url or --redis-url-file: without a shared Redis each replica spends GitHub's whole budget, whatever it is set to", s.ExpectedReplicas)
		}
		return nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%s: not a valid URL", from) // url.Error would quote it
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return fmt.Errorf("%s: scheme must be redis or rediss", from)
	}
	if u.Host == "" {
		return fmt.Errorf("%s: no host", from)
	}
	if credential.MisreadUserInfo(raw, u) {
		// A password with an unescaped "/", "?" or "#" ended the host
		// early: its start became the port, the rest a path, query or
		// fragment, and any of them may be shown.
		return fmt.Errorf("%s: an \"@\" outside the user information (escape \"@\", \"/\", \"?\" and \"#\" in a user name or password as %%40, %%2F, %%3F and %%23)", from)
	}
	// The path is the database number, if any. Anything else is most
	// likely user info with an unescaped "/" (a password such as
	// "4/Kx...") that url.Parse took for the host and a path: the path,
	// which redisShown keeps, would hold the password.
	if !validRedisDBPath(u.EscapedPath()) {
		return fmt.Errorf("%s: the path must be a database number such as /0 (a \"/\" in a user name or password is escaped as %%2F)", from)
	}
	_, hasPassword := u.User.Password()
	hasPassword = hasPassword || u.Query().Has("password")
	if hasPassword && s.RedisURLFile == "" {
		return fmt.Errorf("--redis-url must not hold a password (a flag value shows in the process list): set %s or use --redis-url-file", envRedisPassword)
	}
	if pw, ok := lookupEnv(envRedisPassword); ok && pw != "" && !hasPassword {
		name := ""
		if u.User != nil {
			name = u.User.Username()
		}
		u.User = url.UserPassword(name, pw)
	}
	s.redis = u
	return nil
}

// validRedisDBPath reports whether path (escaped) is a Redis URL's path
// as the Redis client takes it: none, "/", or "/" and a database number.
func validRedisDBPath(path string) bool {
	db, ok := strings.CutPrefix(path, "/")
	if path == "" || db == "" {
		return true
	}
	if !ok || len(db) > 9 {
		return false
	}
	for _, c := range db {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// RedisURLInUse returns the Redis URL in use, password included, or nil.
// Never log it; redisShown is for that.
func (s *SharedPacing) RedisURLInUse() *url.URL { return s.redis }

// redisShown is the Redis URL for logs and errors, with its user info,
// query and fragment masked (redactURL: a client may take the password
// as ?password=), or "(none)".
func (s *SharedPacing) redisShown() string {
	if s.redis == nil {
		return "(none)"
	}
	return redactURL(s.redis.String())
}
