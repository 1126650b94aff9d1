// Package identitytest makes test credentials: a CA, server and client
// certificates, a JWKS and signed JWTs. It is for tests only; every helper
// fails the test (t.Fatal) instead of returning an error.
package identitytest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// validity is how long the certificates are valid, from an hour ago.
const validity = 24 * time.Hour

// CA is an ECDSA P-256 self-signed certificate authority.
type CA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	der  []byte
}

// NewCA returns a new CA.
func NewCA(t testing.TB) *CA {
	t.Helper()
	key := newECKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: "identitytest CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatalf("identitytest: create CA certificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("identitytest: parse CA certificate: %v", err)
	}
	return &CA{cert: cert, key: key, der: der}
}

// CertPEM returns the CA certificate in PEM.
func (ca *CA) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.der})
}

// WriteCertFile writes the CA certificate (PEM) to a file in t.TempDir()
// and returns its path.
func (ca *CA) WriteCertFile(t testing.TB) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ca.crt")
	writeFile(t, path, ca.CertPEM())
	return path
}

// ServerCert issues a server certificate for hosts (IP addresses become IP
// SANs, anything else DNS SANs; by default 127.0.0.1, ::1 and localhost),
// writes it and its key (PEM) to files in t.TempDir() and returns their
// paths.
func (ca *CA) ServerCert(t testing.TB, hosts ...string) (certFile, keyFile string) {
	t.Helper()
	if len(hosts) == 0 {
		hosts = []string{"127.0.0.1", "::1", "localhost"}
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: hosts[0]},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, key := ca.issue(t, tmpl)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatalf("identitytest: marshal server key: %v", err)
	}
	dir := t.TempDir()
	certFile = filepath.Join(dir, "tls.crt")
	keyFile = filepath.Join(dir, "tls.key")
	writeFile(t, certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	writeFile(t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	return certFile, keyFile
}

// ClientCert issues a client certificate with the URI SAN uri, the DNS SAN
// dns and the subject common name cn; empty ones are left out. The result
// has its Leaf set.
func (ca *CA) ClientCert(t testing.TB, uri, dns, cn string) tls.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if uri != "" {
		u, err := url.Parse(uri)
		if err != nil {
			t.Fatalf("identitytest: client certificate URI: %v", err)
		}
		tmpl.URIs = []*url.URL{u}
	}
	if dns != "" {
		tmpl.DNSNames = []string{dns}
	}
	der, key := ca.issue(t, tmpl)
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("identitytest: parse client certificate: %v", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// issue signs tmpl (completed with a serial, validity and key usage) for a
// new P-256 key and returns the certificate's DER and the key.
func (ca *CA) issue(t testing.TB, tmpl *x509.Certificate) ([]byte, *ecdsa.PrivateKey) {
	t.Helper()
	key := newECKey(t)
	tmpl.SerialNumber = serial(t)
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(validity)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatalf("identitytest: issue certificate: %v", err)
	}
	return der, key
}

// Issuer is a JWT issuer: an RSA 2048 signing key with a kid.
type Issuer struct {
	kid string
	key *rsa.PrivateKey
}

// NewIssuer returns an issuer whose key has the id kid.
func NewIssuer(t testing.TB, kid string) *Issuer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatalf("identitytest: generate RSA key: %v", err)
	}
	return &Issuer{kid: kid, key: key}
}

// JWKS returns the issuer's public key as a JWKS document:
// {"keys":[{"kty":"RSA","kid":...,"use":"sig","alg":"RS256",...}]}.
func (i *Issuer) JWKS() []byte {
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{
		Key:       i.key.Public(),
		KeyID:     i.kid,
		Algorithm: string(jose.RS256),
		Use:       "sig",
	}}}
	data, err := json.Marshal(set)
	if err != nil {
		// A valid RSA public key always marshals.
		panic("identitytest: marshal JWKS: " + err.Error())
	}
	return data
}

// WriteJWKSFile writes JWKS() to a file in t.TempDir() and returns its path.
func (i *Issuer) WriteJWKSFile(t testing.TB) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "jwks.json")
	writeFile(t, path, i.JWKS())
	return path
}

// Token returns a compact JWT with claims, signed RS256 with the kid in its
// header. Claims are used as given (for example "exp" as a Unix time).
func (i *Issuer) Token(t testing.TB, claims map[string]any) string {
	t.Helper()
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.RS256, Key: i.key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader(jose.HeaderKey("kid"), i.kid),
	)
	if err != nil {
		t.Fatalf("identitytest: signer: %v", err)
	}
	token, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		t.Fatalf("identitytest: sign token: %v", err)
	}
	return token
}

func newECKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("identitytest: generate EC key: %v", err)
	}
	return key
}

func serial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		t.Fatalf("identitytest: serial: %v", err)
	}
	return n
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatalf("identitytest: %v", err)
	}
}
