package main

import (
	"context"
	"syscall"
	"testing"
)

// TestSIGHUPNeverEndsTheBroker: SIGHUP asks for the policy file to be
// read again; it ended a broker without --policy-file at once (exit 129,
// no drain), because nothing caught it. Sent just before SIGTERM (the
// kernel delivers the lower-numbered SIGHUP first), it must leave the
// broker to its graceful shutdown: exit 0.
func TestSIGHUPNeverEndsTheBroker(t *testing.T) {
	bin := buildBrokerBinary(t)
	policy := writeFile(t, "policy.yaml", accessPolicy)
	callers := writeFile(t, "callers.yaml", "callers:\n  - name: deployer\n    token_sha256: "+sha256Hex(deployerToken)+"\n")
	for _, tc := range []struct {
		name string
		args []string
	}{
		{name: "without a policy file", args: []string{"--dev"}},
		{name: "with a policy file", args: []string{"--dev", "--callers-file=" + callers, "--policy-file=" + policy}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := startProcBroker(t, "broker", bin, tc.args...)
			if err := b.cmd.Process.Signal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
			if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), procStartTimeout)
			defer cancel()
			select {
			case <-b.done:
			case <-ctx.Done():
				t.Fatalf("still running %v after SIGTERM", procStartTimeout)
			}
			if b.err != nil {
				t.Errorf("exit: %v, want 0 (a graceful shutdown)\n%s", b.err, b.log.tail())
			}
		})
	}
}
