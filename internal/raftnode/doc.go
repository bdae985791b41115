// Package raftnode wires one hashicorp/raft member the way every WDS Raft
// group runs it: raft-wal for the log and stable store, file snapshots, a TCP
// transport, bootstrap of a fixed voter set, and two things the lease
// contract needs on top of Raft (below).
//
// It is meant to serve more than one group in a process (the cell group
// and, later, the global group), which is why:
//
//   - the *raft.Raft stays inside: callers get the narrow views they need
//     (Status, State, Servers, Leader, Batcher), so no caller can bypass
//     the leadership bookkeeping below by applying to raft directly;
//   - every log line carries group=Config.Group, so two groups' logs in
//     one process can be told apart;
//   - the transport is injectable (Config.Transport): tests run a group on
//     hashicorp/raft's in-memory transport (NewInmemTransports);
//   - faults come from internal/faults (Config.Faults), the one network
//     model tests share across Raft, client gRPC streams and gossip, with
//     per-peer and one-way cuts; the same wrapper applies them to the TCP
//     and to injected transports.
//
// On top of Raft:
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
