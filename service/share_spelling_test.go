package service

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/upstream"
)

// holdFirstGet holds the answer of the first GetSecret until release is
// closed: a read GitHub answered before a write, delivered after it.
type holdFirstGet struct {
	Upstream
	once    sync.Once
	release chan struct{}
}

func (h *holdFirstGet) GetSecret(ctx context.Context, s upstream.Scope, name string) (upstream.Secret, error) {
	sec, err := h.Upstream.GetSecret(ctx, s, name)
	first := false
	h.once.Do(func() { first = true })
	if first {
		<-h.release
	}
	return sec, err
}

// A write under one spelling of a scope ends the generation of reads under
// every spelling, the environment's name included (GitHub's docs say
// environment names are not case sensitive): a read that begins after the
// write ended never gets the answer of a read GitHub answered before it.
func TestWriteEndsReadsUnderEverySpelling(t *testing.T) {
	for _, tc := range []struct{ name, readParent, writeParent string }{
		{"environment case", "repos/octo-org/hello-world/environments/staging", "repos/octo-org/hello-world/environments/Staging"},
		{"owner and repository case", "repos/octo-org/hello-world/actions", "repos/Octo-Org/Hello-World/actions"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				hold := &holdFirstGet{release: make(chan struct{})}
				h := newHarness(t, harnessOpts{wrap: func(u Upstream) Upstream { hold.Upstream = u; return hold }})
				ctx := t.Context()
				read := func() error {
					_, err := h.server.GetSecret(ctx, &secretbrokerv1.GetSecretRequest{Name: tc.readParent + "/secrets/GEN_TEST"})
					return err
				}
				var wg sync.WaitGroup
				var before error
				wg.Go(func() { before = read() }) // GitHub answers 404; held
				synctest.Wait()
				if _, err := h.server.PutSecret(ctx, plainPut(tc.writeParent+"/secrets/GEN_TEST", "v1")); err != nil {
					t.Fatal(err)
				}
				var after error
				wg.Go(func() { after = read() }) // begins after the write ended
				synctest.Wait()
				close(hold.release)
				wg.Wait()
				if status.Code(before) != codes.NotFound {
					t.Fatalf("read before the write: %v, want NotFound", before)
				}
				if after != nil {
					t.Fatalf("a read begun after the write ended got %v (the answer of a read begun before it)", after)
				}
			})
		})
	}
}
