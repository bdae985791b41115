// Package cellstate is the cell's replicated state: what every node of a
// Raft cell agrees on, one log entry at a time.
//
// State is a pure state machine. Every change is an op applied at a log
// index (Apply, through the raft.FSM shell FSM); nothing in it reads a
// clock, randomness or I/O, so replicas that apply the same log are equal,
// and a snapshot restores the same state. Each op answers its proposer with
// a Result{Resp, Err} and appends the effects the leader turns into
// session messages (Grant, Revoke, Prepare, ...) and the routing entries
// it changed to the entry's ApplyResult.
//
// Readers use the query API (query.go): every method takes the state's
// lock itself and returns values, copies or new protos, never pointers into
// the state, so no caller can hold the lock the FSM goroutine needs. The
// two readers that need the internals are here too: the Planner (one
// balancing round, from the state and a copy of the leader's lease book)
// and the routing builders (the tables the routing hub sends).
//
// Time enters only as inputs: the leader's lease deadlines reach the
// planner as a PlanInput, delegation durations as recorded numbers. See
// ../DESIGN.md for how the lease contract maps onto this code.
package cellstate
