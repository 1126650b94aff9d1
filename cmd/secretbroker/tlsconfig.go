package main

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"sync"
	"time"
)

// tlsCertCheckInterval is how often, at most, a handshake checks the
// certificate and key files for changes.
const tlsCertCheckInterval = 10 * time.Second

// serverTLSConfig returns the listeners' TLS configuration: the certificate
// from certFile/keyFile, re-read when either file changes (checked at most
// every 10 s on handshake, so a Kubernetes Secret update needs no restart);
// with clientCAFile, client certificates are required and verified against
// it (tls.RequireAndVerifyClientCert). TLS 1.2 minimum. ALPN "h2" and
// "http/1.1".
func serverTLSConfig(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	r, err := newTLSCertReloader(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"h2", "http/1.1"},
		GetCertificate: r.getCertificate,
	}
	if clientCAFile != "" {
		data, err := os.ReadFile(clientCAFile)
		if err != nil {
			return nil, fmt.Errorf("client CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(data) {
			return nil, fmt.Errorf("client CA file %s: no PEM certificate", clientCAFile)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// tlsCertReloader serves a certificate and key pair from two files,
// loading them again when their content changed. A pair that fails to load
// (for example a certificate already replaced while its key is not yet)
// keeps the current one in service until the next check.
type tlsCertReloader struct {
	certFile, keyFile string

	mu      sync.Mutex
	cert    *tls.Certificate
	digest  [sha256.Size]byte // of the files cert came from
	checked time.Time
}

// newTLSCertReloader loads the pair once; it fails if it cannot.
func newTLSCertReloader(certFile, keyFile string) (*tlsCertReloader, error) {
	r := &tlsCertReloader{certFile: certFile, keyFile: keyFile}
	cert, digest, err := r.load(nil)
	if err != nil {
		return nil, err
	}
	r.cert, r.digest, r.checked = cert, digest, time.Now()
	return r, nil
}

// load reads the pair and returns it with the digest of both files'
// content; if the digest equals unchanged, it returns a nil certificate
// without parsing.
func (r *tlsCertReloader) load(unchanged *[sha256.Size]byte) (*tls.Certificate, [sha256.Size]byte, error) {
	var digest [sha256.Size]byte
	certPEM, err := os.ReadFile(r.certFile)
	if err != nil {
		return nil, digest, fmt.Errorf("TLS certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(r.keyFile)
	if err != nil {
		return nil, digest, fmt.Errorf("TLS key: %w", err)
	}
	h := sha256.New()
	h.Write(certPEM)
	h.Write([]byte{0})
	h.Write(keyPEM)
	h.Sum(digest[:0])
	if unchanged != nil && digest == *unchanged {
		return nil, digest, nil
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// X509KeyPair's errors do not quote the key.
		return nil, digest, fmt.Errorf("TLS certificate %s and key %s: %w", r.certFile, r.keyFile, err)
	}
	return &cert, digest, nil
}

// getCertificate is tls.Config.GetCertificate: the current pair, first
// reloaded if the last check is at least tlsCertCheckInterval old and the
// files changed since the current pair was loaded.
func (r *tlsCertReloader) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if now.Sub(r.checked) < tlsCertCheckInterval {
		return r.cert, nil
	}
	r.checked = now
	if cert, digest, err := r.load(&r.digest); err == nil && cert != nil {
		r.cert, r.digest = cert, digest
	}
	return r.cert, nil
}
