package access

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// The verbs a rule may grant.
const (
	Read               = "read"
	Write              = "write"
	Delete             = "delete"
	ManageRepositories = "manage_repositories"
)

// verbSet is a set of verbs, one bit each.
type verbSet uint8

// verbBit returns the bit of a verb, and false for an unknown verb.
func verbBit(verb string) (verbSet, bool) {
	switch verb {
	case Read:
		return 1 << 0, true
	case Write:
		return 1 << 1, true
	case Delete:
		return 1 << 2, true
	case ManageRepositories:
		return 1 << 3, true
	}
	return 0, false
}

// Policy is a parsed policy: a list of rules, each granting verbs to callers
// on resources. It is immutable, and safe for concurrent use. The zero
// Policy, like a nil *Policy, denies everything.
type Policy struct {
	rules []rule
}

// rule is one compiled rule; patterns are kept split into segments.
type rule struct {
	callers   [][]string
	verbs     verbSet
	resources [][]string
}

// policyFile and ruleFile are the YAML form of a policy. Elements are
// pointers because the YAML decoder silently drops a null element of a
// slice of values; with pointers a null ("- ~") arrives as nil and is
// reported.
type policyFile struct {
	Rules []*ruleFile `yaml:"rules"`
}

type ruleFile struct {
	Callers   []*string `yaml:"callers"`
	Verbs     []*string `yaml:"verbs"`
	Resources []*string `yaml:"resources"`
}

// str returns *s, and "" for a null.
func str(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// DenyAll returns a policy with no rules.
func DenyAll() *Policy {
	return &Policy{}
}

// Parse parses a policy file. It is strict: an unknown field, an unknown
// verb, a rule without callers, verbs or resources, and an empty or invalid
// pattern are errors, each naming the rule and the problem (all problems are
// reported, not only the first). An empty file, or "rules: []", is a valid
// policy that denies everything.
//
// A pattern is invalid when it holds invalid UTF-8 or a control character,
// or when "**" is part of a longer segment ("**" only stands alone). A
// resource pattern is also invalid when it has an empty segment (resource
// names have none), or when its last segment follows a literal "secrets"
// segment and has a lower-case ASCII letter: secret names are upper case in
// resource names, so it could never match.
func Parse(data []byte) (*Policy, error) {
	p, err := parse(data)
	if err != nil {
		return nil, fmt.Errorf("access: %w", err)
	}
	return p, nil
}

// parse is Parse without the package prefix on errors.
func parse(data []byte) (*Policy, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f policyFile
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return DenyAll(), nil // empty file, or comments only
		}
		return nil, fmt.Errorf("invalid policy: %w", err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("invalid policy: more than one YAML document")
	}

	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(format, args...))
	}
	p := &Policy{rules: make([]rule, 0, len(f.Rules))}
	for i, rf := range f.Rules {
		if rf == nil {
			bad("rules[%d]: empty rule", i)
			continue
		}
		var r rule
		if len(rf.Callers) == 0 {
			bad("rules[%d]: no callers", i)
		}
		if len(rf.Verbs) == 0 {
			bad("rules[%d]: no verbs", i)
		}
		if len(rf.Resources) == 0 {
			bad("rules[%d]: no resources", i)
		}
		for j, cp := range rf.Callers {
			c := str(cp)
			if err := checkPattern(c, false); err != nil {
				bad("rules[%d].callers[%d]: %w", i, j, err)
				continue
			}
			r.callers = append(r.callers, strings.Split(c, "/"))
		}
		for j, vp := range rf.Verbs {
			v := str(vp)
			bit, ok := verbBit(v)
			if !ok {
				bad("rules[%d].verbs[%d]: unknown verb %q (want %s, %s, %s or %s)", i, j, v, Read, Write, Delete, ManageRepositories)
				continue
			}
			r.verbs |= bit
		}
		for j, rp := range rf.Resources {
			res := str(rp)
			if err := checkPattern(res, true); err != nil {
				bad("rules[%d].resources[%d]: %w", i, j, err)
				continue
			}
			r.resources = append(r.resources, strings.Split(res, "/"))
		}
		p.rules = append(p.rules, r)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("invalid policy: %w", errors.Join(errs...))
	}
	return p, nil
}

