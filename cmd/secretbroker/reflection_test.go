package main

import (
	"io"
	"strings"
	"testing"

	"google.golang.org/grpc"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"
)

const (
	serviceFile    = "secretbroker/v1/secret_service.proto"
	serviceComment = "writes GitHub Actions and Agents secrets"
)

// reflectFiles asks the broker's reflection service, v1 or v1alpha, for the
// file named file (or the one that declares symbol) and returns the file
// descriptors of the answer. v1alpha's messages are v1's on the wire, so
// both versions are called with v1's (v1alpha's Go types are deprecated).
func reflectFiles(t *testing.T, conn *grpc.ClientConn, version, file, symbol string) []*descriptorpb.FileDescriptorProto {
	t.Helper()
	method := map[string]string{
		"v1":      reflectionv1.ServerReflection_ServerReflectionInfo_FullMethodName,
		"v1alpha": "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
	}[version]
	if method == "" {
		t.Fatalf("unknown reflection version %q", version)
	}
	stream, err := conn.NewStream(t.Context(), &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, method)
	if err != nil {
		t.Fatal(err)
	}
	req := &reflectionv1.ServerReflectionRequest{}
	if file != "" {
		req.MessageRequest = &reflectionv1.ServerReflectionRequest_FileByFilename{FileByFilename: file}
	} else {
		req.MessageRequest = &reflectionv1.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: symbol}
	}
	if err := stream.SendMsg(req); err != nil && err != io.EOF {
		t.Fatal(err)
	}
	resp := new(reflectionv1.ServerReflectionResponse)
	if err := stream.RecvMsg(resp); err != nil {
		t.Fatal(err)
	}
	_ = stream.CloseSend()
	if e := resp.GetErrorResponse(); e != nil {
		t.Fatalf("reflection error: %v", e)
	}
	var out []*descriptorpb.FileDescriptorProto
	for _, b := range resp.GetFileDescriptorResponse().GetFileDescriptorProto() {
		fdp := new(descriptorpb.FileDescriptorProto)
		if err := proto.Unmarshal(b, fdp); err != nil {
			t.Fatal(err)
		}
		out = append(out, fdp)
	}
	return out
}

// TestReflectionServesComments asks a running broker's reflection service,
// as grpcurl describe does, for the API's file and checks that its source
// info, comments included, comes along, and that the files the broker does
// not document (health) are still served.
func TestReflectionServesComments(t *testing.T) {
	b := startBroker(t, devConfig(t))
	tests := []struct {
		version, file, symbol string
		wantFile              string
		wantComment           string // "" when the file has no documented source
	}{
		{"v1", serviceFile, "", serviceFile, serviceComment},
		{"v1", "", "secretbroker.v1.SecretService", serviceFile, serviceComment},
		{"v1alpha", serviceFile, "", serviceFile, serviceComment},
		{"v1alpha", "", "secretbroker.v1.SecretService.PutSecret", serviceFile, serviceComment},
		{"v1", "", "grpc.health.v1.Health", "grpc/health/v1/health.proto", ""},
		{"v1alpha", "", "google.api.http", "google/api/annotations.proto", ""},
	}
	for _, tt := range tests {
		t.Run(tt.version+" "+tt.file+tt.symbol, func(t *testing.T) {
			files := reflectFiles(t, b.conn, tt.version, tt.file, tt.symbol)
			if len(files) == 0 {
				t.Fatal("no file descriptors in the answer")
			}
			if got := files[0].GetName(); got != tt.wantFile {
				t.Fatalf("first file is %q, want %q", got, tt.wantFile)
			}
			if tt.wantComment == "" {
				return
			}
			var found bool
			for _, loc := range files[0].GetSourceCodeInfo().GetLocation() {
				found = found || strings.Contains(loc.GetLeadingComments(), tt.wantComment)
			}
			if !found {
				t.Errorf("%s has no comment containing %q (%d source locations)",
					tt.wantFile, tt.wantComment, len(files[0].GetSourceCodeInfo().GetLocation()))
			}
		})
	}
}
