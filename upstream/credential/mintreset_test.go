package credential_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/secretbroker/secretbroker/upstream/credential"
)

// TestMintStreamResetIsTransient: a token mint whose HTTP/2 stream
// GitHub's front end resets is transient, so it is not remembered for
// mintRetry (5 s): the next call mints again instead of failing with the
// same error.
func TestMintStreamResetIsTransient(t *testing.T) {
	var n atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			panic(http.ErrAbortHandler) // RST_STREAM INTERNAL_ERROR
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(map[string]any{"token": "ghs_streamreset", "expires_at": time.Now().Add(time.Hour).UTC().Format(time.RFC3339)})
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tr := srv.Client().Transport.(*http.Transport).Clone()
	tr.ForceAttemptHTTP2 = true
	app, err := credential.NewApp(credential.AppConfig{AppID: 1, PrivateKey: key, InstallationID: 7, BaseURL: srv.URL, Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	cred, _ := app.For(context.Background(), "o", "")
	_, err1 := cred.Token(context.Background())
	if err1 == nil || !credential.Transient(err1) {
		t.Fatalf("first mint: %v, want a transient failure", err1)
	}
	if _, err2 := cred.Token(context.Background()); err2 != nil || n.Load() != 2 {
		t.Errorf("the call after a reset mint: %v after %d mints; want a token from a second mint", err2, n.Load())
	}
}
