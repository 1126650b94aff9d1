package access

import (
	"strings"
	"testing"
)

func TestMatch(t *testing.T) {
	tests := []struct {
		pattern, s string
		want       bool
	}{
		// Literals.
		{"orgs/acme/actions/secrets/X", "orgs/acme/actions/secrets/X", true},
		{"orgs/acme/actions/secrets/X", "orgs/acme/actions/secrets/Y", false},
		{"orgs/acme/actions/secrets/X", "orgs/acme/actions/secrets", false},
		{"orgs/acme/actions/secrets", "orgs/acme/actions/secrets/X", false},
		{"", "", true},
		{"", "a", false},
		{"a", "", false},
		// "*" within a segment.
		{"*", "", true},
		{"*", "abc", true},
		{"*", "a/b", false},
		{"orgs/*/actions/secrets/*", "orgs/acme/actions/secrets/X", true},
		{"orgs/*/actions/secrets/*", "orgs/acme/team/actions/secrets/X", false},
		{"orgs/acme/actions/secrets/PAYMENTS_*", "orgs/acme/actions/secrets/PAYMENTS_", true},
		{"orgs/acme/actions/secrets/PAYMENTS_*", "orgs/acme/actions/secrets/PAYMENTS_DB", true},
		{"orgs/acme/actions/secrets/PAYMENTS_*", "orgs/acme/actions/secrets/PAYMENTS", false},
		{"orgs/acme/actions/secrets/*_TOKEN", "orgs/acme/actions/secrets/DEPLOY_TOKEN", true},
		{"orgs/acme/actions/secrets/*_TOKEN", "orgs/acme/actions/secrets/DEPLOY_TOKENS", false},
		{"orgs/acme/actions/secrets/A*B*C", "orgs/acme/actions/secrets/AXXBYYC", true},
		{"orgs/acme/actions/secrets/A*B*C", "orgs/acme/actions/secrets/ACB", false},
		{"a*", "a/b", false},
		{"a*b", "a/b", false},
		{"token:ci-*", "token:ci-deployer", true},
		{"token:ci-*", "token:ci-", true},
		{"token:ci-*", "token:cd-deployer", false},
		{"token:ci-*", "jwt:ci-deployer", false},
		// "**" at the start, in the middle and at the end.
		{"**", "", true},
		{"**", "a", true},
		{"**", "a/b/c", true},
		{"**/X", "orgs/acme/actions/secrets/X", true},
		{"**/X", "X", true},
		{"**/X", "orgs/acme/actions/secrets/Y", false},
		{"orgs/**/secrets/X", "orgs/acme/actions/secrets/X", true},
		{"orgs/**/secrets/X", "orgs/secrets/X", true}, // zero segments
		{"orgs/**/secrets/X", "repos/acme/actions/secrets/X", false},
		{"orgs/acme/**", "orgs/acme/actions/secrets/X", true},
		{"orgs/acme/**", "orgs/acme", true}, // zero segments
		{"orgs/acme/**", "orgs/acmeco/actions/secrets/X", false},
		{"orgs/acme/**", "orgs", false},
		{"**/**", "a", true},
		{"**/**/**", "", true},
		{"a/**/b/**/c", "a/b/c", true},
		{"a/**/b/**/c", "a/x/y/b/z/c", true},
		{"a/**/b/**/c", "a/x/y/z/c", false},
		{"a/**/b/*/c", "a/b/b/b/c", true},
		{"a/**/b", "a/b/b/x", false},
		{"**/b/**", "a/b", true},
		{"**/b/**", "a/c", false},
		// Empty segments.
		{"a//b", "a//b", true},
		{"a//b", "a/b", false},
		{"a/*/b", "a//b", true},
		{"a/**/b", "a//b", true},
		{"x509:spiffe://example.org/ns/ci/sa/deployer", "x509:spiffe://example.org/ns/ci/sa/deployer", true},
		{"x509:spiffe://example.org/ns/*/sa/deployer", "x509:spiffe://example.org/ns/ci/sa/deployer", true},
		{"x509:spiffe://example.org/**", "x509:spiffe://example.org/ns/ci/sa/deployer", true},
		{"x509:spiffe://example.org/**", "x509:spiffe://example.com/ns/ci/sa/deployer", false},
		{"x509:spiffe:/*/example.org/**", "x509:spiffe://example.org/ns/ci/sa/deployer", true},
		{"x509:*", "x509:spiffe://example.org/ns/ci/sa/deployer", false}, // "*" does not cross "/"
		// Dots, colons and would-be metacharacters are literal.
		{"jwt:system:serviceaccount:platform:admin", "jwt:system:serviceaccount:platform:admin", true},
		{"jwt:system:serviceaccount:*:admin", "jwt:system:serviceaccount:platform:admin", true},
		{"jwt:system:serviceaccount:*:admin", "jwt:system:serviceaccount:platform:admins", false},
		{"x509:spiffe://example.org/**", "x509:spiffe://exampleXorg/ns", false},
		{"a.b", "aXb", false},
		{"a?c", "abc", false},
		{"a?c", "a?c", true},
		{"[ab]", "a", false},
		{"[ab]", "[ab]", true},
		{`a\*`, `a\bc`, true},
		{`a\*`, `a*`, false},
		// Escaped environment names stay one segment.
		{"repos/acme/payments/environments/*/secrets/DB_PASSWORD", "repos/acme/payments/environments/prod%2Feu/secrets/DB_PASSWORD", true},
		{"repos/acme/payments/environments/prod%2F*/secrets/*", "repos/acme/payments/environments/prod%2Feu/secrets/X", true},
		{"repos/acme/payments/environments/prod/secrets/*", "repos/acme/payments/environments/prod%2Feu/secrets/X", false},
		// Patterns that would backtrack exponentially if done naively.
		{"*a*a*a*a*a*a*a*a*b", strings.Repeat("a", 200), false},
		{"*a*a*a*a*a*a*a*a*b", strings.Repeat("a", 200) + "b", true},
		{strings.Repeat("**/", 30) + "b", strings.Repeat("a/", 60) + "a", false},
		{strings.Repeat("**/a/", 30) + "b", strings.Repeat("a/", 60) + "b", true},
	}
	for _, tt := range tests {
		if got := Match(tt.pattern, tt.s); got != tt.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tt.pattern, tt.s, got, tt.want)
		}
		if got := refMatch(tt.pattern, tt.s); got != tt.want {
			t.Errorf("reference Match(%q, %q) = %v, want %v (bad test case)", tt.pattern, tt.s, got, tt.want)
		}
	}
}

