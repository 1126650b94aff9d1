package service

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/upstream"
)

// The rules FuzzParsePut holds parsePut to, written apart from the parser
// from what the project documents. Where a rule comes from:
//
//	[readme]  README.md, "Rules the broker applies before anything goes upstream"
//	[gap]     README.md, "What the broker chose where GitHub leaves a gap"
//	[proto]   proto/secretbroker/v1/secret_service.proto (SecretService, PutSecretRequest)
//	[seed002] /work/shared/seeds/002_*.txt: encrypted_value's "Match pattern"
//	[names]   service/names.go doc comments: GitHub's login and repository name rules
//	[repos]   service/reponames.go: maxRepoNames
const (
	oracleMaxValue    = 48 * 1024 // [readme] "a value is 1 byte to 48 KB"; [proto] "at most 48 KB"
	oracleBoxOverhead = 32 + 16   // a sealed box: an ephemeral X25519 key and a Poly1305 tag
	oracleMaxName     = 4096      // [readme] "a resource name is at most 4,096 bytes as sent"
	oracleMaxRepos    = 1000      // [repos] names one request may give
)

var (
	oracleOrg     = regexp.MustCompile(`^[A-Za-z0-9-]{1,39}$`)                                                             // [names] organization login
	oracleOwner   = regexp.MustCompile(`^[A-Za-z0-9_-]{1,39}$`)                                                            // [names] owner login, "_" for EMU handles
	oracleRepo    = regexp.MustCompile(`^[A-Za-z0-9._-]{1,100}$`)                                                          // [names] repository name
	oracleSecret  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,254}$`)                                                   // [readme][proto] letters, digits, "_", no leading digit, at most 255
	oracleBase64  = regexp.MustCompile(`^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{4})$`) // [seed002]
	oracleVisible = []string{"all", "private", "selected"}                                                                 // [proto] visibility enum
)

// oracleRepoName: [names] not "." or "..", and without the .git extension.
func oracleRepoName(r string) bool {
	return oracleRepo.MatchString(r) && r != "." && r != ".." && !strings.HasSuffix(strings.ToLower(r), ".git")
}

// oracleEnvironment: [proto] the segment is URL-escaped exactly once;
// [readme] 1 to 255 characters of UTF-8 without control or invisible
// formatting characters, not "." or "..", nor holding them between slashes.
func oracleEnvironment(seg string) (string, bool) {
	env, err := url.PathUnescape(seg)
	if err != nil || !utf8.ValidString(env) || env == "" || utf8.RuneCountInString(env) > 255 {
		return "", false
	}
	for _, part := range strings.Split(env, "/") {
		if part == "." || part == ".." {
			return "", false
		}
	}
	for _, r := range env {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return "", false
		}
	}
	return env, true
}

// oracleSecretName splits a secret's resource name by the forms [proto]
// lists: orgs/{org}/{app}, repos/{owner}/{repo}/{app} and
// repos/{owner}/{repo}/environments/{environment} (Actions only), then
// "/secrets/{SECRET_NAME}", stored upper-case [readme].
func oracleSecretName(s string) (upstream.Scope, string, bool) {
	if len(s) > oracleMaxName || !utf8.ValidString(s) {
		return upstream.Scope{}, "", false
	}
	segs := strings.Split(s, "/")
	n := len(segs)
	if n < 5 || segs[n-2] != "secrets" {
		return upstream.Scope{}, "", false
	}
	secret := segs[n-1]
	if !oracleSecret.MatchString(secret) || strings.HasPrefix(strings.ToUpper(secret), "GITHUB_") {
		return upstream.Scope{}, "", false
	}
	parent := segs[:n-2]
	app := func(a string) (upstream.App, bool) { return upstream.App(a), a == "actions" || a == "agents" }
	var scope upstream.Scope
	switch {
	case len(parent) == 3 && parent[0] == "orgs":
		a, ok := app(parent[2])
		if !ok || !oracleOrg.MatchString(parent[1]) {
			return upstream.Scope{}, "", false
		}
		scope = upstream.Scope{App: a, Org: parent[1]}
	case len(parent) == 4 && parent[0] == "repos":
		a, ok := app(parent[3])
		if !ok || !oracleOwner.MatchString(parent[1]) || !oracleRepoName(parent[2]) {
			return upstream.Scope{}, "", false
		}
		scope = upstream.Scope{App: a, Owner: parent[1], Repo: parent[2]}
	case len(parent) == 5 && parent[0] == "repos" && parent[3] == "environments":
		env, ok := oracleEnvironment(parent[4])
		if !ok || !oracleOwner.MatchString(parent[1]) || !oracleRepoName(parent[2]) {
			return upstream.Scope{}, "", false
		}
		scope = upstream.Scope{App: upstream.Actions, Owner: parent[1], Repo: parent[2], Environment: env}
	default:
		return upstream.Scope{}, "", false
	}
	return scope, strings.ToUpper(secret), true
}

// putCase is one fuzzed PutSecret request and the valueOptional it is
// parsed with.
type putCase struct {
	req        *secretbrokerv1.PutSecretRequest
	optional   func(upstream.Scope) bool // nil: a batch item's parse
	value      string                    // the secret material the request carries ("" for none)
	hasPayload int                       // 0: none, 1: value, 2: encrypted_value
}

// oracleBreaks returns the first documented rule c's request breaks, ""
// for none.
func oracleBreaks(c putCase) string {
	req := c.req
	scope, _, ok := oracleSecretName(req.GetName())
	if !ok {
		return "name"
	}
	switch c.hasPayload {
	case 1:
		// [readme] 1 byte to 48 KB; [proto] key_id goes with encrypted_value.
		if v := req.GetValue(); len(v) < 1 || len(v) > oracleMaxValue {
			return "value size"
		}
		if req.GetKeyId() != "" {
			return "key_id with value"
		}
	case 2:
		// [seed002] GitHub's base64 pattern; a sealed box of a 1 byte to
		// 48 KB value [readme]; [proto] "Requires key_id".
		enc := req.GetEncryptedValue()
		if !oracleBase64.MatchString(enc) {
			return "encrypted_value base64"
		}
		raw, err := base64.StdEncoding.DecodeString(enc)
		if err != nil || base64.StdEncoding.EncodeToString(raw) != enc {
			return "encrypted_value not canonical base64"
		}
		if len(raw) < oracleBoxOverhead+1 || len(raw) > oracleMaxValue+oracleBoxOverhead {
			return "encrypted_value size"
		}
		if req.GetKeyId() == "" {
			return "encrypted_value without key_id"
		}
	default:
		// [proto][gap] no value: an organization secret whose GitHub
		// leaves it optional (valueOptional), with visibility, without
		// key_id; never a batch item (optional nil).
		if c.optional == nil || !scope.IsOrg() || !c.optional(scope) {
			return "no value"
		}
		if req.GetKeyId() != "" {
			return "key_id without encrypted_value"
		}
		if req.GetVisibility() == "" {
			return "settings-only without visibility"
		}
	}
	vis, ids, names := req.GetVisibility(), req.GetSelectedRepositoryIds(), req.GetSelectedRepositories()
	if !scope.IsOrg() {
		// [readme] visibility and ids apply to organization secrets
		// only; [proto] so do the repositories by name.
		if vis != "" || len(ids) > 0 || len(names) > 0 {
			return "org-only field on a non-org secret"
		}
		return ""
	}
	if vis != "" && !slices.Contains(oracleVisible, vis) {
		return "visibility enum"
	}
	// [readme] "ids only with selected"; [proto] names "with visibility
	// selected" too; ids are GitHub repository ids, positive.
	if len(ids) > 0 && vis != "selected" {
		return "ids without selected"
	}
	for _, id := range ids {
		if id <= 0 {
			return "id not positive"
		}
	}
	if len(names) > 0 && vis != "selected" {
		return "names without selected"
	}
	if len(names) > oracleMaxRepos {
		return "too many names"
	}
	for _, n := range names {
		if !oracleRepoName(n) {
			return "repository name"
		}
	}
	return ""
}

// fuzzPutCase builds the request the fuzzer's inputs stand for. kind: 0
// no value, 1 value (payload then pad bytes "v"), 2 encrypted_value as
// given, 3 encrypted_value the base64 of payload then pad zero bytes.
// ids: 8 bytes each, big-endian. names: comma separated, "" for none.
// allow: bit 0 a valueOptional at all (else a batch item's nil), bit 1
// it allows organization Actions scopes, bit 2 organization Agents
// scopes, bit 3 every other scope as well (parsePut must still refuse
// them).
func fuzzPutCase(name string, kind uint8, payload string, pad uint16, keyID, visibility string, ids []byte, names string, force bool, allow uint8) putCase {
	req := &secretbrokerv1.PutSecretRequest{Name: name, KeyId: keyID, Visibility: visibility, Force: force}
	c := putCase{req: req}
	switch kind % 4 {
	case 1:
		c.value = payload + strings.Repeat("v", int(pad))
		req.Payload = &secretbrokerv1.PutSecretRequest_Value{Value: c.value}
		c.hasPayload = 1
	case 2:
		c.value = payload
		req.Payload = &secretbrokerv1.PutSecretRequest_EncryptedValue{EncryptedValue: payload}
		c.hasPayload = 2
	case 3:
		c.value = base64.StdEncoding.EncodeToString(append([]byte(payload), make([]byte, pad)...))
		req.Payload = &secretbrokerv1.PutSecretRequest_EncryptedValue{EncryptedValue: c.value}
		c.hasPayload = 2
	}
	for len(ids) >= 8 {
		req.SelectedRepositoryIds = append(req.SelectedRepositoryIds, int64(binary.BigEndian.Uint64(ids)))
		ids = ids[8:]
	}
	if names != "" {
		req.SelectedRepositories = strings.Split(names, ",")
	}
	if allow&1 != 0 {
		c.optional = func(s upstream.Scope) bool {
			switch {
			case !s.IsOrg():
				return allow&8 != 0
			case s.App == upstream.Agents:
				return allow&4 != 0
			}
			return allow&2 != 0
		}
	}
	return c
}

func idBytes(ids ...int64) []byte {
	var b []byte
	for _, id := range ids {
		b = binary.BigEndian.AppendUint64(b, uint64(id))
	}
	return b
}

const planted = "PLANTED-SECRET-VALUE-7f3a9c"

// FuzzParsePut: parsePut (PutSecret's checks that need no upstream call,
// and every BatchPutSecrets item's, with valueOptional nil) accepts a
// request exactly when it keeps every documented rule (oracleBreaks), and
// then plans exactly the request's values; a refusal is INVALID_ARGUMENT
// and quotes no 8-byte piece of the value or encrypted value that the
// request does not also carry in a field the message may quote.
func FuzzParsePut(f *testing.F) {
	sealed := func(n int) string { return base64.StdEncoding.EncodeToString(make([]byte, n)) }
	names := []string{
		"orgs/acme/actions/secrets/DEPLOY_TOKEN",
		"orgs/acme/agents/secrets/model_key",
		"repos/octo-org/hello-world/actions/secrets/X",
		"repos/octo_emu/hello.world/agents/secrets/_A1",
		"repos/octo-org/hello-world/environments/prod%2Feu/secrets/DB",
		"repos/octo-org/hello-world/environments/prod%252Feu/secrets/DB",
		"repos/octo-org/hello-world/environments/%2E%2E/secrets/DB",
		"repos/octo-org/hello-world/environments/a%2F..%2Fb/secrets/DB",
		"repos/octo-org/hello-world/environments/a%E2%80%AEb/secrets/DB",
		"repos/octo-org/hello-world/environments/secrets/secrets/DB",
		"repos/octo-org/hello.git/actions/secrets/DB",
		"orgs/acme/actions/secrets/GITHUB_TOKEN",
		"orgs/acme/actions/secrets/github_token",
		"orgs/acme/actions/secrets/1ABC",
		"orgs/ac_me/actions/secrets/A",
		"orgs/acme/actions/secrets/" + planted[:7] + "_" + "X",
		"orgs/acme/actions/secrets/" + strings.Repeat("A", 256),
		"orgs/" + planted + "/actions/secrets/A",
	}
	type seed struct {
		kind    uint8
		payload string
		pad     uint16
		keyID   string
	}
	payloads := []seed{
		{0, "", 0, ""},
		{0, "", 0, "012345678912345678"},
		{1, planted, 0, ""},
		{1, "", 0, ""},
		{1, "", 1, ""},
		{1, planted, oracleMaxValue - uint16(len(planted)), ""},
		{1, planted, oracleMaxValue - uint16(len(planted)) + 1, ""},
		{1, planted, 0, planted},
		{2, sealed(oracleBoxOverhead + 1), 0, "012345678912345678"},
		{2, sealed(oracleBoxOverhead + 1), 0, ""},
		{2, sealed(oracleBoxOverhead), 0, "k"},
		{2, sealed(oracleBoxOverhead+1) + "\n", 0, "k"},
		{2, "!!" + planted, 0, "k"},
		{2, "QUJD" + strings.Repeat("A", 60) + "B=", 0, "k"},
		{2, "QUJDRA", 0, "k"},
		{2, strings.TrimSuffix(sealed(oracleBoxOverhead+1), "A==") + "B==", 0, "k"}, // nonzero padding bits
		{3, planted + strings.Repeat("-", 30), 0, "k"},
		{3, planted, oracleMaxValue + oracleBoxOverhead - uint16(len(planted)), "k"},
		{3, planted, oracleMaxValue + oracleBoxOverhead - uint16(len(planted)) + 1, "k"},
	}
	vis := []string{"", "all", "private", "selected", "Selected", "public", planted}
	idSets := [][]byte{nil, idBytes(1296269), idBytes(0), idBytes(-1), idBytes(1<<63 - 1), idBytes(-1 << 63), {1, 2, 3}}
	repoNames := []string{"", "hello-world", "hello-world,other.repo", "octo/hello", ".", "x.git", ",", planted}
	i := 0
	for _, n := range names {
		for _, p := range payloads {
			v, ids, rn := vis[i%len(vis)], idSets[i/2%len(idSets)], repoNames[i/3%len(repoNames)]
			if strings.HasPrefix(n, "orgs/") && i%4 == 0 {
				v, rn = "selected", "hello-world"
			}
			f.Add(n, p.kind, p.payload, p.pad, p.keyID, v, ids, rn, i%5 == 0, uint8(i%16))
			i++
		}
	}
	// Settings-only puts near valid: each allow mask, each visibility.
	for allow := range uint8(16) {
		for _, v := range vis {
			f.Add("orgs/acme/actions/secrets/A", uint8(0), "", uint16(0), "", v, idBytes(7), "", false, allow)
			f.Add("orgs/acme/agents/secrets/A", uint8(0), "", uint16(0), "", v, []byte(nil), "hello-world", true, allow)
			f.Add("repos/o/r/actions/secrets/A", uint8(0), "", uint16(0), "", v, []byte(nil), "", false, allow)
		}
	}
	f.Fuzz(func(t *testing.T, name string, kind uint8, payload string, pad uint16, keyID, visibility string, ids []byte, repos string, force bool, allow uint8) {
		c := fuzzPutCase(name, kind, payload, pad, keyID, visibility, ids, repos, force, allow)
		p, err := parsePut(c.req, c.optional)
		broken := oracleBreaks(c)
		if err != nil {
			if broken == "" {
				t.Fatalf("refused a request that keeps every documented rule: %v", err)
			}
			checkPutError(t, c, err)
			return
		}
		if broken != "" {
			t.Fatalf("accepted a request that breaks the rule on %s", broken)
		}
		scope, secret, _ := oracleSecretName(name)
		switch {
		case p.scope != scope || p.name != secret:
			t.Fatalf("plan is for %+v %q, want %+v %q", p.scope, p.name, scope, secret)
		case p.visibility != visibility:
			t.Fatalf("plan's visibility %q, want %q", p.visibility, visibility)
		case !slices.Equal(p.repoIDs, c.req.GetSelectedRepositoryIds()) || !slices.Equal(p.repoNames, c.req.GetSelectedRepositories()):
			t.Fatalf("plan's selection %v %q, want %v %q", p.repoIDs, p.repoNames, c.req.GetSelectedRepositoryIds(), c.req.GetSelectedRepositories())
		case p.selectionKept || p.keptKeyID != "":
			t.Fatal("plan has a selection or key kept before any upstream call")
		case p.settingsOnly != (c.hasPayload == 0):
			t.Fatalf("plan settingsOnly %v for payload kind %d", p.settingsOnly, c.hasPayload)
		}
		switch c.hasPayload {
		case 1:
			if !bytes.Equal(p.plaintext, []byte(c.value)) || p.sealed != "" || p.keyID != "" {
				t.Fatal("plan of a value does not hold exactly the value")
			}
		case 2:
			if p.plaintext != nil || p.sealed != c.value || string(p.keyID) != keyID {
				t.Fatal("plan of an encrypted_value does not hold exactly it and its key_id")
			}
		default:
			if p.plaintext != nil || p.sealed != "" || p.keyID != "" {
				t.Fatal("plan of a put without a value holds one")
			}
		}
	})
}

// checkPutError: a refusal is INVALID_ARGUMENT, and its text holds no
// 8-byte piece of the value or encrypted value c carries, unless the
// piece is also in a field the message may quote (name, key_id,
// visibility, repository names).
func checkPutError(t *testing.T, c putCase, err error) {
	t.Helper()
	st := statusOf(err)
	if st.Code() != codes.InvalidArgument {
		t.Fatalf("refused with %v, want INVALID_ARGUMENT: %v", st.Code(), err)
	}
	if len(c.value) < 8 {
		return
	}
	quotable := strings.Join(append([]string{c.req.GetName(), c.req.GetKeyId(), c.req.GetVisibility()}, c.req.GetSelectedRepositories()...), "\x00")
	// The message's own words are not the value's: the same request with
	// the value's bytes replaced (its length and shape kept) is refused
	// in the same words.
	other := proto.CloneOf(c.req)
	switch c.hasPayload {
	case 1:
		other.Payload = &secretbrokerv1.PutSecretRequest_Value{Value: strings.Repeat("\x01", len(c.value))}
	case 2:
		other.Payload = &secretbrokerv1.PutSecretRequest_EncryptedValue{EncryptedValue: strings.Map(func(r rune) rune {
			if r < utf8.RuneSelf && (isASCIIAlnum(r) || r == '+' || r == '/') {
				return 'A'
			}
			return r
		}, c.value)}
	}
	if _, err := parsePut(other, c.optional); err != nil {
		quotable += "\x00" + err.Error()
	}
	for _, msg := range []string{err.Error(), st.Message()} {
		for i := 0; i+8 <= len(msg); i++ {
			w := msg[i : i+8]
			if strings.Contains(c.value, w) && !strings.Contains(quotable, w) {
				t.Fatalf("the error quotes %q of the value: %s", w, msg)
			}
		}
	}
}

// FuzzBatchRepeats: two valid items of a batch (BatchPutSecrets, and
// BatchDeleteSecrets' names) are refused as repeats (repeats of their
// secretKeys) exactly when they name the same secret: README.md
// ("BatchPutSecrets answers"): "organization, owner and repository names
// compared without case, as GitHub does"; the secret name is stored
// upper-case ([readme] rules); environment names are matched without case
// by GitHub ("Environment names are not case sensitive", GitHub's docs,
// "Managing environments for deployment"). b is a with the case of the
// letters flip selects flipped, or other when other is set.
func FuzzBatchRepeats(f *testing.F) {
	f.Add("orgs/acme/actions/secrets/A", uint64(0), "", false)
	f.Add("orgs/Acme/actions/secrets/a", uint64(0b1011), "", false)
	f.Add("orgs/acme/actions/secrets/A", uint64(0), "orgs/acme/agents/secrets/A", true)
	f.Add("repos/Octo/Hello.World/actions/secrets/tok", uint64(0xffff_ffff), "", false)
	f.Add("repos/o/r/environments/Prod%2Feu/secrets/A", uint64(1<<23), "", false)
	f.Add("repos/o/r/environments/prod%2feu/secrets/A", uint64(0), "repos/o/r/environments/prod%2Feu/secrets/A", true)
	f.Add("repos/o/r/environments/\u212a/secrets/A", uint64(0), "repos/o/r/environments/k/secrets/A", true)
	f.Add("repos/o/r/actions/secrets/A", uint64(0), "repos/o/r/environments/actions/secrets/A", true)
	f.Fuzz(func(t *testing.T, a string, flip uint64, other string, useOther bool) {
		b := other
		if !useOther {
			bs := []byte(a)
			for i := range min(len(bs), 64) {
				if flip&(1<<i) != 0 && ('a' <= bs[i] && bs[i] <= 'z' || 'A' <= bs[i] && bs[i] <= 'Z') {
					bs[i] ^= 0x20
				}
			}
			b = string(bs)
		}
		sa, na, oka := oracleSecretName(a)
		sb, nb, okb := oracleSecretName(b)
		if !oka || !okb {
			return
		}
		pa, errA := parsePut(&secretbrokerv1.PutSecretRequest{Name: a, Payload: &secretbrokerv1.PutSecretRequest_Value{Value: "v"}}, nil)
		pb, errB := parsePut(&secretbrokerv1.PutSecretRequest{Name: b, Payload: &secretbrokerv1.PutSecretRequest_Value{Value: "v"}}, nil)
		if errA != nil || errB != nil {
			t.Fatalf("valid names refused: %v, %v", errA, errB)
		}
		envA, envB := sa.Environment, sb.Environment
		asciiFold := func(s string) string {
			return strings.Map(func(r rune) rune {
				if 'A' <= r && r <= 'Z' {
					return r + 'a' - 'A'
				}
				return r
			}, s)
		}
		if strings.EqualFold(envA, envB) != (asciiFold(envA) == asciiFold(envB)) {
			// Whether GitHub folds a non-ASCII case pair (the Kelvin
			// sign, "Ä") is not documented: no property.
			return
		}
		same := sa.App == sb.App && strings.EqualFold(sa.Org, sb.Org) && strings.EqualFold(sa.Owner, sb.Owner) &&
			strings.EqualFold(sa.Repo, sb.Repo) && strings.EqualFold(envA, envB) && na == nb
		got := repeats([]string{secretKey(pa.scope, pa.name), secretKey(pb.scope, pb.name)})
		if same != (len(got) == 2) || len(got) == 1 {
			t.Fatalf("%q and %q: repeats %v, same secret %v", a, b, got, same)
		}
	})
}
