package main

import (
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
)

func TestParseEnvFile(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want []envEntry
		err  string
	}{
		{name: "empty", in: "", want: nil},
		{name: "comments and blanks", in: "# a\n\n   \n\t# b\n", want: nil},
		{name: "plain", in: "A=1\nB=two words\n", want: []envEntry{{"A", "1", 1}, {"B", "two words", 2}}},
		{name: "no final newline", in: "A=1", want: []envEntry{{"A", "1", 1}}},
		{name: "CRLF", in: "A=1\r\nB=2\r\n", want: []envEntry{{"A", "1", 1}, {"B", "2", 2}}},
		{name: "CR only", in: "FOO=bar\rBAR=baz\r", want: []envEntry{{"FOO", "bar", 1}, {"BAR", "baz", 2}}},
		{name: "stray CR before CRLF", in: "FOO=bar\r\r\nB=2\n", want: []envEntry{{"FOO", "bar", 1}, {"B", "2", 3}}},
		{name: "CR ends a quoted value's line", in: "A=\"x\ry\"\n", err: "line 1: A: the value's opening quote is not closed"},
		{name: "mixed endings", in: "A=1\nB=2\r\nC=3\rD=4", want: []envEntry{{"A", "1", 1}, {"B", "2", 2}, {"C", "3", 3}, {"D", "4", 4}}},
		{name: "byte order mark", in: "\ufeffFOO=bar\n", want: []envEntry{{"FOO", "bar", 1}}},
		{name: "byte order mark before a comment", in: "\ufeff# c\r\nA=1\r\n", want: []envEntry{{"A", "1", 2}}},
		{name: "byte order mark only at the start", in: "A=1\n\ufeffB=2\n", err: "line 2: the key is not"},
		{name: "blanks around", in: "  A  =  1  \n", want: []envEntry{{"A", "1", 1}}},
		{name: "export", in: "export A=1\nexport\tB=2\n", want: []envEntry{{"A", "1", 1}, {"B", "2", 2}}},
		{name: "a key named export", in: "export=1\n", want: []envEntry{{"export", "1", 1}}},
		{name: "double quotes", in: `A="a # b = c"` + "\n", want: []envEntry{{"A", "a # b = c", 1}}},
		{name: "single quotes", in: `A='  x  '`, want: []envEntry{{"A", "  x  ", 1}}},
		{name: "no escapes", in: `A="a\nb"`, want: []envEntry{{"A", `a\nb`, 1}}},
		{name: "inner quote kept", in: `A=it's`, want: []envEntry{{"A", "it's", 1}}},
		{name: "first = splits", in: "A=b=c==\n", want: []envEntry{{"A", "b=c==", 1}}},
		{name: "inline hash kept", in: "A=x # y\n", want: []envEntry{{"A", "x # y", 1}}},
		{name: "digit first is the broker's to refuse", in: "1A=x\n", want: []envEntry{{"1A", "x", 1}}},
		{name: "lower case", in: "a_b=x\n", want: []envEntry{{"a_b", "x", 1}}},
		{name: "no equals", in: "A=1\nhunter2\n", err: `line 2: no "="`},
		{name: "empty key", in: "=x\n", err: "line 1: the key is not"},
		{name: "key with a slash", in: "../X=1\n", err: "line 1: the key is not"},
		{name: "key with a space", in: "A B=1\n", err: "line 1: the key is not"},
		{name: "empty value", in: "A=\n", err: "line 1: the value is empty"},
		{name: "empty quotes", in: `A=""`, err: "line 1: the value is empty"},
		{name: "open quote", in: "A=\"x\nB=1\n", err: "line 1: A: the value's opening quote is not closed"},
		{name: "lone quote", in: `A="`, err: "line 1: A: the value's opening quote is not closed"},
		{name: "mismatched quotes", in: `A="x'`, err: "line 1: A: the value's opening quote"},
		{name: "duplicate in another case", in: "Token=1\n\nTOKEN=2\n", err: "line 3: TOKEN: the same secret as line 1"},
		{name: "not UTF-8", in: "A=\xff\n", err: "line 1: not UTF-8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseEnvFile([]byte(tc.in))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestParseEnvFileErrorsHoldNoValue: whatever is wrong, the error names a
// line and maybe a key, never what follows "=".
func TestParseEnvFileErrorsHoldNoValue(t *testing.T) {
	for _, in := range []string{
		plantedValue,
		"A=\"" + plantedValue,
		"A='" + plantedValue + "\"",
		plantedValue + "-no-equals",
		"BAD KEY=" + plantedValue,
		"A=" + plantedValue + "\na=" + plantedValue,
		"A=" + plantedValue + "\xff",
	} {
		_, err := parseEnvFile([]byte(in))
		if err == nil {
			t.Errorf("%q parsed", in)
			continue
		}
		if strings.Contains(err.Error(), plantedValue) {
			t.Errorf("error holds the value: %v", err)
		}
	}
}

// TestParseEnvFileWrappedValue: a value wrapped onto the next line (base64
// as "base64 -w 76" writes it, a PEM body, base32 with its padding), or a
// value on a line of its own without its key, leaves a line whose text
// before "=" reads as a key: with one "=" of padding its value is empty,
// with two or more it is "=" signs only. Such a line is refused, and the
// error names the line alone: its "key" is a piece of the value. (It was
// "line 2: <piece of the value>: the value is empty" on standard error, or,
// with "==", an entry named after the piece, sent to the broker and GitHub
// as a secret's name.)
func TestParseEnvFileWrappedValue(t *testing.T) {
	const piece = "BKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj"
	for _, tc := range []struct {
		name, in, err string
	}{
		{"base64 wrapped, one pad", "TLS_KEY=MIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n" + piece + "=\n", "line 2: the value is empty"},
		{"base64 wrapped, two pads", "TLS_KEY=MIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n" + piece + "==\n", "line 2: the value is only"},
		{"value without its key", piece + "=\n", "line 1: the value is empty"},
		{"base32 without its key", piece + "======\n", "line 1: the value is only"},
		{"a blank after the pads", piece + "== \n", "line 1: the value is only"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseEnvFile([]byte(tc.in))
			if err == nil {
				t.Fatalf("parsed as %+v", got)
			}
			if !strings.Contains(err.Error(), tc.err) {
				t.Errorf("err = %v, want %q", err, tc.err)
			}
			if strings.Contains(strings.ToUpper(err.Error()), strings.ToUpper(piece[:8])) {
				t.Errorf("the error holds a piece of the value: %v", err)
			}
		})
	}
	// Padding a caller quoted is a value, however odd.
	if got, err := parseEnvFile([]byte(`A="=="`)); err != nil || len(got) != 1 || got[0].value != "==" {
		t.Errorf(`A="==": %+v, %v`, got, err)
	}
}

// envErrorShape is every error parseEnvFile returns: a line number, maybe
// that line's key, and a fixed phrase.
var envErrorShape = regexp.MustCompile(`^line ([0-9]+): (?:not UTF-8 text|no "=": want KEY=VALUE|the key is not one or more of A-Z, a-z, 0-9 and _|the value is empty|the value is only "=" signs: a value cannot span lines; is this line the end of a value wrapped onto it, or a value without its key\?|([A-Za-z0-9_]+): (?:the value's opening quote is not closed on its line|the same secret as line [0-9]+))$`)

// FuzzParseEnvFile: parsing never panics; what it accepts is well formed
// (valid keys, non-empty values without a line ending's "\r" or "\n", no
// repeated secret, increasing lines),
// and writing it back quoted parses to the same entries; an error holds
// only a line number, that line's key and a fixed phrase.
func FuzzParseEnvFile(f *testing.F) {
	for _, s := range []string{
		"", "A=1", "A=1\nB=2\n", "export A=\"x y\"\r\n", "# c\n\nA='q'\n", "A=\n", "=1", "A=\"x", "a=1\nA=2",
		"A=b=c", "\xff=1", "A=\"\"", "export=1", "  A = ' spaced ' \n",
		"\ufeffA=1\n", "A=1\rB=2\r", "A=1\r\r\nB=\"x\ry\"", "\ufeff\ufeffA=1",
		"export  A=1", "export\tA=1", "exportA=1", "A='x\"", "A=\"x'", "A=\" \"", "A=\"\"\"", "A = \t'q' \t",
		"A==", "A=\"=\"", "A=a=", "#A=1\nA=2", " # c\nB=1", "A=1 # c", "A=1\na=2", "A_1=x\r\nA_1=y",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := parseEnvFile(data)
		if err != nil {
			// The error is a line number, that line's key and a fixed
			// phrase: nothing else of the file.
			m := envErrorShape.FindStringSubmatch(err.Error())
			if m == nil {
				t.Fatalf("error %q is not of the known shapes", err)
			}
			if m[2] != "" {
				n, _ := strconv.Atoi(m[1])
				line := string(envLines(data)[n-1])
				k, _, _ := strings.Cut(line, "=")
				if !strings.Contains(k, m[2]) {
					t.Fatalf("error %q names a key that is not line %d's: %q", err, n, line)
				}
			}
			return
		}
		seen := map[string]bool{}
		last := 0
		var back strings.Builder
		for _, e := range entries {
			if !validKey(e.key) || e.value == "" || e.line <= last || seen[strings.ToUpper(e.key)] ||
				strings.ContainsAny(e.value, "\r\n") {
				t.Fatalf("bad entry %+v in %+v", e, entries)
			}
			seen[strings.ToUpper(e.key)] = true
			last = e.line
			// The entry is its line's, read apart from the parser: KEY
			// (after any "export ") and VALUE around the first "=",
			// blanks trimmed, VALUE maybe wholly quoted.
			line := string(envLines(data)[e.line-1]) // envLines drops the one BOM
			k, v, _ := strings.Cut(line, "=")
			k = strings.Trim(k, " \t")
			if rest, ok := strings.CutPrefix(k, "export"); ok && rest != strings.TrimLeft(rest, " \t") {
				k = strings.TrimLeft(rest, " \t")
			}
			v = strings.Trim(v, " \t")
			if k != e.key || (v != e.value && v != `"`+e.value+`"` && v != `'`+e.value+`'`) {
				t.Fatalf("entry %+v is not line %d's %q", e, e.line, line)
			}
			q := `"`
			if strings.Contains(e.value, `"`) {
				q = "'"
			}
			fmt.Fprintf(&back, "%s=%s%s%s\n", e.key, q, e.value, q)
		}
		again, err := parseEnvFile([]byte(back.String()))
		if err != nil {
			t.Fatalf("round trip of %q: %v", back.String(), err)
		}
		if len(again) != len(entries) {
			t.Fatalf("round trip: %d entries, want %d", len(again), len(entries))
		}
		for i := range again {
			if again[i].key != entries[i].key || again[i].value != entries[i].value {
				t.Fatalf("round trip: %+v, want %+v", again[i], entries[i])
			}
		}
	})
}

