// Package identity owns who a caller is: the identities proven by client
// certificates, static bearer tokens and JWTs, namespaced by how they were
// proven.
//
// An identity is a string whose prefix names the proof:
//
//	token:NAME     a static bearer token listed in the callers file (Tokens)
//	jwt:SUB        the sub claim of a JWT verified against a JWKS (JWTVerifier)
//	x509:SAN-or-CN a verified client certificate (CertificateCaller)
//
// The package knows nothing of gRPC or HTTP serving: the servers call it
// with what the transport presented and carry the result in the context
// (WithCaller, CallerFrom). No error or value it returns ever contains a
// presented token, a token's hash or any part of a JWT.
package identity

import "context"

// Identity prefixes, one per kind of proof.
const (
	prefixToken = "token:"
	prefixJWT   = "jwt:"
	prefixX509  = "x509:"
)

// callerKey is the context key of the authenticated caller.
type callerKey struct{}

// WithCaller returns a copy of ctx that carries caller, an authenticated
// identity such as "token:deployer".
func WithCaller(ctx context.Context, caller string) context.Context {
	return context.WithValue(ctx, callerKey{}, caller)
}

// CallerFrom returns the caller that WithCaller put in ctx; ok is false when
// there is none (or it is empty).
func CallerFrom(ctx context.Context) (string, bool) {
	caller, ok := ctx.Value(callerKey{}).(string)
	if !ok || caller == "" {
		return "", false
	}
	return caller, true
}
