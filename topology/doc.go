// Package topology is the shared vocabulary of WDS that every other package,
// including the client library, can import without pulling in Raft or gossip:
// the 128-bit UUID key space and its half-open ranges (with the exclusive end
// 2^128 represented explicitly, so no range loses the key ffffffff-…), fencing
// tokens, work-domain definitions with their validation and protobuf
// conversions, and the operator's topology file (regions, nodes, domains)
// parsed so that every mistake is reported with its file, line and field.
package topology
