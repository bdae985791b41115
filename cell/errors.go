package cell

import (
	"errors"

	"google.golang.org/grpc/codes"

	"github.com/wdsio/wds/cell/cellstate"
	"github.com/wdsio/wds/internal/raftnode"
	"github.com/wdsio/wds/internal/rpcerr"
)

// Sentinel errors of the cell: its vocabulary (the node's own, and the
// replicated state's re-exported). Wrap them with %w and
// context; each is an rpcerr.Sentinel naming its gRPC code and ErrorInfo
// reason, and toStatus (rpcerr.ToStatus, the one mapping) turns them into
// statuses. The client library maps the reasons (or, from older servers,
// the codes) back.
var (
	// ErrNotLeader: the node is not the (ready, confirmed) leader.
	ErrNotLeader = &rpcerr.Sentinel{Text: "cell: not leader", Code: codes.Unavailable, Reason: rpcerr.ReasonNotLeader, KeepText: true}
	// ErrShutdown: the node is stopping.
	ErrShutdown = &rpcerr.Sentinel{Text: "cell: shutting down", Code: codes.Unavailable, Reason: rpcerr.ReasonShuttingDown, KeepText: true}

	// The replicated state's answers (package cellstate says when each
	// is given).
	ErrNotFound           = cellstate.ErrNotFound
	ErrExists             = cellstate.ErrExists
	ErrFailedPrecondition = cellstate.ErrFailedPrecondition
	ErrDuplicateConsumer  = cellstate.ErrDuplicateConsumer
	ErrDomainDeleting     = cellstate.ErrDomainDeleting
	ErrConflict           = cellstate.ErrConflict
	ErrUnknownOp          = cellstate.ErrUnknownOp
)

// toStatus converts an error to a gRPC status error through rpcerr's
// mapping. raftnode's ErrNotLeader, which rpcerr cannot know (the client
// imports rpcerr, and must not depend on Raft), is the cell's NOT_LEADER.
func toStatus(err error) error {
	if errors.Is(err, raftnode.ErrNotLeader) && !errors.Is(err, ErrNotLeader) {
		err = rpcerr.Mark(err, ErrNotLeader)
	}
	return rpcerr.ToStatus(err)
}
