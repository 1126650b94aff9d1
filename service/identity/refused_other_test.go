//go:build !unix

package identity

import (
	"net"
	"testing"
)

// refusingAddr is a loopback host:port nothing listened on a moment ago.
// Without the Unix socket calls, the port is not held: another process
// can take it before the test connects.
func refusingAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}
