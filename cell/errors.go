package cell

import (
	"errors"

	"google.golang.org/grpc/codes"

	"github.com/wdsio/wds/internal/raftnode"
	"github.com/wdsio/wds/internal/rpcerr"
)

// Sentinel errors of the cell: its vocabulary. Wrap them with %w and
// context; each is an rpcerr.Sentinel naming its gRPC code and ErrorInfo
// reason, and toStatus (rpcerr.ToStatus, the one mapping) turns them into
// statuses. The client library maps the reasons (or, from older servers,
// the codes) back.
var (
	// ErrNotLeader: the node is not the (ready, confirmed) leader.
	ErrNotLeader = &rpcerr.Sentinel{Text: "cell: not leader", Code: codes.Unavailable, Reason: rpcerr.ReasonNotLeader, KeepText: true}
	// ErrNotFound: an unknown domain, consumer or shard.
	ErrNotFound = &rpcerr.Sentinel{Text: "cell: not found", Code: codes.NotFound, Reason: rpcerr.ReasonNotFound}
	// ErrExists: the thing to create already exists.
	ErrExists = &rpcerr.Sentinel{Text: "cell: already exists", Code: codes.AlreadyExists, Reason: rpcerr.ReasonAlreadyExists}
	// ErrFailedPrecondition: the request is valid but the state forbids it.
	// ErrDuplicateConsumer and ErrDomainDeleting are the cases clients
	// tell apart; errors.Is(err, ErrFailedPrecondition) holds for them.
	ErrFailedPrecondition = &rpcerr.Sentinel{Text: "cell: failed precondition", Code: codes.FailedPrecondition, Reason: rpcerr.ReasonFailedPrecondition}
	// ErrDuplicateConsumer: another session (live, or whose lease has not
	// lapsed) holds the consumer id.
	ErrDuplicateConsumer = &rpcerr.Sentinel{Text: "cell: failed precondition", Code: codes.FailedPrecondition, Reason: rpcerr.ReasonDuplicateConsumer, Parent: ErrFailedPrecondition}
	// ErrDomainDeleting: the domain is being deleted.
	ErrDomainDeleting = &rpcerr.Sentinel{Text: "cell: failed precondition", Code: codes.FailedPrecondition, Reason: rpcerr.ReasonDomainDeleting, Parent: ErrFailedPrecondition}
	// ErrConflict: a grant op lost a race with another change; the balancer
	// re-plans. Never shown to users as such.
	ErrConflict = &rpcerr.Sentinel{Text: "cell: conflict", Code: codes.Aborted, Reason: rpcerr.ReasonConflict}
	// ErrUnknownOp: a log op from a newer version, skipped. Never sent.
	ErrUnknownOp = errors.New("cell: unknown op")
	// ErrShutdown: the node is stopping.
	ErrShutdown = &rpcerr.Sentinel{Text: "cell: shutting down", Code: codes.Unavailable, Reason: rpcerr.ReasonShuttingDown, KeepText: true}
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
