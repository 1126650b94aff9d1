package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/status"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
)

// TestAdversarialEmptyCredentials: authorization values that carry no
// token (empty, a scheme alone, blanks), alone or beside a valid one,
// name no caller on either listener, for a read, a write and the
// operation RPCs; and the v1alpha reflection service, like v1, needs
// credentials.
func TestAdversarialEmptyCredentials(t *testing.T) {
	b := adversarialBroker(t)
	svc := secretbrokerv1.NewSecretServiceClient(b.conn)
	value := &secretbrokerv1.PutSecretRequest_Value{Value: accessValue}
	empties := []string{"", "Bearer", "Bearer ", "Bearer    ", "bearer", " Bearer " + adminToken + " x"}
	calls := []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"GetSecret", func(ctx context.Context) error {
			_, err := svc.GetSecret(ctx, &secretbrokerv1.GetSecretRequest{Name: stagingSecret})
			return err
		}},
		{"PutSecret", func(ctx context.Context) error {
			_, err := svc.PutSecret(ctx, &secretbrokerv1.PutSecretRequest{Name: stagingSecret, Payload: value})
			return err
		}},
		{"ListOperations", func(ctx context.Context) error {
			_, err := svc.ListOperations(ctx, &secretbrokerv1.ListOperationsRequest{})
			return err
		}},
	}
	for _, v := range empties {
		for _, c := range calls {
			for _, md := range [][]string{{"authorization", v}, {"authorization", "Bearer " + deployerToken, "authorization", v}} {
				err := c.call(metadata.AppendToOutgoingContext(t.Context(), md...))
				if status.Code(err) != codes.Unauthenticated {
					t.Errorf("gRPC %s with %q: %v, want Unauthenticated", c.name, md, err)
				}
			}
		}
	}
	v1 := "http://" + b.httpAddr + "/v1/"
	for _, v := range empties {
		for _, c := range []struct{ method, path, body string }{
			{http.MethodGet, stagingSecret, ""},
			{http.MethodPut, stagingSecret, `{"value":"` + accessValue + `"}`},
			{http.MethodGet, "operations", ""},
		} {
			req, err := http.NewRequest(c.method, v1+c.path, strings.NewReader(c.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header["Authorization"] = []string{v}
			resp, err := b.http.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("JSON %s %s with %q: %d %s, want 401", c.method, c.path, v, resp.StatusCode, body)
			}
		}
	}

	if err := listServicesV1alpha(t.Context(), b.conn); status.Code(err) != codes.Unauthenticated {
		t.Errorf("v1alpha reflection without credentials: %v, want Unauthenticated", err)
	}
	if err := listServicesV1alpha(withBearer(t.Context(), strangerToken), b.conn); err != nil {
		t.Errorf("v1alpha reflection with credentials: %v", err)
	}
}

func listServicesV1alpha(ctx context.Context, conn *grpc.ClientConn) error {
	stream, err := reflectionv1alpha.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		return err
	}
	//lint:ignore SA1019 the broker still serves v1alpha (apireflect.Register); this checks its guard
	if err := stream.Send(&reflectionv1alpha.ServerReflectionRequest{MessageRequest: &reflectionv1alpha.ServerReflectionRequest_ListServices{}}); err != nil && err != io.EOF {
		return err
	}
	_, err = stream.Recv()
	return err
}
