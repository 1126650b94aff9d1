package identity

import (
	"bytes"
	"context"
	"crypto"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"
	"unicode"
	"unicode/utf8"

	jose "github.com/go-jose/go-jose/v4"
)

// fuzzIssuer is the key material the JWT fuzz tests trust: a JWKS file of
// four keys with kids (RS256, PS256, ES256, EdDSA), and a JWKS file of a
// single ES256 key without one, for tokens without a kid.
type fuzzIssuer struct {
	rsa, ps, ec, ed, single keyPair
	multiPath, singlePath   string
	multiKeys, singleKeys   []jose.JSONWebKey
}

func newFuzzIssuer(f *testing.F) *fuzzIssuer {
	f.Helper()
	fi := &fuzzIssuer{
		rsa:    newRSAKey(f, "rsa-1", 2048),
		ps:     newRSAKey(f, "ps-1", 2048),
		ec:     newECKey(f, "ec-1"),
		ed:     newEdKey(f, "ed-1"),
		single: newECKey(f, ""),
	}
	fi.ps.alg = jose.PS256
	fi.multiKeys = []jose.JSONWebKey{fi.rsa.jwk(), fi.ps.jwk(), fi.ec.jwk(), fi.ed.jwk()}
	fi.singleKeys = []jose.JSONWebKey{fi.single.jwk()}
	dir := f.TempDir()
	fi.multiPath = filepath.Join(dir, "multi.json")
	fi.singlePath = filepath.Join(dir, "single.json")
	if err := os.WriteFile(fi.multiPath, jwksOf(f, fi.multiKeys...), 0o600); err != nil {
		f.Fatal(err)
	}
	if err := os.WriteFile(fi.singlePath, jwksOf(f, fi.singleKeys...), 0o600); err != nil {
		f.Fatal(err)
	}
	return fi
}

// authenticateErrors are the errors Authenticate may return for a JWKS
// file that never changes; each is a fixed text.
var authenticateErrors = []error{
	errTokenEmpty, errTokenTooLarge, errTokenMalformed, errTokenAlgorithm,
	errTokenNoKeyID, errTokenUnknownKey, errTokenKeyMismatch, errTokenSignature,
	errTokenClaims, errTokenIssuer, errTokenAudience, errTokenNoExpiry,
	errTokenExpired, errTokenNotYetValid, errTokenIssuedLater, errTokenNoSubject,
	errTokenSubject,
}

// verifiers returns verifiers of fi's two JWKS files; call it in a
// synctest bubble, where the clock stands at t0.
func (fi *fuzzIssuer) verifiers(t *testing.T) map[string]*JWTVerifier {
	t.Helper()
	vs := map[string]*JWTVerifier{}
	for name, path := range map[string]string{"multi": fi.multiPath, "single": fi.singlePath} {
		v, err := NewJWTVerifier(context.Background(), JWTConfig{Issuer: testIssuer, Audience: testAudience, JWKSFile: path})
		if err != nil {
			t.Fatalf("NewJWTVerifier(%s): %v", name, err)
		}
		vs[name] = v
	}
	return vs
}

func (fi *fuzzIssuer) keysOf(name string) []jose.JSONWebKey {
	if name == "single" {
		return fi.singleKeys
	}
	return fi.multiKeys
}

// checkAuthenticate authenticates token with v (trusting keys) at t0 and
// fails unless the result is consistent: an error is one of the fixed
// errors and comes without a caller; an accepted token verifies under one
// of keys by go-jose itself and its claims pass an independent check at
// t0, and the caller is "jwt:" and its sub.
func checkAuthenticate(t *testing.T, v *JWTVerifier, keys []jose.JSONWebKey, token string) {
	t.Helper()
	caller, err := v.Authenticate(context.Background(), token)
	if err != nil {
		if caller != "" {
			t.Errorf("Authenticate returned caller %q with error %v", caller, err)
		}
		known := slices.ContainsFunc(authenticateErrors, func(e error) bool { return errors.Is(err, e) && err.Error() == e.Error() })
		if !known {
			t.Errorf("Authenticate error %q is not one of the fixed errors", err)
		}
		// A fixed text cannot show the token; a JWT-shaped one (the fixed
		// texts have no ".") makes that plain.
		if strings.Contains(token, ".") && strings.Contains(err.Error(), token) {
			t.Errorf("Authenticate error %q contains the token", err)
		}
		return
	}
	sub, why := independentlyValid(token, keys, time.Now())
	if why != "" {
		t.Fatalf("Authenticate accepted %q as %q, but %s", token, caller, why)
	}
	if caller != prefixJWT+sub {
		t.Fatalf("Authenticate accepted %q as %q, want %q", token, caller, prefixJWT+sub)
	}
}

