package apireflect

import (
	"strings"
	"testing"

	_ "google.golang.org/grpc/health/grpc_health_v1" // in the registry, as in the broker's
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/secretbroker/secretbroker/gen/descriptor"
	_ "github.com/secretbroker/secretbroker/gen/secretbroker/v1" // the generated descriptors, as in the broker
)

const (
	serviceFile    = "secretbroker/v1/secret_service.proto"
	serviceComment = "writes GitHub Actions and Agents secrets"
)

// leadingComment returns the leading comment of d in its file's source
// info, "" when the file has none.
func leadingComment(d protoreflect.Descriptor) string {
	return d.ParentFile().SourceLocations().ByDescriptor(d).LeadingComments
}

func TestDocumentedFiles(t *testing.T) {
	// The premise: the binary's own registry has no comments.
	global, err := protoregistry.GlobalFiles.FindDescriptorByName("secretbroker.v1.SecretService")
	if err != nil {
		t.Fatal(err)
	}
	if c := leadingComment(global); c != "" {
		t.Fatalf("GlobalFiles has the comment %q; reflection from it would do", c)
	}

	files, err := documentedFiles(descriptor.FileDescriptorSet(), protoregistry.GlobalFiles)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		wantComment string // "" for no check
	}{
		{"secretbroker.v1.SecretService", serviceComment},
		{"secretbroker.v1.SecretService.ListSecrets", "Lists a scope's secrets"},
		{"grpc.health.v1.Health", ""},
		{"grpc.reflection.v1.ServerReflection", ""},
		{"google.api.http", ""},
		{"google.protobuf.Empty", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := files.FindDescriptorByName(protoreflect.FullName(tt.name))
			if err != nil {
				t.Fatal(err)
			}
			if tt.wantComment != "" && !strings.Contains(leadingComment(d), tt.wantComment) {
				t.Errorf("leading comment of %s = %q, want it to contain %q", tt.name, leadingComment(d), tt.wantComment)
			}
		})
	}
	fd, err := files.FindFileByPath(serviceFile)
	if err != nil {
		t.Fatal(err)
	}
	if fd.SourceLocations().Len() == 0 {
		t.Errorf("%s has no source locations", serviceFile)
	}
	// Every message of the generated code is in the documented file too,
	// with the same shape.
	want := protodesc.ToFileDescriptorProto(global.ParentFile())
	got := protodesc.ToFileDescriptorProto(fd)
	got.SourceCodeInfo = nil
	if !proto.Equal(got, want) {
		t.Errorf("documented %s differs from the generated one beyond source info", serviceFile)
	}
}

func TestDocumentedFilesErrors(t *testing.T) {
	marshal := func(files ...*descriptorpb.FileDescriptorProto) []byte {
		b, err := proto.Marshal(&descriptorpb.FileDescriptorSet{File: files})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := []struct {
		name    string
		set     []byte
		wantErr string
	}{
		{"not a descriptor set", []byte{0xff, 0xff, 0xff}, "decode descriptor set"},
		{"empty set", marshal(), "no files"},
		{"missing import", marshal(&descriptorpb.FileDescriptorProto{
			Name:       proto.String("x/x.proto"),
			Package:    proto.String("x"),
			Dependency: []string{"x/missing.proto"},
			Syntax:     proto.String("proto3"),
		}), "build x/x.proto"},
		{"name taken by another file", marshal(&descriptorpb.FileDescriptorProto{
			Name:    proto.String("x/health.proto"),
			Package: proto.String("grpc.health.v1"),
			Syntax:  proto.String("proto3"),
			MessageType: []*descriptorpb.DescriptorProto{{
				Name: proto.String("HealthCheckRequest"),
			}},
		}), "register x/health.proto"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := documentedFiles(tt.set, protoregistry.GlobalFiles)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("documentedFiles: %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}
