package emulator

import "time"

// Touch sets the updated_at GitHub reports for the secret name in scope (a
// REST path prefix such as "orgs/octo-org/actions") to t, in UTC truncated
// to whole seconds, as a change made behind a client's back would. The
// value is kept. It is a test hook, like RotateKey: the emulator's
// timestamps have a resolution of one second, so a test cannot otherwise
// tell two writes made in the same second apart.
func (s *Server) Touch(scope, name string, t time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, sec, err := s.lookupSecret(scope, name)
	if err != nil {
		return err
	}
	sec.updated = t.UTC().Truncate(time.Second)
	return nil
}
