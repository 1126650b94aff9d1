package identity

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"

	"go.yaml.in/yaml/v3"

	"github.com/secretbroker/secretbroker/upstream/credential"
)

// maxNameLen bounds a caller name in the callers file.
const maxNameLen = 128

// Tokens holds the static bearer-token callers from a callers file: each
// caller's name and the SHA-256 of its token. The tokens themselves are
// never stored. A Tokens is immutable and safe for concurrent use.
//
// The callers file is YAML:
//
//	callers:
//	  - name: deployer
//	    token_sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
type Tokens struct {
	entries []tokenEntry
}

type tokenEntry struct {
	name string
	hash [sha256.Size]byte
}

var (
	// namePattern is a caller name's alphabet; length is checked separately.
	namePattern = regexp.MustCompile(`^[A-Za-z0-9._:@-]+$`)
	// fieldPattern is a mapping key that may be quoted in an error: short
	// and without digits, so never a hash or a token.
	fieldPattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z_-]{0,39}$`)
	// hexRun finds long hexadecimal runs in a YAML parser's message, which
	// could be a hash value; they are redacted.
	hexRun = regexp.MustCompile(`[0-9A-Fa-f]{16,}`)
	// yamlAnchor finds the alias name the YAML parser quotes ("unknown
	// anchor 'NAME' referenced", "anchor 'NAME' value contains itself"),
	// the only text of the file its syntax errors repeat.
	yamlAnchor = regexp.MustCompile(`anchor '[^']*'`)
)

// LoadTokens reads and parses the callers file at path (see ParseTokens).
func LoadTokens(path string) (*Tokens, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read callers file: %w", credential.WithoutPath(err))
	}
	t, err := ParseTokens(data)
	if err != nil {
		return nil, fmt.Errorf("callers file %s: %w", path, err)
	}
	return t, nil
}

// ParseTokens parses a callers file. It is strict: one YAML document, a
// top-level mapping with exactly the key "callers" (a sequence, possibly
// empty), each entry a mapping with exactly "name" and "token_sha256".
// Names are 1 to 128 characters of [A-Za-z0-9._:@-] and unique; a
// token_sha256 is 64 hex digits (either case) and unique. Errors name the
// entry by index and line, never a hash value.
func ParseTokens(data []byte) (*Tokens, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("callers file: empty document")
		}
		return nil, fmt.Errorf("callers file: %s", redactYAMLError(err))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("callers file: more than one YAML document")
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, errors.New("callers file: empty document")
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("callers file: line %d: top level must be a mapping with key callers", root.Line)
	}
	var list *yaml.Node
	if err := eachField(root, "callers file", func(_ string, value *yaml.Node) error {
		list = value
		return nil
	}, "callers"); err != nil {
		return nil, err
	}
	if list == nil {
		return nil, errors.New("callers file: missing key callers")
	}
	switch {
	case list.Kind == yaml.ScalarNode && list.Tag == "!!null":
		return &Tokens{}, nil
	case list.Kind != yaml.SequenceNode:
		return nil, fmt.Errorf("callers file: line %d: callers must be a sequence", list.Line)
	}

	t := &Tokens{entries: make([]tokenEntry, 0, len(list.Content))}
	names := make(map[string]int, len(list.Content))
	hashes := make(map[[sha256.Size]byte]int, len(list.Content))
	for i, item := range list.Content {
		where := fmt.Sprintf("callers[%d] (line %d)", i, item.Line)
		if item.Kind != yaml.MappingNode {
			return nil, fmt.Errorf("%s: must be a mapping with name and token_sha256", where)
		}
		var name, sum string
		var haveName, haveSum bool
		err := eachField(item, where, func(key string, value *yaml.Node) error {
			s, ok := scalarString(value)
			switch key {
			case "name":
				if !ok {
					return fmt.Errorf("%s: name must be a string", where)
				}
				name, haveName = s, true
			case "token_sha256":
				if !ok {
					return fmt.Errorf("%s: token_sha256 must be a string", where)
				}
				sum, haveSum = s, true
			}
			return nil
		}, "name", "token_sha256")
		if err != nil {
			return nil, err
		}
		if !haveName {
			return nil, fmt.Errorf("%s: missing name", where)
		}
		if !haveSum {
			return nil, fmt.Errorf("%s: missing token_sha256", where)
		}
		if len(name) == 0 || len(name) > maxNameLen || !namePattern.MatchString(name) {
			return nil, fmt.Errorf("%s: name must be 1 to %d characters of [A-Za-z0-9._:@-]", where, maxNameLen)
		}
		var e tokenEntry
		e.name = name
		if len(sum) != hex.EncodedLen(sha256.Size) {
			return nil, fmt.Errorf("%s: token_sha256 must be exactly 64 hex characters", where)
		}
		if _, err := hex.Decode(e.hash[:], []byte(sum)); err != nil {
			// hex's error quotes the offending byte; it is not passed on.
			return nil, fmt.Errorf("%s: token_sha256 must be exactly 64 hex characters", where)
		}
		if j, dup := names[name]; dup {
			return nil, fmt.Errorf("%s: name duplicates callers[%d]", where, j)
		}
		if j, dup := hashes[e.hash]; dup {
			return nil, fmt.Errorf("%s: token_sha256 duplicates callers[%d]", where, j)
		}
		names[name] = i
		hashes[e.hash] = i
		t.entries = append(t.entries, e)
	}
	return t, nil
}

