// Package chaos checks WDS's central guarantee on recorded ownership histories: for every key, at
// every instant, at most one consumer believes it owns it, and fencing tokens strictly increase
// from owner to owner (DESIGN.md, "The lease contract").
//
// A History records ownership periods of in-process test consumers; ParseEvents reads the event log
// that `wds consume` prints in end-to-end runs; Check finds every violation in either. The package
// will also hold the docker-compose deployment and the scenario runner of the chaos suite.
package chaos
