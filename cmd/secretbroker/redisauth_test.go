package main

import (
	"net"
	"strings"
	"testing"

	"github.com/secretbroker/secretbroker/upstream/pace/redistest"
)

// TestRedisRefusedOrUnreachableNeverShowsThePassword: the Redis URL's
// password (from --redis-url-file, or REDIS_PASSWORD) is refused by the
// server (WRONGPASS: a user it does not know) or never reaches it (the
// host is down); the broker serves degraded, and neither its log lines
// (the go-redis AUTH and dial errors among them) nor /readyz hold the
// password or the user name.
func TestRedisRefusedOrUnreachableNeverShowsThePassword(t *testing.T) {
	const (
		user     = "PLANTEDredisUser"
		password = "PLANTEDredisPassword-0123456789"
	)
	srv := redistest.Start(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	for _, tc := range []struct {
		name, file string
		env        map[string]string
		log        string // what the log says of it
	}{
		{"wrong user and password, from the file", "redis://" + user + ":" + password + "@" + srv.Addr + "/0", nil, "WRONGPASS"},
		{"wrong user, password from REDIS_PASSWORD", "redis://" + user + "@" + srv.Addr + "/0", map[string]string{envRedisPassword: password}, "WRONGPASS"},
		{"unreachable, from the file", "redis://" + user + ":" + password + "@" + closed + "/0", nil, "Redis unreachable"},
		{"unreachable, password from REDIS_PASSWORD", "redis://" + user + "@" + closed, map[string]string{envRedisPassword: password}, "Redis unreachable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := devConfig(t)
			cfg.RedisURLFile = writeFile(t, "redis-url", tc.file+"\n")
			if err := cfg.SharedPacing.resolve(envMap(tc.env)); err != nil {
				t.Fatal(err)
			}
			b := startBroker(t, cfg)
			_, body := b.adminGet(t, "/readyz")
			if !strings.Contains(body, "Redis unreachable") {
				t.Errorf("/readyz %q, want it degraded", body)
			}
			if !strings.Contains(b.logs.String(), tc.log) {
				t.Errorf("the log does not say %q:\n%s", tc.log, b.logs)
			}
			for _, s := range []string{user, password} {
				if strings.Contains(body, s) {
					t.Errorf("/readyz holds %q: %q", s, body)
				}
				if strings.Contains(b.logs.String(), s) {
					t.Errorf("the log holds %q:\n%s", s, b.logs)
				}
			}
		})
	}
}