// eachField calls fn for each key of mapping m, after checking that every
// key is a plain scalar among allowed and appears once. Errors quote a key
// only when it cannot be a hash or a token.
func eachField(m *yaml.Node, where string, fn func(key string, value *yaml.Node) error, allowed ...string) error {
	seen := make(map[string]bool, len(allowed))
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		key, ok := scalarString(k)
		known := false
		for _, a := range allowed {
			known = known || (ok && key == a)
		}
		if !known {
			if ok && fieldPattern.MatchString(key) {
				return fmt.Errorf("%s: line %d: unknown field %q", where, k.Line, key)
			}
			return fmt.Errorf("%s: line %d: unknown field", where, k.Line)
		}
		if seen[key] {
			return fmt.Errorf("%s: line %d: duplicate field %q", where, k.Line, key)
		}
		seen[key] = true
		if v.Kind == yaml.AliasNode {
			return fmt.Errorf("%s: line %d: aliases are not allowed", where, v.Line)
		}
		if err := fn(key, v); err != nil {
			return err
		}
	}
	return nil
}

// scalarString returns a scalar node's literal text. Plain scalars that
// YAML would resolve to numbers or booleans count as strings (a hash of
// decimal digits is still a hash); nulls, binaries and non-scalars do not.
func scalarString(n *yaml.Node) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		return "", false
	}
	switch n.Tag {
	case "!!str", "!!int", "!!float", "!!bool":
		return n.Value, true
	}
	return "", false
}

// redactYAMLError returns a YAML syntax error's message with the alias
// name it quotes (which may be a token written with a stray "*") and long
// hex runs (possible hash values) replaced.
func redactYAMLError(err error) string {
	msg := yamlAnchor.ReplaceAllString(err.Error(), "anchor '[redacted]'")
	return hexRun.ReplaceAllString(msg, "[redacted]")
}

// Len returns the number of callers.
func (t *Tokens) Len() int {
	if t == nil {
		return 0
	}
	return len(t.entries)
}

// Authenticate returns "token:NAME" for the caller whose token is token.
// It hashes token with SHA-256 and compares the hash with every entry in
// constant time, so the time taken does not depend on which entry (if any)
// matched. The empty token never matches.
func (t *Tokens) Authenticate(token string) (caller string, ok bool) {
	if t == nil || token == "" {
		return "", false
	}
	sum := sha256.Sum256([]byte(token))
	found, idx := 0, 0
	for i := range t.entries {
		eq := subtle.ConstantTimeCompare(sum[:], t.entries[i].hash[:])
		idx = subtle.ConstantTimeSelect(eq, i, idx)
		found |= eq
	}
	if found != 1 {
		return "", false
	}
	return prefixToken + t.entries[idx].name, true
}
