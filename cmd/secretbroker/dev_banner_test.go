package main

import (
	"strings"
	"testing"

	"github.com/secretbroker/secretbroker/upstream/emulator"
)

// TestDevBannerCarriesAccess: the --dev banner's commands carry what a
// call needs when --dev is also given TLS or authentication settings
// (https, the CA, a client certificate, a bearer token, as placeholders
// it names), and nothing when it is not, so that they work as printed.
func TestDevBannerCarriesAccess(t *testing.T) {
	demo := emulator.Demo{Org: "octo-org", Repos: []emulator.DemoRepo{{Name: "hello-world", ID: 1296269, Environments: []string{"prod/eu"}}}}
	const grpcAddr, httpAddr = "127.0.0.1:9090", "127.0.0.1:8080"
	tests := []struct {
		name      string
		access    devAccess
		want, not []string
	}{
		{name: "none", access: devAccess{},
			want: []string{"No credentials needed", "grpcurl -plaintext " + grpcAddr + " list", "curl -s http://" + httpAddr + "/v1/",
				"grpcurl -plaintext -d '", "(reflection on)"},
			not: []string{"SECRETBROKER_TOKEN", "https://", "CA.pem"}},
		{name: "bearer tokens", access: devAccess{bearer: true},
			want: []string{"Credentials needed", "SECRETBROKER_TOKEN, a caller's token",
				`grpcurl -plaintext -H "authorization: Bearer $SECRETBROKER_TOKEN" ` + grpcAddr + " list",
				`curl -s -H "Authorization: Bearer $SECRETBROKER_TOKEN" http://` + httpAddr + "/v1/",
				"(reflection on, with credentials)"},
			not: []string{"No credentials needed", "https://"}},
		{name: "mTLS", access: devAccess{tls: true, clientCert: true},
			want: []string{"Credentials needed", "CA.pem, the CA", "CLIENT.pem and CLIENT-KEY.pem",
				"grpcurl -cacert CA.pem -cert CLIENT.pem -key CLIENT-KEY.pem " + grpcAddr + " list",
				"curl -s --cacert CA.pem --cert CLIENT.pem --key CLIENT-KEY.pem https://" + httpAddr + "/v1/",
				"JSON      https://" + httpAddr},
			not: []string{"-plaintext", "http://" + httpAddr, "No credentials needed", "SECRETBROKER_TOKEN"}},
		{name: "TLS and tokens, open reflection", access: devAccess{tls: true, bearer: true, reflection: true},
			want: []string{`grpcurl -cacert CA.pem -H "authorization: Bearer $SECRETBROKER_TOKEN" ` + grpcAddr + " list",
				`curl -s --cacert CA.pem -H "Authorization: Bearer $SECRETBROKER_TOKEN" https://`, "(reflection on)"},
			not: []string{"-plaintext", "CLIENT.pem"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			if err := writeDevBanner(&b, demo, "http://127.0.0.1:1", grpcAddr, httpAddr, "127.0.0.1:9091", tt.access); err != nil {
				t.Fatal(err)
			}
			banner := b.String()
			for _, w := range tt.want {
				if !strings.Contains(banner, w) {
					t.Errorf("banner lacks %q", w)
				}
			}
			for _, n := range tt.not {
				if strings.Contains(banner, n) {
					t.Errorf("banner holds %q", n)
				}
			}
			// Every command line carries the access flags.
			for line := range strings.Lines(banner) {
				line = strings.TrimSpace(line)
				if strings.HasPrefix(line, "grpcurl ") && !strings.HasPrefix(line, "grpcurl "+tt.access.grpcurlFlags()+" ") {
					t.Errorf("a grpcurl line without the access flags: %s", line)
				}
				if strings.HasPrefix(line, "curl ") && !strings.HasPrefix(line, "curl "+tt.access.curlFlags()+" ") {
					t.Errorf("a curl line without the access flags: %s", line)
				}
			}
			if t.Failed() {
				t.Logf("banner:\n%s", banner)
			}
		})
	}
}
