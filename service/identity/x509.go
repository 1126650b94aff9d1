package identity

import (
	"crypto/x509"
	"strings"
)

// CertificateCaller returns "x509:" and the identity that a (verified)
// client certificate names: its first URI SAN (for example a SPIFFE ID such
// as spiffe://example.org/ns/ci/sa/deployer), else its first DNS SAN, else
// its subject common name. A DNS SAN or common name holding a ':' is not
// taken: it could pose as a URI SAN (a CN reading spiffe://...) and name
// the caller a policy grants to that workload. ok is false when it names
// none of them. It does not verify cert; the TLS handshake has done that.
func CertificateCaller(cert *x509.Certificate) (caller string, ok bool) {
	if cert == nil {
		return "", false
	}
	for _, u := range cert.URIs {
		if u != nil {
			if s := u.String(); s != "" {
				return prefixX509 + s, true
			}
		}
	}
	for _, d := range cert.DNSNames {
		if d != "" && !strings.Contains(d, ":") {
			return prefixX509 + d, true
		}
	}
	if cn := cert.Subject.CommonName; cn != "" && !strings.Contains(cn, ":") {
		return prefixX509 + cn, true
	}
	return "", false
}
