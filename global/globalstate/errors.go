package globalstate

import "github.com/wdsio/wds/internal/rpcerr"

// The answers Apply and the queries give: the replicated states' shared
// vocabulary (internal/rpcerr), the same the cell's state gives.
var (
	ErrNotFound           = rpcerr.ErrNotFound
	ErrExists             = rpcerr.ErrExists
	ErrFailedPrecondition = rpcerr.ErrFailedPrecondition
	ErrDomainDeleting     = rpcerr.ErrDomainDeleting
	ErrConflict           = rpcerr.ErrConflict
	ErrUnknownOp          = rpcerr.ErrUnknownOp
)