// independentlyValid checks token as the verifier should, without its
// code: one JWS signature with an allowed asymmetric algorithm, made by the
// key its kid names (or, without a kid, by the only key), and claims that
// pass at now with the default leeway. It returns the sub claim, or why the
// token is not valid.
func independentlyValid(token string, keys []jose.JSONWebKey, now time.Time) (sub, why string) {
	algs := []jose.SignatureAlgorithm{
		jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
		jose.ES256, jose.ES384, jose.ES512, jose.EdDSA,
	}
	jws, err := jose.ParseSignedCompact(token, algs)
	if err != nil {
		return "", "go-jose does not parse it: " + err.Error()
	}
	if len(jws.Signatures) != 1 {
		return "", "it has several signatures"
	}
	kid := jws.Signatures[0].Header.KeyID
	var payload []byte
	for _, k := range keys {
		if kid != k.KeyID && (kid != "" || len(keys) != 1) {
			continue
		}
		if p, err := jws.Verify(k.Key); err == nil {
			payload = p
			break
		}
	}
	if payload == nil {
		return "", "no trusted key verifies it"
	}

	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	var claims map[string]any
	if err := dec.Decode(&claims); err != nil {
		return "", "its payload is not a JSON object: " + err.Error()
	}
	if claims["iss"] != testIssuer {
		return "", "its iss is not the issuer"
	}
	switch aud := claims["aud"].(type) {
	case string:
		if aud != testAudience {
			return "", "its aud is not the audience"
		}
	case []any:
		if !slices.Contains(aud, any(testAudience)) {
			return "", "its aud does not hold the audience"
		}
	default:
		return "", "its aud is neither a string nor a list"
	}
	// NumericDates are truncated to whole seconds: exp must not be before
	// now-leeway, nbf and iat not one second or more after now+leeway.
	date := func(name string, required bool, ok func(f float64) bool) string {
		v, present := claims[name]
		if !present || v == nil {
			if required {
				return "it has no " + name
			}
			return ""
		}
		n, isNum := v.(json.Number)
		if !isNum {
			return "its " + name + " is not a number"
		}
		f, err := n.Float64()
		if err != nil || !ok(f) {
			return "its " + name + " " + n.String() + " is out of range at " + now.String()
		}
		return ""
	}
	lee := defaultJWTLeeway
	for _, why := range []string{
		date("exp", true, func(f float64) bool { return f >= float64(now.Add(-lee).Unix()) }),
		date("nbf", false, func(f float64) bool { return f < float64(now.Add(lee).Unix()+1) }),
		date("iat", false, func(f float64) bool { return f < float64(now.Add(lee).Unix()+1) }),
	} {
		if why != "" {
			return "", why
		}
	}
	sub, _ = claims["sub"].(string)
	switch {
	case sub == "":
		return "", "it has no sub"
	case len(sub) > maxSubjectLen, !utf8.ValidString(sub), strings.ContainsFunc(sub, unicode.IsControl):
		return "", "its sub is not usable"
	}
	return sub, ""
}

