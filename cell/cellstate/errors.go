package cellstate

import "github.com/wdsio/wds/internal/rpcerr"

// The answers Apply and the queries give: the replicated states' shared
// vocabulary (internal/rpcerr), which package cell re-exports as its own,
// so callers test errors.Is(err, cell.ErrNotFound) without knowing this
// package.
var (
	ErrNotFound           = rpcerr.ErrNotFound
	ErrExists             = rpcerr.ErrExists
	ErrFailedPrecondition = rpcerr.ErrFailedPrecondition
	ErrDuplicateConsumer  = rpcerr.ErrDuplicateConsumer
	ErrDomainDeleting     = rpcerr.ErrDomainDeleting
	ErrConflict           = rpcerr.ErrConflict
	ErrUnknownOp          = rpcerr.ErrUnknownOp
)
