// Package client is the Go library for services that use WDS: it connects
// a service's instances to their regional WDS endpoint, runs a handler per
// shard an instance is granted, and keeps a routing table of who owns what.
// It pulls neither Raft nor gossip into a service's binary.
//
// # Consumers
//
// A Consumer (NewConsumer) is one instance of a sharded service: it serves
// some domains (Config.Domains) and is granted exclusive ownership of shards
// of them, each a half-open range of UUID keys of one key space, with a
// fencing token. For each granted shard the library runs Config.Handler in
// its own goroutine; the handler owns the shard until its context is done,
// then stops using it and returns, and the library releases the shard to its
// next owner. Returning early gives the shard back. Close (or CloseOnSignal
// on SIGTERM) drains first: the shards move to other instances before the
// process exits. Config.OnEvent receives every grant, revocation, lease
// loss and reconnection in order, for logs and ownership histories.
//
// A consumer keeps one session (a gRPC stream) to the leader of its cell:
// it finds the leader by asking every endpoint at once (Session.Locate),
// follows the leader across elections, and resumes its grants on the new
// leader (a leader change moves nothing).
//
// # The lease contract, as a user sees it
//
// Ownership is a lease, measured on each side's own monotonic clock
// (docs/DESIGN.md, "The lease contract"). With T the domain's grant TTL and
// ε the allowed clock-rate drift:
//
//   - The session heartbeats every T/3. When the ack of a heartbeat sent at
//     s arrives, the consumer's shards are valid until s + T·(1−ε).
//   - At that deadline the library cancels the shard's context whether or
//     not the network said anything (EventLost): a partitioned or paused
//     instance stops believing it owns the shard before the cell can give it
//     to anyone else, which happens only after the cell's own, later deadline.
//   - A revocation (a move, a drain, a deleted domain) cancels the context at
//     once (EventRevoke), and no later ack revives it.
//   - An ack may withhold some domains (the cell's delegation for them, from
//     the global group, is lapsing or unconfirmed): their shards keep the
//     validity they had and end at that deadline unless a later ack extends
//     them, and a grant in such a domain does not start until one does.
//   - Every grant carries a fencing Token that increases for every key across
//     owners, regions and leader changes: pass it to the database to reject
//     writes of a stale owner.
//
// So a handler must treat ctx.Done() as "stop now": at every instant at most
// one consumer's context is live for a key.
//
// # Key spaces and regions
//
// A GLOBAL or UNIT domain has one key space; a REGIONAL domain has one per
// region. After a regional failover one cell may serve another region's key
// space of a domain, so a shard is (domain, key-space region, range):
// Shard.Region and Route.Region name the region of a REGIONAL shard and are
// empty for GLOBAL and UNIT domains.
//
// # Routing
//
// Routing (Consumer.Routing, Observer.Routing) is the live table of the
// served and watched domains: a snapshot on connect, then ordered deltas.
// Lookup(domain, key) answers locally, in O(log n): for a REGIONAL domain in
// the key space of the session's region (Routing.Region); LookupIn names a
// key space explicitly. Route.Owner is empty while a shard has no active
// owner (being handed over); Route.Unconfirmed says the cell has not heard
// from the owner for a while. Watch delivers changes per key space.
//
// # Observers and locators
//
// An Observer (NewObserver) owns nothing and only follows routing, from any
// node of the cell: a gateway or a dashboard. A Locator (NewLocator) finds a
// cell's leader among a list of endpoints the way sessions do, for admin
// tooling. A Pool shares connections among many consumers and observers of
// one process.
//
// # Errors
//
// Sessions end with errors to test with errors.Is: ErrInvalid and
// ErrNotFound are permanent (the consumer stops, see Consumer.Err);
// ErrDuplicateConsumer, ErrUnavailable and the rest are retried.
package client

// How the package is built (for its maintainers):
//
// A Consumer is a facade over: the transport (transport.go), which keeps
// one session open and decides where and when to open the next, shared with
// Observer; the consumer's session protocol (session.go); the lease book
// (lease.go), a pure state machine of grants and lease validity that is
// given the time and returns actions (start a handler, cancel a context,
// send a Release); and the event queue (events.go) that feeds OnEvent.
