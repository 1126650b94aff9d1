package identitytest_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"os"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/secretbroker/secretbroker/service/identity/identitytest"
)

func TestCACertificates(t *testing.T) {
	ca := identitytest.NewCA(t)
	pool := x509.NewCertPool()
	caPEM, err := os.ReadFile(ca.WriteCertFile(t))
	if err != nil {
		t.Fatal(err)
	}
	if string(caPEM) != string(ca.CertPEM()) {
		t.Fatal("WriteCertFile wrote something other than CertPEM")
	}
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("CA PEM holds no certificate")
	}
	other := identitytest.NewCA(t)

	t.Run("server", func(t *testing.T) {
		tests := []struct {
			name    string
			hosts   []string
			verify  string
			pool    *x509.CertPool
			wantErr bool
		}{
			{name: "default localhost", verify: "localhost", pool: pool},
			{name: "default IPv4 loopback", verify: "127.0.0.1", pool: pool},
			{name: "default IPv6 loopback", verify: "::1", pool: pool},
			{name: "named host", hosts: []string{"broker.example", "10.0.0.7"}, verify: "broker.example", pool: pool},
			{name: "named IP", hosts: []string{"broker.example", "10.0.0.7"}, verify: "10.0.0.7", pool: pool},
			{name: "host not in the certificate", hosts: []string{"broker.example"}, verify: "localhost", pool: pool, wantErr: true},
			{name: "another CA", verify: "localhost", pool: x509.NewCertPool(), wantErr: true},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				certFile, keyFile := ca.ServerCert(t, tt.hosts...)
				pair, err := tls.LoadX509KeyPair(certFile, keyFile)
				if err != nil {
					t.Fatalf("LoadX509KeyPair: %v", err)
				}
				_, err = pair.Leaf.Verify(x509.VerifyOptions{DNSName: tt.verify, Roots: tt.pool})
				if (err != nil) != tt.wantErr {
					t.Errorf("Verify: %v, want error %v", err, tt.wantErr)
				}
			})
		}
	})

	t.Run("client", func(t *testing.T) {
		tests := []struct {
			name         string
			uri, dns, cn string
			wantURIs     int
			wantDNS      int
			wantCN       string
		}{
			{name: "all", uri: "spiffe://example.org/ns/ci/sa/deployer", dns: "deployer.example", cn: "deployer", wantURIs: 1, wantDNS: 1, wantCN: "deployer"},
			{name: "cn only", cn: "deployer", wantCN: "deployer"},
			{name: "none"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				c := ca.ClientCert(t, tt.uri, tt.dns, tt.cn)
				if c.Leaf == nil {
					t.Fatal("Leaf not set")
				}
				if len(c.Leaf.URIs) != tt.wantURIs || len(c.Leaf.DNSNames) != tt.wantDNS || c.Leaf.Subject.CommonName != tt.wantCN {
					t.Errorf("SANs %v %v CN %q; want %d URIs, %d DNS names, CN %q", c.Leaf.URIs, c.Leaf.DNSNames, c.Leaf.Subject.CommonName, tt.wantURIs, tt.wantDNS, tt.wantCN)
				}
				if tt.uri != "" && c.Leaf.URIs[0].String() != tt.uri {
					t.Errorf("URI SAN %s, want %s", c.Leaf.URIs[0], tt.uri)
				}
				opts := x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
				if _, err := c.Leaf.Verify(opts); err != nil {
					t.Errorf("client certificate does not verify against its CA: %v", err)
				}
				otherPool := x509.NewCertPool()
				otherPool.AppendCertsFromPEM(other.CertPEM())
				opts.Roots = otherPool
				if _, err := c.Leaf.Verify(opts); err == nil {
					t.Error("client certificate verifies against another CA")
				}
			})
		}
	})
}

func TestIssuer(t *testing.T) {
	iss := identitytest.NewIssuer(t, "key-1")
	var set jose.JSONWebKeySet
	data, err := os.ReadFile(iss.WriteJWKSFile(t))
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != string(iss.JWKS()) {
		t.Fatal("WriteJWKSFile wrote something other than JWKS")
	}
	if err := json.Unmarshal(data, &set); err != nil {
		t.Fatalf("JWKS: %v", err)
	}
	keys := set.Key("key-1")
	if len(keys) != 1 || !keys[0].IsPublic() || keys[0].Algorithm != "RS256" || keys[0].Use != "sig" {
		t.Fatalf("JWKS keys %+v, want one public RS256 signing key with kid key-1", set.Keys)
	}

	token := iss.Token(t, map[string]any{"sub": "deployer", "aud": "secretbroker", "exp": 2_000_000_000})
	parsed, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		t.Fatalf("ParseSigned: %v", err)
	}
	if h := parsed.Headers[0]; h.KeyID != "key-1" || h.Algorithm != "RS256" {
		t.Errorf("header kid %q alg %q, want key-1 RS256", h.KeyID, h.Algorithm)
	}
	var claims jwt.Claims
	if err := parsed.Claims(keys[0].Key, &claims); err != nil {
		t.Fatalf("token does not verify with the JWKS key: %v", err)
	}
	if claims.Subject != "deployer" || !claims.Audience.Contains("secretbroker") || claims.Expiry.Time().Unix() != 2_000_000_000 {
		t.Errorf("claims %+v", claims)
	}

	other := identitytest.NewIssuer(t, "key-1")
	if err := parsed.Claims(mustKey(t, other.JWKS()), &claims); err == nil {
		t.Error("token verifies with another issuer's key")
	}
}

func mustKey(t *testing.T, jwks []byte) any {
	t.Helper()
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(jwks, &set); err != nil || len(set.Keys) != 1 {
		t.Fatalf("JWKS: %v", err)
	}
	return set.Keys[0].Key
}
