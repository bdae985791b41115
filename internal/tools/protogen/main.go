// Command protogen regenerates the Go code of proto/ without protoc or any
// downloaded binary: it compiles the .proto sources with protocompile (pure
// Go) and feeds the result to protoc-gen-go and protoc-gen-go-grpc, which run
// as Go tools declared in go.mod (`go tool ...`).
//
//	go run ./internal/tools/protogen           # rewrite proto/**/*.pb.go
//	go run ./internal/tools/protogen -check    # fail if they are stale
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"github.com/bufbuild/protocompile"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/pluginpb"
)

func main() {
	root := flag.String("root", "proto", "directory holding the .proto sources (import root); output goes next to them")
	check := flag.Bool("check", false, "do not write: exit 1 if any generated file differs from the committed one")
	flag.Parse()
	if err := run(*root, *check); err != nil {
		fmt.Fprintln(os.Stderr, "protogen:", err)
		os.Exit(1)
	}
}

func run(root string, check bool) error {
	var sources []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(path, ".proto") {
			rel, err := filepath.Rel(root, path)
			if err != nil {
				return err
			}
			sources = append(sources, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(sources)
	if len(sources) == 0 {
		return fmt.Errorf("no .proto files under %s", root)
	}

	compiler := protocompile.Compiler{
		Resolver: protocompile.WithStandardImports(&protocompile.SourceResolver{
			ImportPaths: []string{root},
		}),
		SourceInfoMode: protocompile.SourceInfoStandard,
	}
	files, err := compiler.Compile(context.Background(), sources...)
	if err != nil {
		return err
	}

	// The request lists every file once, dependencies before dependents, as
	// protoc does.
	var all []*descriptorpb.FileDescriptorProto
	seen := map[string]bool{}
	var visit func(fd protoreflect.FileDescriptor)
	visit = func(fd protoreflect.FileDescriptor) {
		if seen[fd.Path()] {
			return
		}
		seen[fd.Path()] = true
		imports := fd.Imports()
		for i := 0; i < imports.Len(); i++ {
			visit(imports.Get(i).FileDescriptor)
		}
		all = append(all, protodesc.ToFileDescriptorProto(fd))
	}
	for _, f := range files {
		visit(f)
	}

	plugins := []struct{ tool, param string }{
		{"protoc-gen-go", "paths=source_relative"},
		{"protoc-gen-go-grpc", "paths=source_relative"},
	}
	stale := 0
	for _, p := range plugins {
		req := &pluginpb.CodeGeneratorRequest{
			FileToGenerate: sources,
			Parameter:      proto.String(p.param),
			ProtoFile:      all,
		}
		resp, err := runPlugin(p.tool, req)
		if err != nil {
			return err
		}
		for _, f := range resp.GetFile() {
			path := filepath.Join(root, filepath.FromSlash(f.GetName()))
			content := []byte(f.GetContent())
			if check {
				old, err := os.ReadFile(path)
				if err != nil || !bytes.Equal(old, content) {
					fmt.Fprintf(os.Stderr, "stale: %s (run `make proto`)\n", path)
					stale++
				}
				continue
			}
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(path, content, 0o644); err != nil {
				return err
			}
		}
	}
	if stale > 0 {
		return fmt.Errorf("%d generated file(s) are stale", stale)
	}
	return nil
}

func runPlugin(tool string, req *pluginpb.CodeGeneratorRequest) (*pluginpb.CodeGeneratorResponse, error) {
	in, err := proto.Marshal(req)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("go", "tool", tool)
	cmd.Stdin = bytes.NewReader(in)
	var out, stderr bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("go tool %s: %v: %s", tool, err, stderr.String())
	}
	resp := &pluginpb.CodeGeneratorResponse{}
	if err := proto.Unmarshal(out.Bytes(), resp); err != nil {
		return nil, fmt.Errorf("go tool %s: bad response: %v", tool, err)
	}
	if resp.Error != nil {
		return nil, fmt.Errorf("go tool %s: %s", tool, resp.GetError())
	}
	return resp, nil
}
