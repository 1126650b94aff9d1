package emulator

import (
	"net"
	"net/http"
)

// ConnState counts the connections an http.Server serving s accepts: set
// it as that server's ConnState hook (httptest.Server keeps a hook set on
// its Config before it starts). Connections reports the count, so that a
// test or a load run can tell whether a client reuses its connections.
func (s *Server) ConnState(_ net.Conn, state http.ConnState) {
	if state == http.StateNew {
		s.conns.Add(1)
	}
}

// Connections is how many connections ConnState has seen accepted.
func (s *Server) Connections() int64 { return s.conns.Load() }
