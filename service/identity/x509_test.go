package identity_test

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"net/url"
	"testing"

	"github.com/secretbroker/secretbroker/service/identity"
	"github.com/secretbroker/secretbroker/service/identity/identitytest"
)

func TestCertificateCaller(t *testing.T) {
	ca := identitytest.NewCA(t)
	const spiffe = "spiffe://example.org/ns/ci/sa/deployer"
	tests := []struct {
		name   string
		cert   *x509.Certificate
		want   string
		wantOK bool
	}{
		{name: "URI, DNS and CN: URI wins", cert: ca.ClientCert(t, spiffe, "deployer.ci.example", "deployer").Leaf, want: "x509:" + spiffe, wantOK: true},
		{name: "URI only", cert: ca.ClientCert(t, spiffe, "", "").Leaf, want: "x509:" + spiffe, wantOK: true},
		{name: "DNS and CN: DNS wins", cert: ca.ClientCert(t, "", "deployer.ci.example", "deployer").Leaf, want: "x509:deployer.ci.example", wantOK: true},
		{name: "CN only", cert: ca.ClientCert(t, "", "", "deployer").Leaf, want: "x509:deployer", wantOK: true},
		{name: "none", cert: ca.ClientCert(t, "", "", "").Leaf},
		{name: "nil", cert: nil},
		{
			name: "first of several URIs",
			cert: &x509.Certificate{URIs: []*url.URL{
				{Scheme: "spiffe", Host: "example.org", Path: "/a"},
				{Scheme: "spiffe", Host: "example.org", Path: "/b"},
			}},
			want: "x509:spiffe://example.org/a", wantOK: true,
		},
		{name: "first of several DNS names", cert: &x509.Certificate{DNSNames: []string{"a.example", "b.example"}}, want: "x509:a.example", wantOK: true},
		// A CN or DNS name spelling a URI cannot pose as that URI SAN.
		{name: "CN spelling a URI", cert: &x509.Certificate{Subject: pkix.Name{CommonName: spiffe}}},
		{name: "DNS name spelling a URI", cert: &x509.Certificate{DNSNames: []string{spiffe}}},
		{name: "DNS name spelling a URI, then CN", cert: &x509.Certificate{DNSNames: []string{spiffe}, Subject: pkix.Name{CommonName: "deployer"}},
			want: "x509:deployer", wantOK: true},
		{name: "organization is not an identity", cert: &x509.Certificate{Subject: pkix.Name{Organization: []string{"acme"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := identity.CertificateCaller(tt.cert)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("CertificateCaller = %q, %v; want %q, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}
