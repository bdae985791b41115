// Package chaos checks WDS's central guarantee on recorded ownership histories: for every key, at
// every instant, at most one consumer believes it owns it, and fencing tokens strictly increase
// from owner to owner (DESIGN.md, "The lease contract").
//
// A key belongs to a key space (domain, region): region is the key space's region for a REGIONAL
// domain and "" for GLOBAL and UNIT ones. After a regional failover one cell serves two key spaces
// of a REGIONAL domain whose ranges overlap numerically but hold different keys, so the checks are
// per key space.
//
// A History records ownership periods of in-process test consumers; ParseEvents reads the event log
// that `wds consume` prints in end-to-end runs; Check finds every violation in either. The package
// will also hold the docker-compose deployment and the scenario runner of the chaos suite.
package chaos
