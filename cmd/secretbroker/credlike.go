package main

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// printedSettings are the free-form string settings the start-up line
// prints (Config.LogValue) or an error may quote, each with the flag that
// sets it, as they are printed: URLs through redactURL. The settings of a
// closed form are refused by validate when they do not fit it, without
// being repeated: the listen addresses (checkListenAddr), the API
// versions (checkAPIVersion), --log-format, --log-level and --dev-limits,
// and the OTEL_* exporters and sampler (traceexport.go). A string setting
// added to LogValue belongs to one or the other.
func (c *Config) printedSettings() []struct{ flag, value string } {
	return []struct{ flag, value string }{
		{"--upstream-url", redactURL(c.UpstreamURL)},
		{"--upstream-token-file", c.UpstreamTokenFile},
		{"--github-app-private-key-file", c.GitHubApp.PrivateKeyFile},
		{"--redis-url", redactURL(c.RedisURL)},
		{"--redis-url-file", c.RedisURLFile},
		{"--tls-cert-file", c.TLSCertFile},
		{"--tls-key-file", c.TLSKeyFile},
		{"--tls-client-ca-file", c.TLSClientCAFile},
		{"--callers-file", c.CallersFile},
		{"--jwt-issuer", c.JWTIssuer},
		{"--jwt-audience", c.JWTAudience},
		{"--jwt-jwks-url", redactURL(c.JWTJWKSURL)},
		{"--jwt-jwks-file", c.JWTJWKSFile},
		{"--policy-file", c.PolicyFile},
		{"--audit-log", c.AuditLog},
		{"--audit-hmac-key-file", c.AuditHMACKeyFile},
		{"--state-dir", c.StateDir},
		{"--state-hmac-key-file", c.StateHMACKeyFile},
	}
}

// refuseCredentials refuses a printed setting (printedSettings) whose
// value looks like a credential put there by mistake: the start-up line
// would print it. The error names the setting, never the value. It runs
// before anything prints them.
func (c *Config) refuseCredentials() error {
	for _, s := range c.printedSettings() {
		if looksLikeCredential(s.value) {
			return fmt.Errorf("%s (%s) looks like a credential (a GitHub token, a JWT or a PEM block) and is refused; the value is not shown",
				s.flag, envName(strings.TrimPrefix(s.flag, "--")))
		}
	}
	return nil
}

// looksLikeCredential reports whether s holds a PEM block, or the start
// of a GitHub token (ghp_ personal, gho_ OAuth, ghu_ user-to-server, ghs_
// server-to-server, ghr_ refresh, github_pat_ fine-grained) or of a JWT
// ("eyJ", the base64 of `{"`) at the start of a word (the start of s, or after a
// character that is not a letter or a digit: "/ghp_..." in a path, not
// "highs_" in a word). The rule is deliberately plain: no setting's
// honest value begins a word so.
func looksLikeCredential(s string) bool {
	if strings.Contains(s, "-----BEGIN") {
		return true
	}
	for _, p := range []string{"ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "eyJ"} {
		for i := 0; ; {
			j := strings.Index(s[i:], p)
			if j < 0 {
				break
			}
			if at := i + j; at == 0 || !isAlnum(s[at-1]) {
				return true
			}
			i += j + 1
		}
	}
	return false
}

func isAlnum(b byte) bool {
	return b >= '0' && b <= '9' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z'
}

// checkAPIVersion refuses an X-GitHub-Api-Version that is not a date
// (YYYY-MM-DD, GitHub's form), without repeating it.
func checkAPIVersion(flagName, v string) error {
	if _, err := time.Parse(time.DateOnly, v); err != nil {
		return fmt.Errorf("%s must be an API version date such as 2022-11-28 (the value is not shown, as it may be a secret)", flagName)
	}
	return nil
}

// checkListenAddr refuses a listen address that is not host:port with the
// host empty, an IP address or a DNS name (letters, digits, "-" and ".")
// and the port a number from 0 to 65535, without repeating it: the
// address is printed at start and in errors, and a value of another form
// may be a secret put there by mistake.
func checkListenAddr(flagName, addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return notHostPort(flagName)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || strconv.FormatUint(n, 10) != port {
		return notHostPort(flagName)
	}
	if host == "" {
		return nil
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return nil
	}
	for _, label := range strings.Split(host, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return notHostPort(flagName)
		}
		for i := range len(label) {
			if !isAlnum(label[i]) && label[i] != '-' {
				return notHostPort(flagName)
			}
		}
	}
	return nil
}
