package cellstate

import (
	"errors"

	"google.golang.org/grpc/codes"

	"github.com/wdsio/wds/internal/rpcerr"
)

// Sentinel errors of the replicated state: the answers Apply and the
// queries give. Each is an rpcerr.Sentinel naming its gRPC code and
// ErrorInfo reason; package cell re-exports them as its own vocabulary, so
// callers test errors.Is(err, cell.ErrNotFound) without knowing this
// package.
var (
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
)
