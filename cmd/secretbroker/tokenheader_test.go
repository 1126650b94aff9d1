package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

// A token an Authorization header cannot carry (a NUL, another control
// character, DEL) is refused at start, naming its source and never the
// token: net/http would refuse every request with "invalid header field
// value", and the broker would retry its credential check for ever
// without becoming ready.
func TestLoadConfigTokenHeaderCannotCarry(t *testing.T) {
	head, tail := testToken[:12], testToken[12:]
	for _, c := range []struct {
		name string
		b    string
	}{
		{"NUL", "\x00"},
		{"SOH", "\x01"},
		{"ESC", "\x1b"},
		{"vertical tab", "\v"},
		{"form feed", "\f"},
		{"DEL", "\x7f"},
	} {
		tok := head + c.b + tail
		t.Run("GITHUB_TOKEN with "+c.name, func(t *testing.T) {
			wantConfigError(t, []string{"--allow-unauthenticated"}, map[string]string{"GITHUB_TOKEN": tok + "\n"},
				[]string{"GITHUB_TOKEN holds a control character"}, head, tail, c.b)
		})
		t.Run("token file with "+c.name, func(t *testing.T) {
			f := writeTokenFile(t, tok+"\n")
			wantConfigError(t, []string{"--allow-unauthenticated", "--upstream-token-file=" + f}, nil,
				[]string{"--upstream-token-file " + f + " holds a control character"}, head, tail, c.b)
		})
	}
}

// --dev does not use GITHUB_TOKEN: a shell's stray one that a header
// cannot carry does not stop it.
func TestLoadConfigDevIgnoresTokenHeaderCannotCarry(t *testing.T) {
	if _, err := loadConfig([]string{"--dev"}, envMap(map[string]string{"GITHUB_TOKEN": "ghp_a\x00b"}), io.Discard); err != nil {
		t.Fatalf("loadConfig: %v", err)
	}
}

// loadConfig accepts a one-word token exactly when net/http sends it as
// "Authorization: Bearer <token>": the rule is net/http's own, byte for
// byte, not a list of its own.
func TestLoadConfigTokenMatchesNetHTTP(t *testing.T) {
	errDial := errors.New("no network in this test")
	tr := &http.Transport{DialContext: func(context.Context, string, string) (net.Conn, error) { return nil, errDial }}
	defer tr.CloseIdleConnections()
	for b := range 256 {
		if strings.ContainsRune(" \t\r\n", rune(b)) {
			continue // "more than one word" (TestLoadConfigErrors)
		}
		tok := "ghp_a" + string([]byte{byte(b)}) + "b"
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://127.0.0.1:1/", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		_, err = tr.RoundTrip(req)
		sends := errors.Is(err, errDial)
		if !sends && !strings.Contains(fmt.Sprint(err), "invalid header field value") {
			t.Fatalf("byte %#x: round trip: %v", b, err)
		}
		_, err = loadConfig([]string{"--allow-unauthenticated"}, envMap(map[string]string{"GITHUB_TOKEN": tok}), io.Discard)
		if accepts := err == nil; accepts != sends {
			t.Errorf("byte %#x: loadConfig accepts %t (%v), net/http sends %t", b, accepts, err, sends)
		}
	}
}
