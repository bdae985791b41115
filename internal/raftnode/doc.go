// Package raftnode wires one hashicorp/raft member the way every WDS Raft
// group runs it: raft-wal for the log and stable store, file snapshots, a TCP
// transport with in-process fault hooks, bootstrap of a fixed voter set, and
// two things the lease contract needs on top of Raft:
//
//   - Leadership confirmation (DESIGN.md contract (4)): the node records the
//     start time of the latest log entry it proposed that a quorum committed
//     in its term. A follower that stored that entry had not voted for a
//     newer leader when it did, so any newer leader's accession is later
//     than that start time. A node may acknowledge lease heartbeats only
//     while the confirmation is younger than the window W, which bounds how
//     long after a successor's accession a deposed leader can still extend
//     a lease.
//   - Proposal batching (Batcher): concurrent proposals are packed into one
//     log entry while the previous entries are in flight, so grants,
//     releases and joins cost one append (and one fsync) per batch.
package raftnode
