// Package globalstate is the global group's replicated state: the regions
// of the federation, the domain catalog (each domain's incarnation is the
// global log index that created it) and, per key space, which region's
// cell holds each shard's delegation and under which generation.
//
// Like the cell's state (cell/cellstate) it is a pure state machine over
// the log: no clocks, randomness or I/O; Apply answers each op with a
// Result{Resp, Err}; readers use the query API. A delegation's generation
// is the index of the entry that made it, so the fencing tokens (G, I) of
// a range moving from one cell to another strictly increase, whatever the
// two cells' own log indexes.
//
// Delegations move gracefully: Withdraw (no longer renewed; still the
// holder's), then Released when the holder's cell reports the ranges
// relinquished and empty, then Delegate to the next region. A region that
// stops renewing keeps its shards until the leader judges them past their
// deadline (contract (5)) and proposes Expire. Place computes the ops of
// one placement round from the live regions and the cells' load reports:
// REGIONAL key spaces to their region, UNIT domains to their pin or a
// region with consumers, GLOBAL ranges apportioned by live consumer count.
package globalstate