// checkPattern validates a caller pattern or, when resource is set, a
// resource pattern.
func checkPattern(pat string, resource bool) error {
	if pat == "" {
		return errors.New("empty pattern")
	}
	if !utf8.ValidString(pat) {
		return fmt.Errorf("%q: invalid UTF-8", pat)
	}
	if strings.IndexFunc(pat, unicode.IsControl) >= 0 {
		return fmt.Errorf("%q: control character", pat)
	}
	segs := strings.Split(pat, "/")
	for _, seg := range segs {
		if seg != "**" && strings.Contains(seg, "**") {
			return fmt.Errorf("%q: \"**\" must be a whole segment (use \"*\" within a segment)", pat)
		}
		if resource && seg == "" {
			return fmt.Errorf("%q: empty segment (resource names have none)", pat)
		}
	}
	if n := len(segs); resource && n >= 2 && segs[n-2] == "secrets" && strings.ContainsFunc(segs[n-1], isLowerASCII) {
		return fmt.Errorf("%q: secret names are upper case in resource names", pat)
	}
	return nil
}

func isLowerASCII(r rune) bool { return 'a' <= r && r <= 'z' }

// Rules returns the number of rules.
func (p *Policy) Rules() int {
	if p == nil {
		return 0
	}
	return len(p.rules)
}

// Allow reports whether some rule matches caller, verb and resource. An
// empty caller or resource, or an unknown verb, is never allowed.
func (p *Policy) Allow(caller, verb, resource string) bool {
	if resource == "" {
		return false
	}
	return p.allow(caller, verb, strings.Split(resource, "/"), concrete)
}

// AllowSome reports whether some rule allows verb on some secret
// "{scope}/secrets/{NAME}", NAME being one non-empty segment of [A-Z0-9_]. It
// decides from the patterns, without enumerating names.
func (p *Policy) AllowSome(caller, verb, scope string) bool {
	return p.allowScope(caller, verb, scope, someName)
}

// AllowEvery reports whether the rules allow verb on every secret
// "{scope}/secrets/{NAME}": some rule's resource pattern has exactly "*"
// facing NAME, or a "**" covering it. It is a fast path for filtering a
// list: when it is false, check each name with Allow.
func (p *Policy) AllowEvery(caller, verb, scope string) bool {
	return p.allowScope(caller, verb, scope, everyName)
}

func (p *Policy) allowScope(caller, verb, scope string, mode nameMode) bool {
	if scope == "" {
		return false
	}
	// The value of the name segment is never read: matchPath treats the
	// last segment as a symbolic name.
	return p.allow(caller, verb, append(strings.Split(scope, "/"), "secrets", ""), mode)
}

func (p *Policy) allow(caller, verb string, resource []string, mode nameMode) bool {
	if p == nil || caller == "" {
		return false
	}
	bit, ok := verbBit(verb)
	if !ok {
		return false
	}
	var callerSegs []string // split on first use
	var steps int
	for i := range p.rules {
		r := &p.rules[i]
		if r.verbs&bit == 0 || !anyMatch(r.resources, resource, mode, &steps) {
			continue
		}
		if callerSegs == nil {
			callerSegs = strings.Split(caller, "/")
		}
		if anyMatch(r.callers, callerSegs, concrete, &steps) {
			return true
		}
	}
	return false
}

func anyMatch(patterns [][]string, s []string, mode nameMode, steps *int) bool {
	for _, pat := range patterns {
		if matchPath(pat, s, mode, steps) {
			return true
		}
	}
	return false
}
