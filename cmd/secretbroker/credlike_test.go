package main

import "testing"

func TestLooksLikeCredential(t *testing.T) {
	for _, tc := range []struct {
		s    string
		want bool
	}{
		{"https://token.actions.githubusercontent.com", false},
		{"https://kubernetes.default.svc.cluster.local", false},
		{"secretbroker", false},
		{"/var/run/secrets/highs_and_lows/key.pem", false}, // "ghs_" inside a word
		{"/etc/secretbroker/policy.yaml", false},
		{"", false},
		{"ghp_abc", true},
		{"gho_abc", true},
		{"ghu_abc", true},
		{"ghs_abc", true},
		{"ghr_abc", true},
		{"github_pat_11ABC", true},
		{"https://issuer.example/ghs_abc", true},
		{"eyJhbGciOiJIUzI1NiJ9.e30.sig", true},
		{"-----BEGIN RSA PRIVATE KEY-----\nMII...", true},
	} {
		if got := looksLikeCredential(tc.s); got != tc.want {
			t.Errorf("looksLikeCredential(%q) = %v, want %v", tc.s, got, tc.want)
		}
	}
}

func TestCheckListenAddr(t *testing.T) {
	for _, tc := range []struct {
		addr string
		ok   bool
	}{
		{":9090", true},
		{"127.0.0.1:0", true},
		{"[::1]:8080", true},
		{"[fe80::1%eth0]:8080", true},
		{"localhost:9091", true},
		{"broker-0.broker.ns.svc:9090", true},
		{"0.0.0.0:65535", true},
		{"9090", false},
		{":http", false},
		{":65536", false},
		{":+80", false},
		{"ghp_abc:9090", false},
		{"-host:9090", false},
		{"a..b:9090", false},
		{"host name:9090", false},
	} {
		if err := checkListenAddr("--grpc-addr", tc.addr); (err == nil) != tc.ok {
			t.Errorf("checkListenAddr(%q) = %v, want ok %v", tc.addr, err, tc.ok)
		}
	}
}

func TestCheckAPIVersion(t *testing.T) {
	for _, tc := range []struct {
		v  string
		ok bool
	}{
		{"2022-11-28", true},
		{"2026-03-10", true},
		{"", false},
		{"2022-13-01", false},
		{"2022-11-28 ", false},
		{"v3", false},
		{"ghp_abc", false},
	} {
		if err := checkAPIVersion("--upstream-api-version-actions", tc.v); (err == nil) != tc.ok {
			t.Errorf("checkAPIVersion(%q) = %v, want ok %v", tc.v, err, tc.ok)
		}
	}
}
