// Package netfail owns one question about a request to GitHub that got
// no answer: may its failure well not recur, so that sending it again is
// worth it? The upstream client's retries and the credential package's
// token mints and installation lookups ask it alike, so that a failure
// one of them retries the other does not remember as final.
package netfail

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	"golang.org/x/net/http2"
)

// Transient reports whether err, the error of an HTTP request that got no
// answer (http.Client.Do's), may well not recur: a connection dropped,
// refused, reset or timed out, an unexpected EOF, an HTTP/2 stream the
// server reset, a GOAWAY that closed the connection, or a connection
// lost or closed by the server while the request was on it. TLS
// refusals and certificate failures (tlsRefused), refused redirects and
// anything else are not transient.
func Transient(err error) bool {
	if err == nil || tlsRefused(err) {
		return false
	}
	for _, target := range []error{io.EOF, io.ErrUnexpectedEOF, net.ErrClosed,
		syscall.ECONNRESET, syscall.ECONNREFUSED, syscall.ECONNABORTED, syscall.EPIPE} {
		if errors.Is(err, target) {
			return true
		}
	}
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		return true
	}
	if _, ok := errors.AsType[*net.OpError](err); ok {
		return true
	}
	// net/http's HTTP/2 stream errors convert to x/net's (http2StreamError.As).
	if _, ok := errors.AsType[http2.StreamError](err); ok {
		return true
	}
	return connectionLost(err)
}

// tlsRefused reports whether err is a TLS failure that sending again
// does not change: the server's alert (a client certificate it does not
// accept, no protocol in common), a certificate this machine does not
// trust or that does not name the host. crypto/tls reports the server's
// alert as a *net.OpError "remote error", which the rest of Transient
// would take for a network failure.
func tlsRefused(err error) bool {
	if oe, ok := errors.AsType[*net.OpError](err); ok && oe.Op == "remote error" {
		return true
	}
	if _, ok := errors.AsType[*tls.CertificateVerificationError](err); ok {
		return true
	}
	if _, ok := errors.AsType[tls.RecordHeaderError](err); ok {
		return true // not TLS at the other end
	}
	if _, ok := errors.AsType[x509.UnknownAuthorityError](err); ok {
		return true
	}
	if _, ok := errors.AsType[x509.HostnameError](err); ok {
		return true
	}
	_, ok := errors.AsType[x509.CertificateInvalidError](err)
	return ok
}

// connectionLost reports whether err, or an error it wraps, is one of
// net/http's errors for a connection that went away under a request.
// Their types are unexported (the HTTP/2 ones are bundled into net/http),
// so they are known by their fixed texts.
func connectionLost(err error) bool {
	switch msg := err.Error(); {
	case msg == "http: server closed idle connection",
		msg == "http2: client connection lost",
		msg == "http2: client conn is closed",
		msg == "http2: client conn not usable",
		msg == "http2: Transport received Server's graceful shutdown GOAWAY",
		strings.HasPrefix(msg, "http2: server sent GOAWAY and closed the connection;"):
		return true
	}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		next := u.Unwrap()
		return next != nil && connectionLost(next)
	case interface{ Unwrap() []error }:
		for _, next := range u.Unwrap() {
			if next != nil && connectionLost(next) {
				return true
			}
		}
	}
	return false
}
