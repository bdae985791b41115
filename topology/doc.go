// Package topology is the shared vocabulary of WDS that every other package,
// including the client library, can import without pulling in Raft or gossip:
// the 128-bit UUID key space and its half-open ranges (with the exclusive end
// 2^128 represented explicitly, so no range loses the key ffffffff-…), fencing
// tokens, work-domain definitions with their validation and protobuf
// conversions, and the operator's topology file parsed so that every mistake
// is reported with its file, line and field.
//
// A topology file lists regions, each with the nodes of its cell, and work
// domains. One region without global voters is a lone cell. Several regions
// form a federation: some nodes also vote in the global Raft group (their
// global address, File.GlobalVoters), a region may give the ordered list of
// regions that serve its REGIONAL key spaces while it is down (not
// transitive; File.FailoverOf), and domains carry placement: the regions of
// a REGIONAL domain with its failover setting (auto or manual), and pins
// that keep GLOBAL ranges on shard boundaries, or a whole UNIT domain, in a
// region.
package topology