// TestChunks splits batches at 1,000 items and at about 12 MiB.
func TestChunks(t *testing.T) {
	small := func(n int) []*secretbrokerv1.PutSecretRequest {
		out := make([]*secretbrokerv1.PutSecretRequest, n)
		for i := range out {
			out[i] = &secretbrokerv1.PutSecretRequest{Name: fmt.Sprintf("repos/o/r/actions/secrets/S%d", i),
				Payload: &secretbrokerv1.PutSecretRequest_Value{Value: "v"}}
		}
		return out
	}
	big := small(600)
	for _, r := range big {
		r.Payload = &secretbrokerv1.PutSecretRequest_Value{Value: strings.Repeat("x", 40<<10)}
	}
	for _, tc := range []struct {
		name string
		reqs []*secretbrokerv1.PutSecretRequest
		want []int
	}{
		{name: "none", reqs: nil, want: nil},
		{name: "one", reqs: small(1), want: []int{1}},
		{name: "exactly 1000", reqs: small(1000), want: []int{1000}},
		{name: "2500", reqs: small(2500), want: []int{1000, 1000, 500}},
		{name: "600 of 40 KiB", reqs: big, want: []int{306, 294}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []int
			total := 0
			for _, c := range chunks(tc.reqs) {
				got = append(got, len(c))
				for _, r := range c {
					if r != tc.reqs[total] {
						t.Fatalf("item %d out of order", total)
					}
					total++
				}
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("chunk sizes %v, want %v", got, tc.want)
			}
		})
	}
}
