// Package servertls owns the listeners' TLS configuration: the server
// certificate and the client CA pool read from files and read again when
// the files change, so that a rotated certificate or CA needs no restart,
// with files that cannot be used kept out of service and logged once.
package servertls

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/secretbroker/secretbroker/upstream/credential"
)

// tlsCertCheckInterval is how often, at most, a handshake checks the
// certificate, key and client CA files for changes.
const tlsCertCheckInterval = 10 * time.Second

// Config returns the listeners' TLS configuration: the certificate
// from certFile/keyFile, re-read when either file changes (checked at most
// every 10 s on handshake, so a Kubernetes Secret update needs no restart);
// with clientCAFile, client certificates are required and verified against
// it (tls.RequireAndVerifyClientCert), and that file is re-read the same way
// (through GetConfigForClient, which hands each handshake a configuration
// with the current pool). TLS 1.2 minimum. ALPN "h2" and "http/1.1".
//
// New files that cannot be used (unreadable, not PEM, a certificate without
// its key yet) keep the current certificate or pool in service; the logger
// says so at WARN once per change of the files' content, never quoting it.
func Config(logger *slog.Logger, certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	certs, err := newTLSFileReloader(logger, "TLS certificate and key", "the previous certificate stays in service",
		[]tlsFile{{"TLS certificate", certFile}, {"TLS key", keyFile}},
		func(data [][]byte) (*tls.Certificate, error) {
			cert, err := tls.X509KeyPair(data[0], data[1])
			if err != nil {
				// X509KeyPair's errors do not quote the key.
				return nil, fmt.Errorf("TLS certificate %s and key %s: %w", certFile, keyFile, err)
			}
			return &cert, nil
		})
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2", "http/1.1"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return certs.get(), nil
		},
	}
	if clientCAFile == "" {
		return cfg, nil
	}
	cfg.ClientAuth = tls.RequireAndVerifyClientCert
	// A handshake runs with a clone of cfg as it is here (settings,
	// GetCertificate) holding the current pool. NextProtos already holds
	// what net/http adds to its clone of cfg, and gRPC applies its defaults
	// to the config GetConfigForClient returns as to cfg. The returned
	// config sets no session ticket keys, so the listener's are used, and
	// crypto/tls checks a resumed session's chain against its pool: a CA
	// removed from the file cannot come back through resumption.
	template := cfg.Clone()
	cas, err := newTLSFileReloader(logger, "TLS client CA file", "the previous client CAs stay in use",
		[]tlsFile{{"client CA file", clientCAFile}},
		func(data [][]byte) (*tls.Config, error) {
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(data[0]) {
				return nil, fmt.Errorf("client CA file %s: no PEM certificate", clientCAFile)
			}
			c := template.Clone()
			c.ClientCAs = pool
			return c, nil
		})
	if err != nil {
		return nil, err
	}
	// cfg's own pool is the one read at start; handshakes use the one
	// GetConfigForClient returns.
	cfg.ClientCAs = cas.get().ClientCAs
	cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		return cas.get(), nil
	}
	return cfg, nil
}

// tlsFile is one file of a tlsFileReloader: what it is (for errors) and its
// path.
type tlsFile struct {
	what, path string
}

// tlsFileReloader serves what parse makes of a set of files, reading them
// again when their content changed, checked at most every
// tlsCertCheckInterval. Content that fails to read or parse (for example a
// certificate already replaced while its key is not yet) keeps the current
// value in service until the next check, and is logged at WARN once per
// change.
type tlsFileReloader[T any] struct {
	logger      *slog.Logger
	what, keeps string // for the log: what the files are, what stays in use
	files       []tlsFile
	parse       func(data [][]byte) (T, error) // data in the order of files

	mu      sync.Mutex
	current T
	digest  [sha256.Size]byte // of the files current came from
	checked time.Time
	failed  bool              // the last check found content that cannot be used
	refused [sha256.Size]byte // with failed: that content's digest, or its read error's
}

// newTLSFileReloader loads the files once; it fails if it cannot.
func newTLSFileReloader[T any](logger *slog.Logger, what, keeps string, files []tlsFile, parse func([][]byte) (T, error)) (*tlsFileReloader[T], error) {
	r := &tlsFileReloader[T]{logger: logger, what: what, keeps: keeps, files: files, parse: parse}
	data, digest, err := r.read()
	if err != nil {
		return nil, err
	}
	if r.current, err = parse(data); err != nil {
		return nil, err
	}
	r.digest, r.checked = digest, time.Now()
	return r, nil
}

// read returns the files' content and its digest (each file's length, then
// its content).
func (r *tlsFileReloader[T]) read() ([][]byte, [sha256.Size]byte, error) {
	var digest [sha256.Size]byte
	data := make([][]byte, len(r.files))
	h := sha256.New()
	for i, f := range r.files {
		b, err := os.ReadFile(f.path)
		if err != nil {
			return nil, digest, fmt.Errorf("%s: %w", f.what, credential.WithoutPath(err))
		}
		data[i] = b
		h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(b))))
		h.Write(b)
	}
	h.Sum(digest[:0])
	return data, digest, nil
}

// paths returns the files' paths, for the log.
func (r *tlsFileReloader[T]) paths() []string {
	paths := make([]string, len(r.files))
	for i, f := range r.files {
		paths[i] = f.path
	}
	return paths
}

// get returns the current value, first reloaded if the last check is at
// least tlsCertCheckInterval old and the files changed since the current
// value was loaded.
func (r *tlsFileReloader[T]) get() T {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if now.Sub(r.checked) < tlsCertCheckInterval {
		return r.current
	}
	r.checked = now
	data, digest, err := r.read()
	if err == nil && digest == r.digest {
		r.failed = false // back to the content in service
		return r.current
	}
	var v T
	if err == nil {
		if v, err = r.parse(data); err == nil {
			r.current, r.digest, r.failed = v, digest, false
			r.logger.Info(r.what+" reloaded", slog.Any("files", r.paths()))
			return r.current
		}
	} else {
		// A read error names the file by its role (withoutPath), never
		// its content.
		digest = sha256.Sum256([]byte(err.Error()))
	}
	if r.failed && digest == r.refused {
		return r.current // logged already
	}
	r.failed, r.refused = true, digest
	r.logger.Warn(r.what+" changed but cannot be used; "+r.keeps,
		slog.Any("files", r.paths()), slog.Any("error", err))
	return r.current
}
