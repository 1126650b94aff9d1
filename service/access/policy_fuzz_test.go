package access

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// verbNames are the verbs in bit order.
var verbNames = []string{Read, Write, Delete, ManageRepositories}

// fileOf writes p back as the YAML form of a policy.
func fileOf(p *Policy) policyFile {
	str := func(s string) *string { return &s }
	var f policyFile
	for _, r := range p.rules {
		rf := &ruleFile{}
		for _, c := range r.callers {
			rf.Callers = append(rf.Callers, str(strings.Join(c, "/")))
		}
		for _, v := range verbNames {
			if bit, _ := verbBit(v); r.verbs&bit != 0 {
				rf.Verbs = append(rf.Verbs, str(v))
			}
		}
		for _, res := range r.resources {
			rf.Resources = append(rf.Resources, str(strings.Join(res, "/")))
		}
		f.Rules = append(f.Rules, rf)
	}
	return f
}

// jsonFile is policyFile with JSON names, for writing a policy as JSON
// (which is YAML).
type jsonFile struct {
	Rules []jsonRule `json:"rules"`
}

type jsonRule struct {
	Callers   []*string `json:"callers"`
	Verbs     []*string `json:"verbs"`
	Resources []*string `json:"resources"`
}

// patternProblem checks a pattern Parse accepted against the documented
// rules, independently of checkPattern, and says what is wrong with it.
func patternProblem(pat string, resource bool) string {
	switch {
	case pat == "":
		return "empty"
	case !utf8.ValidString(pat):
		return "invalid UTF-8"
	}
	for _, r := range pat {
		if unicode.IsControl(r) {
			return "a control character"
		}
	}
	segs := strings.Split(pat, "/")
	for i, seg := range segs {
		if seg != "**" && strings.Contains(seg, "**") {
			return `"**" within a segment`
		}
		if resource && seg == "" {
			return "an empty segment"
		}
		if resource && i == len(segs)-1 && i > 0 && segs[i-1] == "secrets" && strings.ContainsAny(seg, "abcdefghijklmnopqrstuvwxyz") {
			return "a secret name with a lower-case ASCII letter"
		}
	}
	return ""
}

