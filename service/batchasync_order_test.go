package service

import (
	"fmt"
	"strings"
	"testing"
	"testing/synctest"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
)

// TestAsyncBatchRefusedInOrderSent: the items an async batch refuses when
// it is accepted (denied by the policy, or naming repositories that do
// not exist) are its operation's first results in the order sent,
// whatever refused them, the same at every call; the items it runs
// follow. They were the denied items first, then the others in the
// random order of a map.
func TestAsyncBatchRefusedInOrderSent(t *testing.T) {
	for run := range 3 {
		t.Run(fmt.Sprint(run), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, harnessOpts{authz: mustPolicy(t)})
				closeOps(t, h.server)
				writer := as(t.Context(), "token:writer") // writes organization secrets only
				unknownRepo := func(i int) *secretbrokerv1.PutSecretRequest {
					r := plain(fmt.Sprintf("%s/secrets/S%d", orgScope, i), plantedSecret)
					r.Visibility, r.SelectedRepositories = "selected", []string{fmt.Sprintf("no-such-repo-%d", i)}
					return r
				}
				req := &secretbrokerv1.BatchPutSecretsRequest{Async: true}
				var want []string
				for i := range 10 {
					switch i {
					case 1, 5:
						req.Requests = append(req.Requests, plain(fmt.Sprintf("%s/secrets/S%d", repoScope, i), plantedSecret))
						want = append(want, fmt.Sprintf("S%d PERMISSION_DENIED", i))
					case 3:
						req.Requests = append(req.Requests, orgPut(fmt.Sprintf("%s/secrets/S%d", orgScope, i), plantedSecret, "private"))
					default:
						req.Requests = append(req.Requests, unknownRepo(i))
						want = append(want, fmt.Sprintf("S%d INVALID_ARGUMENT", i))
					}
				}
				want = append(want, "S3 OK created")
				resp, err := h.broker.BatchPutSecrets(writer, req)
				if err != nil {
					t.Fatal(err)
				}
				done := waitOp(writer, t, h.broker, resp.GetOperation().GetName(), 0)
				if got := batchResultsOf(t, done); strings.Join(got, ", ") != strings.Join(want, ", ") {
					t.Errorf("results\n%v\nwant\n%v", got, want)
				}
			})
		})
	}
}
