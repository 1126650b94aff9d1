package access

import "strings"

// Match reports whether s matches the glob pattern.
//
// Pattern and string are split on "/" into segments. A pattern segment that
// is exactly "**" matches zero or more whole segments. Within any other
// segment "*" matches any run, possibly empty, of characters (never a "/",
// since segments hold none); every other character, including ".", ":", "?"
// and "[", stands for itself. Empty segments are ordinary segments, so
// "x509:spiffe://example.org/**" matches "x509:spiffe://example.org/ns/ci".
//
// Matching takes time proportional to at most len(pattern)*len(s): there is
// no exponential backtracking.
func Match(pattern, s string) bool {
	var steps int
	return matchPath(strings.Split(pattern, "/"), strings.Split(s, "/"), concrete, &steps)
}

// nameMode says whether the last segment of a string stands for a secret
// name rather than for itself.
type nameMode uint8

const (
	concrete  nameMode = iota // every segment stands for itself
	someName                  // the last segment stands for some secret name
	everyName                 // the last segment stands for every secret name
)

// matchPath matches pattern segments p against string segments s with the
// two-pointer wildcard algorithm, "**" playing the star and a segment match
// playing a character match. On a mismatch it resumes after the latest "**",
// which absorbs one more segment; earlier "**"s need never be revisited, so
// each pair (pattern segment, string segment) is compared at most once.
// steps counts the work so tests can bound it.
func matchPath(p, s []string, mode nameMode, steps *int) bool {
	pi, si := 0, 0
	star, mark := -1, 0
	for si < len(s) {
		*steps++
		switch {
		case pi < len(p) && p[pi] == "**":
			star, mark = pi, si
			pi++
		case pi < len(p) && matchSegmentAt(p[pi], s, si, mode, steps):
			pi++
			si++
		case star >= 0:
			mark++
			pi, si = star+1, mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == "**" {
		pi++
	}
	return pi == len(p)
}

// matchSegmentAt matches pattern segment q against s[j], which stands for a
// secret name when it is the last segment and mode says so.
func matchSegmentAt(q string, s []string, j int, mode nameMode, steps *int) bool {
	if mode == concrete || j != len(s)-1 {
		return matchSegment(q, s[j], steps)
	}
	if mode == everyName {
		// Only a segment of stars matches every name.
		return q != "" && strings.Trim(q, "*") == ""
	}
	return canMatchSomeName(q)
}

// canMatchSomeName reports whether segment q matches some secret name, a
// non-empty run of [A-Z0-9_]: it does when every literal character is one
// of those (replace each "*" by "A" to get such a name).
func canMatchSomeName(q string) bool {
	if q == "" {
		return false
	}
	for i := 0; i < len(q); i++ {
		c := q[i]
		if !('A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '*') {
			return false
		}
	}
	return true
}

// matchSegment matches one pattern segment against one string segment with
// the classic two-pointer wildcard algorithm: at most len(q)*len(s) steps.
func matchSegment(q, s string, steps *int) bool {
	if strings.IndexByte(q, '*') < 0 {
		*steps += len(q)
		return q == s
	}
	qi, si := 0, 0
	star, mark := -1, 0
	for si < len(s) {
		*steps++
		switch {
		case qi < len(q) && q[qi] == '*':
			star, mark = qi, si
			qi++
		case qi < len(q) && q[qi] == s[si]:
			qi++
			si++
		case star >= 0:
			mark++
			qi, si = star+1, mark
		default:
			return false
		}
	}
	for qi < len(q) && q[qi] == '*' {
		qi++
	}
	return qi == len(q)
}
