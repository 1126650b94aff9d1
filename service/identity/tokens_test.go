package identity

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Planted tokens: they must authenticate, and neither they nor their hashes
// may ever show up in an error.
const (
	plantedToken  = "sbt_PLANTED_deployer_token_0123456789"
	plantedToken2 = "sbt_PLANTED_reader_token_9876543210"
)

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// hex64 finds anything that could be a hash value in an error.
var hex64 = regexp.MustCompile(`[0-9A-Fa-f]{64}`)

func TestParseTokens(t *testing.T) {
	h1, h2 := sha256Hex(plantedToken), sha256Hex(plantedToken2)
	long := strings.Repeat("n", maxNameLen)
	tests := []struct {
		name    string
		yaml    string
		wantLen int
		wantErr string // substring; empty means success
	}{
		{name: "one caller", yaml: "callers:\n  - name: deployer\n    token_sha256: " + h1 + "\n", wantLen: 1},
		{name: "two callers", yaml: "callers:\n  - name: deployer\n    token_sha256: " + h1 + "\n  - name: reader@ci.example:42\n    token_sha256: " + h2 + "\n", wantLen: 2},
		{name: "upper-case hash", yaml: "callers:\n  - name: deployer\n    token_sha256: " + strings.ToUpper(h1) + "\n", wantLen: 1},
		{name: "quoted values", yaml: "callers:\n  - name: \"deployer\"\n    token_sha256: '" + h1 + "'\n", wantLen: 1},
		{name: "flow style", yaml: "{callers: [{name: deployer, token_sha256: " + h1 + "}]}", wantLen: 1},
		{name: "digits-only hash", yaml: "callers:\n  - name: d\n    token_sha256: " + strings.Repeat("1", 64) + "\n", wantLen: 1},
		{name: "name of 128 characters", yaml: "callers:\n  - name: " + long + "\n    token_sha256: " + h1 + "\n", wantLen: 1},
		{name: "empty list", yaml: "callers: []\n", wantLen: 0},
		{name: "null list", yaml: "callers:\n", wantLen: 0},

		{name: "empty file", yaml: "", wantErr: "empty document"},
		{name: "comment only", yaml: "# nothing\n", wantErr: "empty document"},
		{name: "two documents", yaml: "callers: []\n---\ncallers: []\n", wantErr: "more than one YAML document"},
		{name: "syntax error", yaml: "callers:\n  - name: \"" + h1 + "\n", wantErr: "callers file: yaml:"},
		{name: "top level sequence", yaml: "- " + h1 + "\n", wantErr: "top level must be a mapping"},
		{name: "missing callers", yaml: "{}\n", wantErr: "missing key callers"},
		{name: "unknown top-level field", yaml: "callers: []\nextra: 1\n", wantErr: `unknown field "extra"`},
		{name: "duplicate callers key", yaml: "callers: []\ncallers: []\n", wantErr: "duplicate field"},
		{name: "callers not a sequence", yaml: "callers: " + h1 + "\n", wantErr: "callers must be a sequence"},
		{name: "entry not a mapping", yaml: "callers:\n  - " + h1 + "\n", wantErr: "callers[0] (line 2): must be a mapping"},
		{name: "unknown entry field", yaml: "callers:\n  - name: d\n    token: " + plantedToken + "\n    token_sha256: " + h1 + "\n", wantErr: `callers[0] (line 2): line 3: unknown field "token"`},
		{name: "hash as a key", yaml: "callers:\n  - name: d\n    " + h1 + ": x\n", wantErr: "callers[0] (line 2): line 3: unknown field"},
		{name: "token as a key", yaml: "callers:\n  - name: d\n    " + plantedToken + ": x\n", wantErr: "unknown field"},
		{name: "missing name", yaml: "callers:\n  - token_sha256: " + h1 + "\n", wantErr: "callers[0] (line 2): missing name"},
		{name: "missing hash", yaml: "callers:\n  - name: d\n", wantErr: "callers[0] (line 2): missing token_sha256"},
		{name: "null name", yaml: "callers:\n  - name:\n    token_sha256: " + h1 + "\n", wantErr: "name must be a string"},
		{name: "hash as a list", yaml: "callers:\n  - name: d\n    token_sha256: [" + h1 + "]\n", wantErr: "token_sha256 must be a string"},
		{name: "binary hash", yaml: "callers:\n  - name: d\n    token_sha256: !!binary " + h1 + "\n", wantErr: "token_sha256 must be a string"},
		{name: "alias", yaml: "callers:\n  - name: &n d\n    token_sha256: " + h1 + "\n  - name: *n\n    token_sha256: " + h2 + "\n", wantErr: "aliases are not allowed"},
		{name: "empty name", yaml: "callers:\n  - name: \"\"\n    token_sha256: " + h1 + "\n", wantErr: "callers[0] (line 2): name must be"},
		{name: "name with a space", yaml: "callers:\n  - name: a b\n    token_sha256: " + h1 + "\n", wantErr: "name must be"},
		{name: "name with a slash", yaml: "callers:\n  - name: a/b\n    token_sha256: " + h1 + "\n", wantErr: "name must be"},
		{name: "name of 129 characters", yaml: "callers:\n  - name: " + long + "x\n    token_sha256: " + h1 + "\n", wantErr: "name must be"},
		{name: "hash of 63 characters", yaml: "callers:\n  - name: d\n    token_sha256: " + h1[:63] + "\n", wantErr: "callers[0] (line 2): token_sha256 must be exactly 64 hex characters"},
		{name: "hash of 65 characters", yaml: "callers:\n  - name: d\n    token_sha256: " + h1 + "0\n", wantErr: "token_sha256 must be exactly 64 hex characters"},
		{name: "non-hex hash", yaml: "callers:\n  - name: d\n    token_sha256: " + h1[:63] + "g\n", wantErr: "token_sha256 must be exactly 64 hex characters"},
		{name: "the token instead of its hash", yaml: "callers:\n  - name: d\n    token_sha256: " + plantedToken + "\n", wantErr: "token_sha256 must be exactly 64 hex characters"},
		{name: "duplicate names", yaml: "callers:\n  - name: d\n    token_sha256: " + h1 + "\n  - name: d\n    token_sha256: " + h2 + "\n", wantErr: "callers[1] (line 4): name duplicates callers[0]"},
		{name: "duplicate hashes", yaml: "callers:\n  - name: a\n    token_sha256: " + h1 + "\n  - name: b\n    token_sha256: " + h1 + "\n", wantErr: "callers[1] (line 4): token_sha256 duplicates callers[0]"},
		{name: "duplicate hashes in different case", yaml: "callers:\n  - name: a\n    token_sha256: " + h1 + "\n  - name: b\n    token_sha256: " + strings.ToUpper(h1) + "\n", wantErr: "token_sha256 duplicates callers[0]"},
		// A YAML parser's message quotes an alias's name: the token
		// written as an alias (a stray "*") or an anchor is not repeated.
		{name: "the token as an unknown alias", yaml: "callers:\n  - name: d\n    token_sha256: *" + plantedToken + "\n", wantErr: "callers file: yaml: unknown anchor"},
		{name: "the token as an unknown alias in flow style", yaml: "{callers: [{name: d, token_sha256: *" + plantedToken + "}]}", wantErr: "unknown anchor"},
		{name: "the token as an anchor that contains itself", yaml: "callers: &" + plantedToken + " [*" + plantedToken + "]\n", wantErr: "must be a mapping"},
		{name: "duplicate field in entry", yaml: "callers:\n  - name: a\n    name: b\n    token_sha256: " + h1 + "\n", wantErr: `line 3: duplicate field "name"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			toks, err := ParseTokens([]byte(tt.yaml))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("ParseTokens: %v", err)
				}
				if toks.Len() != tt.wantLen {
					t.Errorf("Len() = %d, want %d", toks.Len(), tt.wantLen)
				}
				return
			}
			if err == nil {
				t.Fatalf("ParseTokens succeeded, want error containing %q", tt.wantErr)
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.wantErr) {
				t.Errorf("error %q does not contain %q", msg, tt.wantErr)
			}
			assertNoSecret(t, msg)
		})
	}
}

// assertNoSecret fails if msg holds a planted token, a hash of one, or
// anything shaped like a hash.
func assertNoSecret(t *testing.T, msg string) {
	t.Helper()
	for _, s := range []string{plantedToken, plantedToken2, sha256Hex(plantedToken), sha256Hex(plantedToken2), "PLANTED"} {
		if strings.Contains(strings.ToLower(msg), strings.ToLower(s)) {
			t.Errorf("error %q contains planted secret material %q", msg, s)
		}
	}
	if hex64.MatchString(msg) {
		t.Errorf("error %q contains a hash-shaped value", msg)
	}
}

func TestTokensAuthenticate(t *testing.T) {
	yaml := "callers:\n" +
		"  - name: deployer\n    token_sha256: " + sha256Hex(plantedToken) + "\n" +
		"  - name: reader\n    token_sha256: " + strings.ToUpper(sha256Hex(plantedToken2)) + "\n" +
		// An entry for the empty token must still never match it.
		"  - name: nobody\n    token_sha256: " + sha256Hex("") + "\n"
	toks, err := ParseTokens([]byte(yaml))
	if err != nil {
		t.Fatalf("ParseTokens: %v", err)
	}
	tests := []struct {
		name   string
		token  string
		want   string
		wantOK bool
	}{
		{name: "first caller", token: plantedToken, want: "token:deployer", wantOK: true},
		{name: "second caller, upper-case hash in file", token: plantedToken2, want: "token:reader", wantOK: true},
		{name: "wrong token", token: plantedToken + "x", wantOK: false},
		{name: "prefix of a token", token: plantedToken[:10], wantOK: false},
		{name: "the hash instead of the token", token: sha256Hex(plantedToken), wantOK: false},
		{name: "empty token", token: "", wantOK: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := toks.Authenticate(tt.token)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("Authenticate = %q, %v; want %q, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}

	var none *Tokens
	if _, ok := none.Authenticate(plantedToken); ok || none.Len() != 0 {
		t.Error("a nil *Tokens authenticated a token or has callers")
	}
	empty, err := ParseTokens([]byte("callers: []\n"))
	if err != nil {
		t.Fatalf("ParseTokens: %v", err)
	}
	if _, ok := empty.Authenticate(plantedToken); ok {
		t.Error("an empty callers file authenticated a token")
	}
}

func TestLoadTokens(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "callers.yaml")
	if err := os.WriteFile(good, []byte("callers:\n  - name: deployer\n    token_sha256: "+sha256Hex(plantedToken)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("callers:\n  - name: deployer\n    token_sha256: "+plantedToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	toks, err := LoadTokens(good)
	if err != nil {
		t.Fatalf("LoadTokens: %v", err)
	}
	if got, ok := toks.Authenticate(plantedToken); !ok || got != "token:deployer" {
		t.Errorf("Authenticate = %q, %v; want token:deployer, true", got, ok)
	}

	_, err = LoadTokens(bad)
	if err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "callers[0]") {
		t.Errorf("LoadTokens(bad) error = %v, want one naming the file and the entry", err)
	} else {
		assertNoSecret(t, err.Error())
	}

	_, err = LoadTokens(filepath.Join(dir, "missing.yaml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LoadTokens(missing) error = %v, want fs.ErrNotExist", err)
	}

	// The path given is the secret itself, by mistake (a Kubernetes
	// secretKeyRef filling the variable meant for the mounted file's
	// path): a token, or the callers file's text with its hashes. Reading
	// fails, and the error says why without the path.
	for _, path := range []string{plantedToken, "callers:\n  - name: deployer\n    token_sha256: " + sha256Hex(plantedToken) + "\n", dir} {
		_, err = LoadTokens(path)
		if err == nil {
			t.Fatalf("LoadTokens(%.20q...) succeeded", path)
		}
		if !strings.Contains(err.Error(), "read callers file") {
			t.Errorf("LoadTokens(%.20q...) error = %v, want one saying the callers file could not be read", path, err)
		}
		assertNoSecret(t, err.Error())
		if strings.Contains(err.Error(), dir) {
			t.Errorf("LoadTokens(%.20q...) error %q holds the path", path, err)
		}
	}
}

func FuzzParseTokens(f *testing.F) {
	h := sha256Hex(plantedToken)
	for _, seed := range []string{
		"",
		"callers: []\n",
		"callers:\n",
		"callers:\n  - name: deployer\n    token_sha256: " + h + "\n",
		"callers:\n  - name: a\n    token_sha256: " + h + "\n  - name: a\n    token_sha256: " + h + "\n",
		"callers:\n  - name: d\n    " + h + ": x\n",
		"callers:\n  - " + h + "\n",
		"callers:\n  - name: &a d\n    token_sha256: *a\n",
		"callers:\n  - name: d\n    token_sha256: !!binary " + h + "\n",
		"{callers: [{name: d, token_sha256: " + h + "}]}",
		"callers: []\n---\n",
		"callers:\n  - name: \"" + h,
		"\xff\xfe",
		"&a [*a]",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		toks, err := ParseTokens(data)
		if err != nil {
			if toks != nil {
				t.Error("ParseTokens returned both callers and an error")
			}
			if hex64.MatchString(err.Error()) {
				t.Errorf("error %q contains a hash-shaped value", err)
			}
			return
		}
		seen := map[string]bool{}
		for _, e := range toks.entries {
			if len(e.name) == 0 || len(e.name) > maxNameLen || !namePattern.MatchString(e.name) {
				t.Errorf("accepted an invalid name %q", e.name)
			}
			if seen[e.name] {
				t.Errorf("accepted a duplicate name %q", e.name)
			}
			seen[e.name] = true
		}
		if toks.Len() != len(toks.entries) {
			t.Errorf("Len() = %d, want %d", toks.Len(), len(toks.entries))
		}
		if _, ok := toks.Authenticate(""); ok {
			t.Error("the empty token authenticated")
		}
	})
}
