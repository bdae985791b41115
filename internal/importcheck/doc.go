// Package importcheck holds no code: its test keeps the direction of imports
// that DESIGN.md prescribes. It runs `go list -deps` over the module and fails
// on a forbidden edge, naming it:
//
//   - client imports no module package but proto/..., topology and
//     internal/rpcerr (the status vocabulary it shares with the servers,
//     itself importing only gRPC's status packages and topology), and does
//     not depend, even transitively, on hashicorp/raft, raft-wal or
//     memberlist (a service must not pull them into its binary);
//   - cell and global never import each other (a cell reaches the global
//     group through the generated gRPC client);
//   - internal/serve, the process's gRPC server and HTTP admin port on
//     which the cell node and the global group's member both register,
//     imports no module package but internal/telemetry and
//     internal/logging, and depends on neither cell nor global;
//   - topology and proto/... import no module package but proto/...;
//   - nothing imports cmd/....
//
// The rules on client, topology and proto apply to what their packages
// compile into a binary; test-only imports are exempt. The rules on
// cell/global, internal/serve and cmd/ cover test imports too.
package importcheck
