// Package apireflect owns the gRPC server reflection of the broker's API
// from descriptors that keep their source info.
//
// The descriptors that protoc-gen-go compiles into the binary carry no
// comments, so reflection served from protoregistry.GlobalFiles shows
// `grpcurl describe` users none of the API's documentation. The broker's own
// files are served instead from gen/descriptor, a FileDescriptorSet that buf
// builds with source info; everything else (their imports, health,
// reflection itself) still comes from the binary's registry.
package apireflect

import (
	"fmt"

	"google.golang.org/grpc/reflection"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/secretbroker/secretbroker/gen/descriptor"
)

// Register registers the v1 and v1alpha server reflection
// services on srv, as reflection.Register does, but resolving descriptors
// with documentedFiles so that the broker's files keep their comments. The
// embedded descriptors are part of the build, so a failure to load them is
// a build defect and panics, like a malformed generated descriptor does.
func Register(srv reflection.GRPCServer) {
	files, err := documentedFiles(descriptor.FileDescriptorSet(), protoregistry.GlobalFiles)
	if err != nil {
		panic(fmt.Sprintf("secretbroker: embedded API descriptors: %v", err))
	}
	opts := reflection.ServerOptions{
		Services:           srv,
		DescriptorResolver: files,
		ExtensionResolver:  protoregistry.GlobalTypes,
	}
	reflectionv1alpha.RegisterServerReflectionServer(srv, reflection.NewServer(opts))
	reflectionv1.RegisterServerReflectionServer(srv, reflection.NewServerV1(opts))
}

// documentedFiles returns a registry holding every file of base, except
// that the files of the serialized FileDescriptorSet set replace those of
// base with the same path. The set's files may import each other and any
// file of base; none of base's files may declare a name that one of the
// set's files also declares under another path.
func documentedFiles(set []byte, base *protoregistry.Files) (*protoregistry.Files, error) {
	var fds descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(set, &fds); err != nil {
		return nil, fmt.Errorf("decode descriptor set: %w", err)
	}
	if len(fds.GetFile()) == 0 {
		return nil, fmt.Errorf("descriptor set holds no files")
	}
	own := make(map[string]bool, len(fds.GetFile()))
	for _, fd := range fds.GetFile() {
		own[fd.GetName()] = true
	}

	files := new(protoregistry.Files)
	var rangeErr error
	base.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		if own[fd.Path()] {
			return true
		}
		if err := files.RegisterFile(fd); err != nil {
			rangeErr = fmt.Errorf("register %s: %w", fd.Path(), err)
			return false
		}
		return true
	})
	if rangeErr != nil {
		return nil, rangeErr
	}
	// A file's imports resolve against the set's files registered so far
	// and against base's; buf writes a set in dependency order.
	for _, fdp := range fds.GetFile() {
		fd, err := protodesc.NewFile(fdp, files)
		if err != nil {
			return nil, fmt.Errorf("build %s: %w", fdp.GetName(), err)
		}
		if err := files.RegisterFile(fd); err != nil {
			return nil, fmt.Errorf("register %s: %w", fdp.GetName(), err)
		}
	}
	return files, nil
}
