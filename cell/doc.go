// Package cell is the Raft cell of one region: it leases exclusive shard
// ownership to the region's consumers and pushes routing to everyone.
//
// Write path in one line: a session event (join, release, drain) or a
// balancer decision becomes ops, the batcher packs ops into one Raft entry,
// the FSM applies them to State, and the applied entry's effects become
// session messages (Grant, Revoke, Prepare) on the leader and routing deltas
// on every node.
//
// Heartbeats never touch the log: the leader keeps each consumer's lease in
// memory (consumerLease) and acknowledges heartbeats only while its
// leadership is confirmed (raftnode). See DESIGN.md next to this file for
// how the lease contract maps onto the code.
package cell