// FuzzAuthenticate: no token string panics Authenticate, every refusal is
// one of its fixed errors (so none shows the token), and every accepted
// token verifies under a trusted key by go-jose itself, has claims valid
// at the (fake) time of the check, and names the caller its sub says.
func FuzzAuthenticate(f *testing.F) {
	fi := newFuzzIssuer(f)
	valid := claimsAt(t0, nil)
	with := func(edit func(c map[string]any)) map[string]any { return claimsAt(t0, edit) }
	good := fi.rsa.sign(f, valid)
	parts := strings.Split(good, ".")
	b64 := base64.RawURLEncoding.EncodeToString
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		f.Fatal(err)
	}
	seeds := []string{
		good,
		fi.ps.sign(f, valid),
		fi.ec.sign(f, valid),
		fi.ed.sign(f, valid),
		fi.single.sign(f, valid),
		fi.ed.sign(f, with(func(c map[string]any) { c["aud"] = testAudience })),
		fi.ed.sign(f, with(func(c map[string]any) { c["exp"] = t0.Add(-59 * time.Second).Unix() })),
		fi.ed.sign(f, with(func(c map[string]any) { c["exp"] = t0.Add(-61 * time.Second).Unix() })),
		fi.ed.sign(f, with(func(c map[string]any) { c["nbf"] = t0.Add(61 * time.Second).Unix() })),
		fi.ed.sign(f, with(func(c map[string]any) { c["iat"] = float64(t0.Unix()) + 60.5 })),
		fi.ed.sign(f, with(func(c map[string]any) { delete(c, "exp") })),
		fi.ed.sign(f, with(func(c map[string]any) { c["exp"] = nil })),
		fi.ed.sign(f, with(func(c map[string]any) { c["iss"] = "https://evil.example" })),
		fi.ed.sign(f, with(func(c map[string]any) { c["aud"] = []any{"other", 7} })),
		fi.ed.sign(f, with(func(c map[string]any) { c["sub"] = "a\u0085b" })),
		fi.ed.sign(f, with(func(c map[string]any) { c["sub"] = strings.Repeat("s", maxSubjectLen+1) })),
		signToken(f, jose.RS256, other, "rsa-1", valid),
		signToken(f, jose.RS256, other, "", valid),
		signToken(f, jose.RS256, fi.ps.priv, "ps-1", valid),
		signToken(f, jose.HS256, []byte(strings.Repeat("k", 32)), "rsa-1", valid),
		b64([]byte(`{"alg":"none","kid":"rsa-1"}`)) + "." + parts[1] + ".",
		parts[0] + "." + b64([]byte(`{"sub":"admin"}`)) + "." + parts[2],
		parts[0] + "." + parts[1],
		parts[0] + ".." + parts[2],
		good + "=",
		" " + good,
		strings.ToUpper(good),
		`{"protected":"` + parts[0] + `","payload":"` + parts[1] + `","signature":"` + parts[2] + `"}`,
		"sbt_" + plantedClaim,
		"",
		"...",
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, token string) {
		synctest.Test(t, func(t *testing.T) {
			for name, v := range fi.verifiers(t) {
				checkAuthenticate(t, v, fi.keysOf(name), token)
			}
		})
	})
}

// FuzzAuthenticateClaims signs any payload with a trusted key, so that the
// fuzzer reaches the claims checks: an accepted token's claims must pass
// the independent check at the (fake) time of the check.
func FuzzAuthenticateClaims(f *testing.F) {
	fi := newFuzzIssuer(f)
	for _, c := range []map[string]any{
		claimsAt(t0, nil),
		claimsAt(t0, func(c map[string]any) { c["aud"] = testAudience }),
		claimsAt(t0, func(c map[string]any) { c["exp"] = float64(t0.Unix()) - 60.5 }),
		claimsAt(t0, func(c map[string]any) { c["nbf"] = 1e300 }),
		claimsAt(t0, func(c map[string]any) { c["exp"] = 9223372036854775807 }),
		claimsAt(t0, func(c map[string]any) { c["sub"] = "\u2028" }),
	} {
		data, err := json.Marshal(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, false)
		f.Add(data, true)
	}
	f.Add([]byte(`{"iss":"`+testIssuer+`","aud":"`+testAudience+`","sub":"a","exp":946684800,"sub":"b"}`), false)
	f.Add([]byte(`{"iss":"`+testIssuer+`","aud":"`+testAudience+`","Sub":"a","sub":"b","exp":9.466848e8}`), false)
	f.Add([]byte(`{"iss":"`+testIssuer+`","aud":["`+testAudience+`"],"sub":"\ud800","exp":946684800}`), false)
	f.Add([]byte(`null`), false)
	f.Add([]byte(`[]`), true)
	f.Fuzz(func(t *testing.T, payload []byte, noKid bool) {
		key, name := fi.ed, "multi"
		if noKid {
			key, name = fi.single, "single"
		}
		opts := (&jose.SignerOptions{}).WithType("JWT")
		if key.kid != "" {
			opts = opts.WithHeader(jose.HeaderKey("kid"), key.kid)
		}
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: key.alg, Key: key.priv}, opts)
		if err != nil {
			t.Fatal(err)
		}
		jws, err := signer.Sign(payload)
		if err != nil {
			t.Fatal(err)
		}
		token, err := jws.CompactSerialize()
		if err != nil {
			t.Fatal(err)
		}
		synctest.Test(t, func(t *testing.T) {
			checkAuthenticate(t, fi.verifiers(t)[name], fi.keysOf(name), token)
		})
	})
}

