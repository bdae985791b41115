// Package proto holds WDS's protobuf sources and the Go code generated from
// them; it has no code of its own. Its test fails when the committed
// generated code is stale.
//
//   - wds/v1 (Go package wdsv1): the public wire protocol. session.proto is
//     the Session service (one bidirectional stream per client process:
//     Hello/Welcome, heartbeats, grants, revocations, routing), admin.proto is
//     the Admin service (domains, shard map, status, drain), and types.proto
//     holds the shared messages (key ranges, fencing tokens, domain kinds).
//   - wds/cell/v1 (Go package cellv1): the cell's Raft log (one Entry of Ops
//     per log entry) and its snapshots. It is internal to the cell, but is
//     versioned like the wire protocol, because a log outlives a binary.
//
// The *.pb.go files are generated and committed. `make proto` (go run
// ./internal/tools/protogen) regenerates them with no protoc or other
// downloaded binary: protocompile parses the sources, and protoc-gen-go and
// protoc-gen-go-grpc run as Go tools declared in go.mod.
package proto
