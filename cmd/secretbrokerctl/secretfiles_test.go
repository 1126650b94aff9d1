package main

import (
	"strings"
	"testing"
)

// TestFileFlagGivenTheSecret: a flag that names a file holding a secret
// is given the secret itself ("--from-file $VALUE", "--token-file
// $TOKEN", a key's PEM for --tls-key-file, the env file's text for
// --from-env-file). Opening "the file" fails, and the error named the
// path, *fs.PathError's way: the value or token, on standard error and so
// in a CI log. The error names the flag and what went wrong, not the path.
func TestFileFlagGivenTheSecret(t *testing.T) {
	const pemKey = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIPLANTEDkeyMaterial0123456789abcdefghijklmnoAoGCCqGSM49\n-----END EC PRIVATE KEY-----\n"
	cert := writeFile(t, "cert.pem", []byte("not read as a certificate before the key fails"))
	addr := "--addr=127.0.0.1:1"
	for _, tc := range []struct {
		name   string
		secret string
		args   []string
		flag   string
	}{
		{"value", plantedValue, []string{"put", addr, "--from-file", plantedValue, "repos/o/r/actions/secrets/X"}, "--from-file"},
		{"token", plantedToken, []string{"ls", addr, "--token-file", plantedToken, "repos/o/r/actions"}, "--token-file"},
		{"client key", pemKey, []string{"ls", addr, "--tls-cert-file", cert, "--tls-key-file", pemKey, "repos/o/r/actions"}, "--tls-key-file"},
		{"env file", "A=" + plantedValue, []string{"put-many", addr, "--from-env-file", "A=" + plantedValue, "repos/o/r/actions"}, "--from-env-file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := ctl(t, nil, "", tc.args...)
			wantCode(t, r, exitUsage)
			if !strings.Contains(r.stderr, tc.flag) {
				t.Errorf("stderr %q does not name %s", r.stderr, tc.flag)
			}
			for _, line := range strings.Split(tc.secret, "\n") {
				if len(line) >= 8 && strings.Contains(r.all(), line) {
					t.Fatalf("the output holds the secret given as the path:\n%s", r.all())
				}
			}
		})
	}
}