// FuzzParse: no input panics Parse; it returns a policy or an error,
// never both; a policy it accepts holds only rules with callers, verbs and
// resources whose patterns obey the documented rules, parses to the same
// policy when written back as YAML or as JSON, and allows each of its
// rules' verbs to the rule's literal callers on its literal resources.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		examplePolicy,
		"",
		"# nothing yet\n",
		"rules: []\n",
		"rules:\n",
		"{}\n",
		"---\nrules: []\n",
		"rules: [\n",
		"rulez: []\n",
		"rules:\n  - ~\n",
		"rules:\n  - {}\n",
		"rules: []\n---\nrules: []\n",
		`{"rules":[{"callers":["token:ci"],"verbs":["read","read"],"resources":["orgs/acme/actions/secrets/X"]}]}`,
		"rules:\n  - callers: [\"token:ci\", ~]\n    verbs: [read, admin]\n    resources: [\"orgs//x\", \"orgs/acme/actions/secrets/x\"]\n",
		"rules:\n  - callers: [\"x509:**\", \"token:ci\\u0007\"]\n    verbs: [Read]\n    resources: [\"A**\"]\n",
		"rules:\n  - callers: [\"x509:spiffe://example.org/**\"]\n    verbs: [manage_repositories]\n    resources: [\"repos/acme/secrets/actions/secrets/X\", \"orgs/secrets/agents/secrets/*\"]\n",
		"rules:\n  - &r\n    callers: [token:a]\n    verbs: [write]\n    resources: [orgs/a]\n  - *r\n",
		"rules:\n  - callers: &c [token:a]\n    verbs: [delete]\n    resources: *c\n",
		"rules:\n  - <<: {callers: [token:a]}\n    verbs: [read]\n    resources: [orgs/a]\n",
		"rules:\n  - callers: [token:a]\n    callers: [token:b]\n    verbs: [read]\n    resources: [orgs/a]\n",
		"rules:\n  - callers: [\"token:\\u00e9\\u2028\"]\n    verbs: [read]\n    resources: [\"orgs/\\u00c9/actions/secrets/\\u00e9\"]\n",
		"rules:\n  - callers: [!!str 1]\n    verbs: [read]\n    resources: [!!binary aGk=]\n",
		"rules:\n  - callers: [0x10, 1e3, true, null]\n    verbs: [read]\n    resources: [~, 1.0]\n",
		"\xff\xfe",
		"&a [*a]",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data)
		if err != nil {
			if p != nil {
				t.Errorf("Parse returned a policy with error %v", err)
			}
			if !strings.HasPrefix(err.Error(), "access: invalid policy: ") {
				t.Errorf("error %q lacks the prefix", err)
			}
			return
		}
		if p == nil {
			t.Fatal("Parse returned neither a policy nor an error")
		}
		if p.Rules() != len(p.rules) {
			t.Errorf("Rules() = %d, want %d", p.Rules(), len(p.rules))
		}
		for i, r := range p.rules {
			if len(r.callers) == 0 || r.verbs == 0 || len(r.resources) == 0 {
				t.Errorf("rules[%d] lacks callers, verbs or resources: %+v", i, r)
			}
			if r.verbs >= 1<<len(verbNames) {
				t.Errorf("rules[%d] has unknown verb bits %b", i, r.verbs)
			}
			for _, c := range r.callers {
				if why := patternProblem(strings.Join(c, "/"), false); why != "" {
					t.Errorf("rules[%d]: accepted caller pattern %q with %s", i, strings.Join(c, "/"), why)
				}
			}
			for _, res := range r.resources {
				if why := patternProblem(strings.Join(res, "/"), true); why != "" {
					t.Errorf("rules[%d]: accepted resource pattern %q with %s", i, strings.Join(res, "/"), why)
				}
			}
		}

		// Written back, as YAML and as JSON, it parses to the same policy.
		file := fileOf(p)
		asYAML, err := yaml.Marshal(file)
		if err != nil {
			t.Fatalf("yaml.Marshal: %v", err)
		}
		jf := jsonFile{Rules: []jsonRule{}}
		for _, r := range file.Rules {
			jf.Rules = append(jf.Rules, jsonRule(*r))
		}
		asJSON, err := json.Marshal(jf)
		if err != nil {
			t.Fatalf("json.Marshal: %v", err)
		}
		for form, doc := range map[string][]byte{"YAML": asYAML, "JSON": asJSON} {
			again, err := Parse(doc)
			if err != nil {
				t.Fatalf("the policy written as %s does not parse: %v\n%s", form, err, doc)
			}
			if len(again.rules) != len(p.rules) || (len(p.rules) > 0 && !reflect.DeepEqual(again.rules, p.rules)) {
				t.Fatalf("the policy written as %s parses to another policy:\n%s\nwas %+v\nnow %+v", form, doc, p.rules, again.rules)
			}
		}

		// Each rule allows its verbs to its literal callers on its literal
		// resources, and no verb no rule grants is allowed on them.
		var granted verbSet
		for _, r := range p.rules {
			granted |= r.verbs
		}
		for i, r := range p.rules {
			for _, cs := range r.callers {
				c := strings.Join(cs, "/")
				if strings.Contains(c, "*") {
					continue
				}
				for _, rs := range r.resources {
					res := strings.Join(rs, "/")
					if strings.Contains(res, "*") {
						continue
					}
					for _, v := range verbNames {
						bit, _ := verbBit(v)
						if r.verbs&bit != 0 && !p.Allow(c, v, res) {
							t.Errorf("rules[%d] grants %s to %q on %q, but Allow says no", i, v, c, res)
						}
						if granted&bit == 0 && p.Allow(c, v, res) {
							t.Errorf("no rule grants %s, but Allow(%q, %s, %q) says yes", v, c, v, res)
						}
					}
					if p.Allow("", Read, res) || p.Allow(c, "admin", res) || p.Allow(c, Read, "") {
						t.Errorf("Allow said yes to an empty caller, an unknown verb or an empty resource")
					}
				}
			}
		}
	})
}
