package service

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/service/operation"
	"github.com/secretbroker/secretbroker/upstream"
)

// heldPuts is an Upstream whose writes wait until release is closed (or
// their context ends): operations stay unfinished as long as the test
// wants.
type heldPuts struct {
	Upstream
	release chan struct{}
}

func (h *heldPuts) PutSecretFunc(ctx context.Context, s upstream.Scope, name string, body func() (upstream.PutSecretBody, error)) (upstream.Written, error) {
	select {
	case <-h.release:
	case <-ctx.Done():
		return upstream.Written{}, ctx.Err()
	}
	return h.Upstream.PutSecretFunc(ctx, s, name, body)
}

// unfinished counts the caller's operations that are not done, through
// ListOperations.
func unfinished(ctx context.Context, t *testing.T, c secretbrokerv1.SecretServiceClient) int {
	t.Helper()
	n, token := 0, ""
	for {
		resp, err := c.ListOperations(ctx, &secretbrokerv1.ListOperationsRequest{NotDone: true, PageSize: 100, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		n += len(resp.GetOperations())
		if token = resp.GetNextPageToken(); token == "" {
			return n
		}
	}
}

// A caller's unfinished operations are bounded (operation.
// DefaultMaxPerCaller): each holds a goroutine and its items' values until
// it ends, and at GitHub's 500 writes an hour a caller looping async
// batches would add them far faster than they end. An async call past
// the bound is RESOURCE_EXHAUSTED with a RetryInfo and stores nothing;
// another caller is not held up; once the caller's operations end it may
// start more.
func TestUnfinishedOperationsPerCallerBounded(t *testing.T) {
	const (
		limit = operation.DefaultMaxPerCaller
		tries = limit + 50
	)
	synctest.Test(t, func(t *testing.T) {
		held := &heldPuts{release: make(chan struct{})}
		h := newHarness(t, harnessOpts{wrap: func(up Upstream) Upstream { held.Upstream = up; return held }})
		closeOps(t, h.server)
		ctx := t.Context()
		batch := func(caller string, i int) error {
			_, err := h.broker.BatchPutSecrets(as(ctx, caller), &secretbrokerv1.BatchPutSecretsRequest{Async: true,
				Requests: []*secretbrokerv1.PutSecretRequest{plain(fmt.Sprintf("repos/octo-org/hello-world/actions/secrets/S_%s_%d", caller[len("token:"):], i), plantedSecret)}})
			return err
		}
		accepted, refused := 0, 0
		for i := range tries {
			err := batch("token:flood", i)
			switch st, _ := status.FromError(err); {
			case err == nil:
				accepted++
			case st.Code() == codes.ResourceExhausted && retryAfterOf(st) != nil:
				refused++
			default:
				t.Fatalf("async batch %d: %v", i, err)
			}
		}
		synctest.Wait()
		if accepted != limit || refused != tries-limit {
			t.Errorf("one caller's %d async batches, none finished: %d accepted, %d refused; want %d accepted", tries, accepted, refused, limit)
		}
		if n := unfinished(as(ctx, "token:flood"), t, h.broker); n != min(accepted, limit) {
			t.Errorf("%d unfinished operations stored for the caller, want %d", n, min(accepted, limit))
		}
		if err := batch("token:other", 0); err != nil {
			t.Errorf("another caller's async batch: %v", err)
		}

		close(held.release)
		synctest.Wait()
		for unfinished(as(ctx, "token:flood"), t, h.broker) > 0 {
			time.Sleep(time.Minute) // the writes' spacing and GitHub's content limits
		}
		if err := batch("token:flood", tries); err != nil {
			t.Errorf("an async batch once the caller's operations ended: %v", err)
		}
	})
}

// OperationOptions.MaxPerCaller replaces the default bound: with 2, a
// caller's third unfinished operation is RESOURCE_EXHAUSTED, its message
// naming 2, while another caller's is accepted.
func TestUnfinishedOperationsPerCallerConfigured(t *testing.T) {
	const limit = 2
	synctest.Test(t, func(t *testing.T) {
		held := &heldPuts{release: make(chan struct{})}
		h := newHarness(t, harnessOpts{wrap: func(up Upstream) Upstream { held.Upstream = up; return held },
			ops: OperationOptions{MaxPerCaller: limit}})
		closeOps(t, h.server)
		defer close(held.release)
		ctx := t.Context()
		batch := func(caller string, i int) error {
			_, err := h.broker.BatchPutSecrets(as(ctx, caller), &secretbrokerv1.BatchPutSecretsRequest{Async: true,
				Requests: []*secretbrokerv1.PutSecretRequest{plain(fmt.Sprintf("repos/octo-org/hello-world/actions/secrets/S_%s_%d", caller[len("token:"):], i), plantedSecret)}})
			return err
		}
		for i := range limit {
			if err := batch("token:flood", i); err != nil {
				t.Fatalf("async batch %d of %d: %v", i+1, limit, err)
			}
		}
		err := batch("token:flood", limit)
		if st, _ := status.FromError(err); st.Code() != codes.ResourceExhausted || retryAfterOf(st) == nil ||
			!strings.Contains(st.Message(), fmt.Sprintf("has %d unfinished operations", limit)) {
			t.Errorf("async batch over the bound of %d: %v, want RESOURCE_EXHAUSTED with a RetryInfo naming %d", limit, err, limit)
		}
		if err := batch("token:other", 0); err != nil {
			t.Errorf("another caller's async batch: %v", err)
		}
	})
}
