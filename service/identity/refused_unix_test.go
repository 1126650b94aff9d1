//go:build unix

package identity

import (
	"errors"
	"net"
	"strconv"
	"syscall"
	"testing"
)

// refusingAddr is a loopback host:port that refuses connections for the
// whole test: a TCP socket bound to it, held open, that never listens.
// Connections to it are refused (ECONNREFUSED: no listener answers the
// SYN), and no other process can bind the port while the test holds it.
func refusingAddr(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatalf("socket: %v", err)
	}
	syscall.CloseOnExec(fd)
	t.Cleanup(func() { _ = syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatalf("bind: %v", err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatalf("getsockname: %v", err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))
}

// The refusing address refuses connections, and another process that
// tries to take its port while the test runs cannot.
func TestRefusingAddr(t *testing.T) {
	addr := refusingAddr(t)
	for i := range 3 {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			_ = c.Close()
			t.Fatalf("dial %d to %s connected, want it refused", i, addr)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("dial %d to %s: %v, want ECONNREFUSED", i, addr, err)
		}
	}
	// The collision: a listener on the port. It is refused the port, so
	// the address stays refusing.
	if ln, err := net.Listen("tcp", addr); err == nil {
		_ = ln.Close()
		t.Fatalf("another listener could take %s", addr)
	} else if !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("listening on %s: %v, want EADDRINUSE", addr, err)
	}
}
