package access

import (
	"strings"
	"testing"
)

const examplePolicy = `
rules:
  - callers: ["x509:spiffe://example.org/ns/payments/sa/deployer", "token:ci-*"]
    verbs: [read, write, delete]
    resources: ["repos/acme/payments/environments/*/secrets/*", "orgs/acme/actions/secrets/PAYMENTS_*"]
  - callers: ["jwt:system:serviceaccount:platform:admin"]
    verbs: [read, write, delete, manage_repositories]
    resources: ["orgs/acme/**"]
`

const (
	deployer = "x509:spiffe://example.org/ns/payments/sa/deployer"
	ci       = "token:ci-deployer"
	admin    = "jwt:system:serviceaccount:platform:admin"
)

func mustParse(t *testing.T, data string) *Policy {
	t.Helper()
	p, err := Parse([]byte(data))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return p
}

func TestParseValid(t *testing.T) {
	tests := []struct {
		name  string
		data  string
		rules int
	}{
		{"example", examplePolicy, 2},
		{"empty file", "", 0},
		{"comments only", "# nothing yet\n", 0},
		{"no rules", "rules: []\n", 0},
		{"null rules", "rules:\n", 0},
		{"empty mapping", "{}\n", 0},
		{"document marker", "---\nrules: []\n", 0},
		{"repository named secrets", `
rules:
  - callers: ["token:ci"]
    verbs: [read]
    resources: ["repos/acme/secrets/actions/secrets/X", "orgs/secrets/agents/secrets/*"]
`, 1},
		{"duplicate verbs", `
rules:
  - callers: ["token:ci"]
    verbs: [read, read]
    resources: ["orgs/acme/actions/secrets/X"]
`, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustParse(t, tt.data)
			if got := p.Rules(); got != tt.rules {
				t.Errorf("Rules() = %d, want %d", got, tt.rules)
			}
			if tt.rules == 0 && p.Allow(admin, Read, "orgs/acme/actions/secrets/X") {
				t.Error("a policy without rules allowed a call")
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	rule := func(callers, verbs, resources string) string {
		return "rules:\n  - callers: " + callers + "\n    verbs: " + verbs + "\n    resources: " + resources + "\n"
	}
	ok := rule(`["token:ci"]`, `[read]`, `["orgs/acme/actions/secrets/X"]`)
	tests := []struct {
		name string
		data string
		want []string // substrings of the error
	}{
		{"syntax", "rules: [\n", []string{"invalid policy"}},
		{"unknown top-level field", "rulez: []\n", []string{"rulez"}},
		{"unknown rule field", "rules:\n  - callers: [a]\n    verbs: [read]\n    resources: [orgs/a]\n    effect: deny\n", []string{"effect"}},
		{"rules not a list", "rules: {}\n", []string{"invalid policy"}},
		{"verbs not a list", rule(`["token:ci"]`, `read`, `["orgs/acme/**"]`), []string{"invalid policy"}},
		{"two documents", ok + "---\n" + ok, []string{"more than one YAML document"}},
		{"no callers", rule(`[]`, `[read]`, `["orgs/acme/**"]`), []string{"rules[0]: no callers"}},
		{"missing callers", "rules:\n  - verbs: [read]\n    resources: [orgs/acme/x]\n", []string{"rules[0]: no callers"}},
		{"no verbs", rule(`["token:ci"]`, `[]`, `["orgs/acme/**"]`), []string{"rules[0]: no verbs"}},
		{"no resources", rule(`["token:ci"]`, `[read]`, `[]`), []string{"rules[0]: no resources"}},
		{"null rule", "rules:\n  - ~\n", []string{"rules[0]: empty rule"}},
		{"empty rule", "rules:\n  - {}\n", []string{"rules[0]: no callers", "rules[0]: no verbs", "rules[0]: no resources"}},
		{"null verb", rule(`["token:ci"]`, `[read, ~]`, `["orgs/acme/**"]`), []string{`rules[0].verbs[1]: unknown verb ""`}},
		{"null resource", rule(`["token:ci"]`, `[read]`, `["orgs/acme/**", ~]`), []string{"rules[0].resources[1]: empty pattern"}},
		{"unknown verb", rule(`["token:ci"]`, `[read, admin]`, `["orgs/acme/**"]`), []string{`rules[0].verbs[1]: unknown verb "admin"`}},
		{"verb case", rule(`["token:ci"]`, `[Read]`, `["orgs/acme/**"]`), []string{`rules[0].verbs[0]: unknown verb "Read"`}},
		{"empty caller", rule(`["token:ci", ""]`, `[read]`, `["orgs/acme/**"]`), []string{"rules[0].callers[1]: empty pattern"}},
		{"null caller", rule(`[~]`, `[read]`, `["orgs/acme/**"]`), []string{"rules[0].callers[0]: empty pattern"}},
		{"empty resource", rule(`["token:ci"]`, `[read]`, `[""]`), []string{"rules[0].resources[0]: empty pattern"}},
		{"double star in a caller segment", rule(`["x509:**"]`, `[read]`, `["orgs/acme/**"]`), []string{"rules[0].callers[0]", `"**" must be a whole segment`}},
		{"double star in a resource segment", rule(`["token:ci"]`, `[read]`, `["orgs/acme/actions/secrets/A**"]`), []string{"rules[0].resources[0]", `"**" must be a whole segment`}},
		{"empty resource segment", rule(`["token:ci"]`, `[read]`, `["orgs//actions/secrets/X"]`), []string{"rules[0].resources[0]", "empty segment"}},
		{"trailing slash", rule(`["token:ci"]`, `[read]`, `["orgs/acme/"]`), []string{"rules[0].resources[0]", "empty segment"}},
		{"leading slash", rule(`["token:ci"]`, `[read]`, `["/orgs/acme/**"]`), []string{"rules[0].resources[0]", "empty segment"}},
		{"control character", rule(`["token:ci\u0007"]`, `[read]`, `["orgs/acme/**"]`), []string{"rules[0].callers[0]", "control character"}},
		{"lower-case secret name", rule(`["token:ci"]`, `[read]`, `["orgs/acme/actions/secrets/deploy_token"]`), []string{"rules[0].resources[0]", "secret names are upper case in resource names"}},
		{"lower-case secret glob", rule(`["token:ci"]`, `[read]`, `["repos/acme/*/actions/secrets/Deploy_*"]`), []string{"rules[0].resources[0]", "secret names are upper case"}},
		{"problems in several rules", ok + `  - callers: ["token:ci"]
    verbs: [write]
    resources: ["orgs/acme/actions/secrets/X"]
  - callers: []
    verbs: [launch]
    resources: ["orgs/acme/actions/secrets/x"]
`, []string{"rules[2]: no callers", `rules[2].verbs[0]: unknown verb "launch"`, "rules[2].resources[0]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse([]byte(tt.data))
			if err == nil {
				t.Fatalf("Parse succeeded with %d rules, want an error", p.Rules())
			}
			if p != nil {
				t.Errorf("Parse returned a policy with its error")
			}
			if !strings.HasPrefix(err.Error(), "access: invalid policy: ") {
				t.Errorf("error %q lacks the prefix", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "rules[1]") {
				t.Errorf("error %q blames rules[1], a valid rule", err)
			}
		})
	}
}

func TestAllow(t *testing.T) {
	p := mustParse(t, examplePolicy)
	tests := []struct {
		caller, verb, resource string
		want                   bool
	}{
		{deployer, Write, "repos/acme/payments/environments/prod/secrets/X", true},
		{deployer, Read, "repos/acme/payments/environments/prod%2Feu/secrets/DB_PASSWORD", true},
		{deployer, Delete, "repos/acme/payments/environments/staging/secrets/X", true},
		{deployer, ManageRepositories, "repos/acme/payments/environments/prod/secrets/X", false},
		{deployer, Write, "repos/acme/other/environments/prod/secrets/X", false},
		{deployer, Write, "repos/acme/payments/actions/secrets/X", false},
		{deployer, Write, "repos/acme/payments/environments/prod/secrets/X/Y", false},
		{deployer, Write, "orgs/acme/actions/secrets/PAYMENTS_DB", true},
		{deployer, Write, "orgs/acme/actions/secrets/DEPLOY_TOKEN", false},
		{deployer, Write, "orgs/acme/agents/secrets/PAYMENTS_DB", false},
		{deployer, "admin", "orgs/acme/actions/secrets/PAYMENTS_DB", false},
		{deployer, "", "orgs/acme/actions/secrets/PAYMENTS_DB", false},
		{"x509:spiffe://example.org/ns/payments/sa/deployer2", Write, "orgs/acme/actions/secrets/PAYMENTS_DB", false},
		{"x509:spiffe://example.org/ns/other/sa/deployer", Write, "orgs/acme/actions/secrets/PAYMENTS_DB", false},
		{ci, Write, "repos/acme/payments/environments/prod/secrets/X", true},
		{"token:ci-", Read, "orgs/acme/actions/secrets/PAYMENTS_X", true},
		{"token:cd-deployer", Read, "orgs/acme/actions/secrets/PAYMENTS_X", false},
		{"jwt:ci-deployer", Read, "orgs/acme/actions/secrets/PAYMENTS_X", false},
		{admin, ManageRepositories, "orgs/acme/actions/secrets/ANY", true},
		{admin, Delete, "orgs/acme/agents/secrets/ANY", true},
		{admin, Write, "repos/acme/payments/environments/prod/secrets/X", false},
		{admin, Write, "orgs/acmeco/actions/secrets/X", false},
		{"jwt:system:serviceaccount:platform:admin2", Write, "orgs/acme/actions/secrets/X", false},
		{"", Write, "orgs/acme/actions/secrets/X", false},
		{admin, Write, "", false},
	}
	for _, tt := range tests {
		if got := p.Allow(tt.caller, tt.verb, tt.resource); got != tt.want {
			t.Errorf("Allow(%q, %q, %q) = %v, want %v", tt.caller, tt.verb, tt.resource, got, tt.want)
		}
	}
}

// TestAllowAnyCaller shows that a caller pattern of "**" admits every
// caller except the empty (unidentified) one.
func TestAllowAnyCaller(t *testing.T) {
	p := mustParse(t, `
rules:
  - callers: ["**", "*"]
    verbs: [read]
    resources: ["**"]
`)
	if !p.Allow(deployer, Read, "orgs/acme/actions/secrets/X") || !p.Allow(ci, Read, "repos/a/b/actions/secrets/Y") {
		t.Error("a \"**\" caller pattern did not admit a caller")
	}
	if p.Allow("", Read, "orgs/acme/actions/secrets/X") {
		t.Error("the empty caller was allowed")
	}
	if p.Allow(deployer, Write, "orgs/acme/actions/secrets/X") {
		t.Error("a verb the rule does not grant was allowed")
	}
}

func TestAllowSomeAndEvery(t *testing.T) {
	p := mustParse(t, examplePolicy)
	tests := []struct {
		caller, verb, scope string
		some, every         bool
	}{
		{deployer, Write, "repos/acme/payments/environments/prod", true, true},
		{deployer, Read, "repos/acme/payments/environments/prod%2Feu", true, true},
		{deployer, ManageRepositories, "repos/acme/payments/environments/prod", false, false},
		{deployer, Write, "repos/acme/other/environments/prod", false, false},
		{deployer, Write, "repos/acme/payments/actions", false, false},
		{deployer, Write, "orgs/acme/actions", true, false}, // only PAYMENTS_*
		{deployer, Write, "orgs/acme/agents", false, false},
		{ci, Delete, "orgs/acme/actions", true, false},
		{"token:cd", Delete, "orgs/acme/actions", false, false},
		{admin, ManageRepositories, "orgs/acme/actions", true, true},
		{admin, Read, "orgs/acme/agents", true, true},
		{admin, Read, "repos/acme/payments/actions", false, false},
		{admin, "admin", "orgs/acme/actions", false, false},
		{"", Read, "orgs/acme/actions", false, false},
		{admin, Read, "", false, false},
	}
	for _, tt := range tests {
		if got := p.AllowSome(tt.caller, tt.verb, tt.scope); got != tt.some {
			t.Errorf("AllowSome(%q, %q, %q) = %v, want %v", tt.caller, tt.verb, tt.scope, got, tt.some)
		}
		if got := p.AllowEvery(tt.caller, tt.verb, tt.scope); got != tt.every {
			t.Errorf("AllowEvery(%q, %q, %q) = %v, want %v", tt.caller, tt.verb, tt.scope, got, tt.every)
		}
	}
}

// TestAllowScopePatterns checks AllowSome and AllowEvery pattern by pattern
// against a symbolic name, and that they agree with Allow on sample names.
func TestAllowScopePatterns(t *testing.T) {
	const scope = "orgs/acme/actions"
	tests := []struct {
		resource    string
		some, every bool
	}{
		{"orgs/acme/actions/secrets/*", true, true},
		{"orgs/acme/actions/secrets/X", true, false},
		{"orgs/acme/actions/secrets/PAYMENTS_*", true, false},
		{"orgs/acme/actions/secrets/*_TOKEN", true, false},
		{"orgs/acme/actions/secrets/A*B*", true, false},
		{"orgs/acme/actions/secrets/%2A", false, false}, // "%" is never in a name
		{"orgs/acme/actions/**", true, true},
		{"orgs/acme/actions/secrets/**", true, true},
		{"orgs/acme/actions/secrets/X/**", true, false},
		{"orgs/acme/actions/secrets/*/**", true, true},
		{"orgs/**", true, true},
		{"**", true, true},
		{"**/X", true, false},
		{"**/secrets/*", true, true},
		{"orgs/*/*/secrets/*", true, true},
		{"orgs/acme/*/secrets/PAYMENTS_*", true, false},
		{"orgs/acme/agents/secrets/*", false, false},
		{"orgs/acme/actions/secrets", false, false},
		{"orgs/acme/actions/secrets/*/*", false, false},
		{"orgs/acme/actions/*", false, false},
		{"orgs/acme/**/variables/*", false, false},
		{"repos/acme/*/actions/secrets/*", false, false},
	}
	names := []string{"X", "A", "PAYMENTS_DB", "DEPLOY_TOKEN", "AXB", "ZZ_9"}
	for _, tt := range tests {
		p := mustParse(t, "rules:\n  - callers: [token:ci]\n    verbs: [write]\n    resources: [\""+tt.resource+"\"]\n")
		some, every := p.AllowSome("token:ci", Write, scope), p.AllowEvery("token:ci", Write, scope)
		if some != tt.some || every != tt.every {
			t.Errorf("%q: AllowSome = %v, AllowEvery = %v; want %v, %v", tt.resource, some, every, tt.some, tt.every)
		}
		for _, name := range names {
			allowed := p.Allow("token:ci", Write, scope+"/secrets/"+name)
			if allowed && !some {
				t.Errorf("%q: Allow on %s but not AllowSome", tt.resource, name)
			}
			if every && !allowed {
				t.Errorf("%q: AllowEvery but not Allow on %s", tt.resource, name)
			}
		}
	}
}

func TestDenyAll(t *testing.T) {
	for _, p := range []*Policy{DenyAll(), nil, {}} {
		if p.Rules() != 0 {
			t.Errorf("Rules() = %d, want 0", p.Rules())
		}
		if p.Allow(admin, Read, "orgs/acme/actions/secrets/X") ||
			p.AllowSome(admin, Read, "orgs/acme/actions") ||
			p.AllowEvery(admin, Read, "orgs/acme/actions") {
			t.Error("a policy without rules allowed a call")
		}
	}
}
