package service

import (
	"strings"
	"testing"
)

// FuzzOperationToken: a ListOperations page token decodes only for the
// not_done it was issued for, to a valid operation ID and the page size
// that issued it (a next page may ask for another size); any
// other input is refused without a panic. Operation names parse the same
// way.
func FuzzOperationToken(f *testing.F) {
	f.Add(operationToken("01a21e7e7362fea5e416a8d141569b4b", 30, false), 30, false)
	f.Add(operationToken("abc", 2, true), 2, true)
	f.Add("not-a-token", 30, false)
	f.Add("bzE6Oi4uOjMwOmZhbHNl", 30, false) // "o1::..:30:false"
	f.Add("operations/abc", 1, false)
	for _, raw := range []string{"o1:abc:030:false", "o1:abc:101:false", "o1:abc:0:true", "o1:abc:+1:true", "o1:a/b:1:true",
		"o1:abc:1:TRUE", "o1:abc:1:1", "o1:abc:1:true:", "o1::1:true", "o2:abc:1:true", "o1:abc:100:true"} {
		f.Add(encodeToken(raw), 1, true)
	}
	f.Add("operations/"+strings.Repeat("a", 129), 1, false)
	f.Add("operations/a.b", 1, false)
	f.Add("operations/abc/", 1, false)
	f.Fuzz(func(t *testing.T, token string, size int, notDone bool) {
		if after, issued, ok := decodeOperationToken(token, notDone); ok {
			if !validOperationID(after) {
				t.Fatalf("decoded an invalid ID %q", after)
			}
			if issued < 1 || issued > maxPageSize {
				t.Fatalf("decoded a page size of %d", issued)
			}
			if operationToken(after, issued, notDone) != token {
				t.Fatalf("token %q is not the one issued for %q", token, after)
			}
			if _, _, ok := decodeOperationToken(token, !notDone); ok {
				t.Fatal("a token decoded for another not_done")
			}
		}
		if id, err := operationID(token); err == nil {
			if !validOperationID(id) || "operations/"+id != token {
				t.Fatalf("operationID(%q) = %q", token, id)
			}
		} else if len(token) > 40 && strings.Contains(err.Error(), token) {
			t.Fatalf("the error repeats the input: %v", err)
		}
		if validOperationID(token) && size >= 1 && size <= maxPageSize {
			if after, issued, ok := decodeOperationToken(operationToken(token, size, notDone), notDone); !ok || after != token || issued != size {
				t.Fatalf("a token for %q does not decode", token)
			}
		}
	})
}
