package main

import (
	"bytes"
	"fmt"
	"strings"
	"unicode/utf8"
)

// maxEnvFileBytes bounds an env file: 1,000 values of 16 KB, with room.
const maxEnvFileBytes = 32 << 20

// envEntry is one KEY=VALUE line of an env file.
type envEntry struct {
	key   string
	value string
	line  int // 1-based
}

// parseEnvFile parses an env file, one KEY=VALUE a line:
//
//   - a UTF-8 byte order mark (EF BB BF) at the very start is skipped;
//   - a line is ended by "\n", "\r\n" or a lone "\r" (old Mac files, a
//     stray "\r" before "\n"), so no value ever holds a "\r" of a line
//     ending; blank lines and lines whose first non-blank character is
//     "#" are skipped; "export " before KEY is ignored;
//   - KEY is what precedes the first "=", without surrounding blanks: one
//     or more ASCII letters, digits and "_" (the broker's rules for a
//     secret's name, such as not starting with a digit, are its own, per
//     item); two keys that differ only in case are the same secret;
//   - VALUE is everything after the first "=", without surrounding blanks
//     (spaces and tabs); a VALUE wholly in double or single quotes loses
//     them and is otherwise kept as it is (no escapes, no inline comments:
//     "a # b" is the value "a # b"); a value cannot span lines; an empty
//     VALUE is an error (GitHub keeps no empty secret), and so is an
//     unquoted VALUE of "=" signs only.
//
// Errors name the line and, once it is known to be one, the key; never a
// value nor a line's text. A line whose value is empty or "=" signs only
// is named by its number alone: it may be the end of a base64 value
// wrapped onto it ("...AAoIBAQC7VJ=" or "...==" reads as KEY= or KEY==),
// or a value without its key, and its "key" is then a piece of the value.
func parseEnvFile(data []byte) ([]envEntry, error) {
	var out []envEntry
	seen := map[string]int{} // upper-cased key → line
	for i, raw := range envLines(data) {
		n := i + 1
		if !utf8.Valid(raw) {
			return nil, fmt.Errorf("line %d: not UTF-8 text", n)
		}
		line := strings.TrimLeft(string(raw), " \t")
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if rest, ok := strings.CutPrefix(line, "export"); ok && rest != "" && (rest[0] == ' ' || rest[0] == '\t') {
			line = strings.TrimLeft(rest, " \t")
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("line %d: no \"=\": want KEY=VALUE", n)
		}
		k = strings.TrimRight(k, " \t")
		if !validKey(k) {
			return nil, fmt.Errorf("line %d: the key is not one or more of A-Z, a-z, 0-9 and _", n)
		}
		v = strings.Trim(v, " \t")
		quoted := len(v) > 0 && (v[0] == '"' || v[0] == '\'')
		if quoted {
			if len(v) < 2 || v[len(v)-1] != v[0] {
				return nil, fmt.Errorf("line %d: %s: the value's opening quote is not closed on its line", n, k)
			}
			v = v[1 : len(v)-1]
		}
		// Neither error names the key: "KEY=" and "KEY==" are also what
		// the last line of a base64 or base32 value wrapped onto several
		// lines looks like, or such a value on a line without its key,
		// and their "KEY" is then a piece of the value.
		if v == "" {
			return nil, fmt.Errorf("line %d: the value is empty", n)
		}
		if !quoted && strings.Trim(v, "=") == "" {
			return nil, fmt.Errorf("line %d: the value is only \"=\" signs: a value cannot span lines; is this line the end of a value wrapped onto it, or a value without its key?", n)
		}
		up := strings.ToUpper(k)
		if first, dup := seen[up]; dup {
			return nil, fmt.Errorf("line %d: %s: the same secret as line %d", n, k, first)
		}
		seen[up] = n
		out = append(out, envEntry{key: k, value: v, line: n})
	}
	return out, nil
}

// utf8BOM is the byte order mark some editors write at a file's start.
var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// envLines splits an env file into its lines, without their endings: a
// leading byte order mark is dropped, and "\r\n", "\n" and a lone "\r"
// each end a line. After a final line ending comes an empty last line,
// which parseEnvFile skips as blank.
func envLines(data []byte) [][]byte {
	data = bytes.TrimPrefix(data, utf8BOM)
	var out [][]byte
	for {
		i := bytes.IndexAny(data, "\r\n")
		if i < 0 {
			return append(out, data)
		}
		out = append(out, data[:i])
		if data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n' {
			i++
		}
		data = data[i+1:]
	}
}

// validKey reports whether k is one or more ASCII letters, digits and "_".
func validKey(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c == '_' || c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') {
			return false
		}
	}
	return true
}