// FuzzParseJWKS: no document panics parseJWKS; it returns keys or an
// error, never both or neither; every key is public and usable, can
// verify some allowed algorithm, and came from the document; and the keys
// it returns, written as a JWKS, parse to the same keys.
func FuzzParseJWKS(f *testing.F) {
	rsaKey := newRSAKey(f, "rsa-1", 2048)
	small := newRSAKey(f, "small", 1024)
	ec := newECKey(f, "ec-1")
	ed := newEdKey(f, "ed-1")
	p384 := keyPair{alg: jose.ES384, priv: mustEC(f, elliptic.P384()), kid: "ec-384"}
	privateJWK := jose.JSONWebKey{Key: ec.priv, KeyID: "with-d", Algorithm: string(jose.ES256), Use: "sig"}
	privateDoc, err := json.Marshal(map[string]any{"keys": []jose.JSONWebKey{privateJWK}})
	if err != nil {
		f.Fatal(err)
	}
	one := func(k jose.JSONWebKey) []byte { return jwksOf(f, k) }
	edit := func(k jose.JSONWebKey, change func(m map[string]any)) []byte {
		data, err := k.MarshalJSON()
		if err != nil {
			f.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(data, &m); err != nil {
			f.Fatal(err)
		}
		change(m)
		doc, err := json.Marshal(map[string]any{"keys": []any{m}})
		if err != nil {
			f.Fatal(err)
		}
		return doc
	}
	for _, seed := range [][]byte{
		jwksOf(f, rsaKey.jwk(), ec.jwk(), ed.jwk(), p384.jwk()),
		one(small.jwk()),
		privateDoc,
		mergeJWKS(f, one(ec.jwk()), one(ec.jwk())),
		edit(ec.jwk(), func(m map[string]any) { m["use"] = "enc" }),
		edit(ec.jwk(), func(m map[string]any) { m["alg"] = "HS256" }),
		edit(ec.jwk(), func(m map[string]any) { m["alg"] = "RS256" }),
		edit(ec.jwk(), func(m map[string]any) { m["alg"] = "ES384" }),
		edit(ed.jwk(), func(m map[string]any) { m["alg"] = "PS256" }),
		edit(rsaKey.jwk(), func(m map[string]any) { m["alg"] = "EdDSA" }),
		edit(ec.jwk(), func(m map[string]any) { m["crv"] = "P-224" }),
		edit(ec.jwk(), func(m map[string]any) { m["x"] = "AAAA" }),
		edit(ed.jwk(), func(m map[string]any) { m["x"] = "AAAA" }),
		edit(rsaKey.jwk(), func(m map[string]any) { m["e"] = "AA" }),
		edit(rsaKey.jwk(), func(m map[string]any) { m["kty"] = "oct"; m["k"] = "c2VjcmV0" }),
		[]byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`),
		[]byte(`{"keys":[null, 1, "x", []]}`),
		[]byte(`{"keys":{}}`),
		[]byte(`{"keys":[]}`),
		[]byte(`{"keys":[],"keys":[]}`),
		[]byte(`[]`),
		[]byte(`null`),
		[]byte(``),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, err := parseJWKS(data)
		if err != nil {
			if keys != nil {
				t.Errorf("parseJWKS returned %d keys and error %v", len(keys), err)
			}
			return
		}
		if len(keys) == 0 {
			t.Fatal("parseJWKS returned no key and no error")
		}
		// (A map, not a struct: encoding/json matches struct fields
		// regardless of case, go-jose's parser does not.)
		var doc map[string]json.RawMessage
		var docKeys []json.RawMessage
		if json.Unmarshal(data, &doc) == nil && json.Unmarshal(doc["keys"], &docKeys) == nil && len(keys) > len(docKeys) {
			t.Errorf("parseJWKS returned %d keys from a document of %d", len(keys), len(docKeys))
		}
		for i, k := range keys {
			if !k.IsPublic() {
				t.Errorf("keys[%d] (kid %q) is not a public key", i, k.KeyID)
			}
			if !usableKey(k) {
				t.Errorf("keys[%d] (kid %q) is not usable", i, k.KeyID)
			}
			if !slices.ContainsFunc(allowedAlgorithms, func(a jose.SignatureAlgorithm) bool { return keyFits(k, string(a)) }) {
				t.Errorf("keys[%d] (kid %q, alg %q, %T) fits no allowed algorithm", i, k.KeyID, k.Algorithm, k.Key)
			}
		}
		again, err := parseJWKS(jwksOf(t, keys...))
		if err != nil {
			t.Fatalf("parseJWKS of its own keys: %v", err)
		}
		if len(again) != len(keys) {
			t.Fatalf("parseJWKS of its own %d keys returned %d", len(keys), len(again))
		}
		for i := range keys {
			a, b := thumbprint(t, keys[i]), thumbprint(t, again[i])
			if a != b || keys[i].KeyID != again[i].KeyID || keys[i].Algorithm != again[i].Algorithm || keys[i].Use != again[i].Use {
				t.Errorf("keys[%d] (kid %q) changed when parsed again", i, keys[i].KeyID)
			}
		}
	})
}

func thumbprint(t *testing.T, k jose.JSONWebKey) string {
	t.Helper()
	tp, err := k.Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatalf("thumbprint of kid %q: %v", k.KeyID, err)
	}
	return string(tp)
}