// TestMatchSteps bounds the work of pathological patterns: at most a small
// multiple of len(pattern)*len(s), where naive backtracking explodes.
func TestMatchSteps(t *testing.T) {
	tests := []struct {
		name, pattern, s string
	}{
		{"stars in a segment", strings.Repeat("*a", 30) + "*b", strings.Repeat("a", 2000)},
		{"many double stars", strings.Repeat("**/", 50) + "b", strings.Repeat("a/", 500) + "a"},
		{"double stars and stars", strings.Repeat("**/*a*a*a/", 20) + "b", strings.Repeat("aaaaa/", 200) + "a"},
		{"long literal near miss", "**/" + strings.Repeat("a/", 40) + "b", strings.Repeat("a/", 400) + "a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var steps int
			got := matchPath(strings.Split(tt.pattern, "/"), strings.Split(tt.s, "/"), concrete, &steps)
			if got {
				t.Fatalf("Match = true, want false")
			}
			bound := 2 * (len(tt.pattern) + 1) * (len(tt.s) + 1)
			if steps > bound {
				t.Errorf("took %d steps, want at most %d", steps, bound)
			}
		})
	}
}

// refMatch is a reference matcher: dynamic programming over segments and,
// within a segment, over characters. It is slow and obviously right.
func refMatch(pattern, s string) bool {
	p, ss := strings.Split(pattern, "/"), strings.Split(s, "/")
	// m[i][j]: p[i:] matches ss[j:].
	m := make([][]bool, len(p)+1)
	for i := range m {
		m[i] = make([]bool, len(ss)+1)
	}
	m[len(p)][len(ss)] = true
	for i := len(p) - 1; i >= 0; i-- {
		for j := len(ss); j >= 0; j-- {
			if p[i] == "**" {
				m[i][j] = m[i+1][j] || (j < len(ss) && m[i][j+1])
			} else {
				m[i][j] = j < len(ss) && refSegment(p[i], ss[j]) && m[i+1][j+1]
			}
		}
	}
	return m[0][0]
}

func refSegment(q, s string) bool {
	m := make([][]bool, len(q)+1)
	for i := range m {
		m[i] = make([]bool, len(s)+1)
	}
	m[len(q)][len(s)] = true
	for i := len(q) - 1; i >= 0; i-- {
		for j := len(s); j >= 0; j-- {
			if q[i] == '*' {
				m[i][j] = m[i+1][j] || (j < len(s) && m[i][j+1])
			} else {
				m[i][j] = j < len(s) && q[i] == s[j] && m[i+1][j+1]
			}
		}
	}
	return m[0][0]
}

func FuzzMatch(f *testing.F) {
	seeds := []struct{ pattern, s string }{
		{"", ""},
		{"**", ""},
		{"*", "/"},
		{"orgs/acme/**", "orgs/acme/actions/secrets/X"},
		{"repos/acme/payments/environments/*/secrets/*", "repos/acme/payments/environments/prod%2Feu/secrets/DB_PASSWORD"},
		{"x509:spiffe://example.org/**", "x509:spiffe://example.org/ns/ci/sa/deployer"},
		{"token:ci-*", "token:ci-deployer"},
		{"*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaa"},
		{"**/**/**/b", "a/a/a/a/a/a/a"},
		{"a/**/b/*/c", "a/b/b/b/c"},
		{"a//b", "a/b"},
		{"***/b", "a/b"},
	}
	for _, s := range seeds {
		f.Add(s.pattern, s.s)
	}
	f.Fuzz(func(t *testing.T, pattern, s string) {
		if len(pattern) > 512 || len(s) > 512 {
			t.Skip("long inputs only slow the reference matcher")
		}
		var steps int
		got := matchPath(strings.Split(pattern, "/"), strings.Split(s, "/"), concrete, &steps)
		if got != Match(pattern, s) {
			t.Fatalf("matchPath and Match disagree on (%q, %q)", pattern, s)
		}
		if want := refMatch(pattern, s); got != want {
			t.Fatalf("Match(%q, %q) = %v, reference says %v", pattern, s, got, want)
		}
		if bound := 2 * (len(pattern) + 1) * (len(s) + 1); steps > bound {
			t.Fatalf("Match(%q, %q) took %d steps, want at most %d", pattern, s, steps, bound)
		}
		if !Match("**", s) {
			t.Fatalf("Match(\"**\", %q) = false", s)
		}
		if !strings.Contains(s, "*") && !Match(s, s) {
			t.Fatalf("Match(%q, itself) = false", s)
		}
		if !strings.Contains(pattern, "*") && Match(pattern, s) != (pattern == s) {
			t.Fatalf("Match(%q, %q) = %v for a pattern without stars", pattern, s, Match(pattern, s))
		}
	})
}
