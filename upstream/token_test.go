package upstream

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestTokenRedacted(t *testing.T) {
	const secret = "ghp_SHOULDnotAPPEAR0123456789"
	tok := Token(secret)
	cfg := Config{BaseURL: "https://ghe.example/api/v3", Token: tok}

	var logs bytes.Buffer
	for _, h := range []slog.Handler{slog.NewTextHandler(&logs, nil), slog.NewJSONHandler(&logs, nil)} {
		slog.New(h).Info("config", "token", tok, "cfg", cfg.Token, "any", any(tok))
	}
	js, err := json.Marshal(struct{ T Token }{tok})
	if err != nil {
		t.Fatal(err)
	}
	for name, got := range map[string]string{
		"%s":   fmt.Sprintf("<%s>", tok),
		"%v":   fmt.Sprintf("%v", tok),
		"%#v":  fmt.Sprintf("%#v", tok),
		"%q":   fmt.Sprintf("%q", tok),
		"%x":   fmt.Sprintf("%x", tok),
		"%+v":  fmt.Sprintf("%+v", cfg),
		"%#vc": fmt.Sprintf("%#v", cfg),
		"slog": logs.String(),
		"json": string(js),
	} {
		if strings.Contains(got, secret) {
			t.Errorf("%s shows the token: %s", name, got)
		}
		if name != "%x" && !strings.Contains(got, "[redacted]") {
			t.Errorf("%s does not say [redacted]: %s", name, got)
		}
	}
	if string(tok) != secret {
		t.Error("string(tok) lost the value")
	}
}
