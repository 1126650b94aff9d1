package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/secretbroker/secretbroker/cmd/secretbroker/internal/servertls"
	"github.com/secretbroker/secretbroker/service/identity/identitytest"
)

// TestKeyFilesNotKeysNeverShown: the GitHub App's private key file and the
// TLS key file hold something other than the key wanted (an EC key in
// PKCS#8 or SEC 1, a key under a passphrase, a key cut short, a
// certificate, the key's PEM with its base64 cut). Start fails, naming
// the file, and the error holds no line of what the file holds.
func TestKeyFilesNotKeysNeverShown(t *testing.T) {
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	sec1, err := x509.MarshalECPrivateKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	_, _, rsaPEM := writeAppKey(t)
	rsaDER, _ := pem.Decode(rsaPEM)
	ca := identitytest.NewCA(t)
	certFile, _ := ca.ServerCert(t)
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	// A key under a passphrase: what the DER holds is ciphertext.
	encrypted := make([]byte, 1200)
	if _, err := rand.Read(encrypted); err != nil {
		t.Fatal(err)
	}
	files := []struct {
		name string
		data []byte
	}{
		{"EC key, PKCS#8", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})},
		{"EC key, SEC 1", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})},
		{"RSA key under a passphrase, PKCS#8", pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: encrypted})},
		{"RSA key under a passphrase, PKCS#1", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY",
			Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-256-CBC,00112233445566778899AABBCCDDEEFF"}, Bytes: encrypted})},
		{"RSA key cut short", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: rsaDER.Bytes[:len(rsaDER.Bytes)/2]})},
		{"RSA key's PEM cut short", rsaPEM[:len(rsaPEM)/2]},
		{"a certificate", certPEM},
	}
	for _, f := range files {
		path := filepath.Join(t.TempDir(), "key.pem")
		if err := os.WriteFile(path, f.data, 0o600); err != nil {
			t.Fatal(err)
		}
		for _, use := range []struct {
			name string
			err  func() error
			want string
		}{
			{"GitHub App", func() error {
				cfg := Config{GitHubApp: GitHubAppConfig{ID: 12, PrivateKeyFile: path}}
				_, err := upstreamCredentials(cfg, "http://127.0.0.1:1", nil)
				return err
			}, "private key file " + path},
			{"TLS", func() error {
				_, err := servertls.Config(slog.New(slog.DiscardHandler), certFile, path, "")
				return err
			}, "key " + path},
		} {
			t.Run(use.name+"/"+f.name, func(t *testing.T) {
				err := use.err()
				if err == nil {
					t.Fatal("no error")
				}
				if !strings.Contains(err.Error(), use.want) {
					t.Errorf("error %q does not name the file (%q)", err, use.want)
				}
				for line := range strings.Lines(string(f.data)) {
					line = strings.TrimSpace(line)
					if len(line) >= 16 && !strings.HasPrefix(line, "-----") && strings.Contains(err.Error(), line) {
						t.Errorf("error %q holds a line of the file: %q", err, line)
					}
				}
			})
		}
	}
}
