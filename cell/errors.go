package cell

import (
	"context"
	"errors"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/wdsio/wds/internal/raftnode"
	"github.com/wdsio/wds/topology"
)

// Sentinel errors of the cell. Wrap them with %w and context; toStatus maps
// them to gRPC codes (the only place that does), and the client library maps
// the codes back.
var (
	// ErrNotLeader: the node is not the (ready, confirmed) leader.
	ErrNotLeader = errors.New("cell: not leader")
	// ErrNotFound: an unknown domain, consumer or shard.
	ErrNotFound = errors.New("cell: not found")
	// ErrExists: the thing to create already exists.
	ErrExists = errors.New("cell: already exists")
	// ErrFailedPrecondition: the request is valid but the state forbids it
	// (a duplicate live consumer id, a domain still being deleted, ...).
	ErrFailedPrecondition = errors.New("cell: failed precondition")
	// ErrConflict: a grant op lost a race with another change; the balancer
	// re-plans. Never shown to users as such.
	ErrConflict = errors.New("cell: conflict")
	// ErrUnknownOp: a log op from a newer version, skipped.
	ErrUnknownOp = errors.New("cell: unknown op")
	// ErrShutdown: the node is stopping.
	ErrShutdown = errors.New("cell: shutting down")
)

// toStatus converts an error to a gRPC status error. Validation errors
// (topology.FieldError) become InvalidArgument with a BadRequest detail
// naming the field.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	var fe *topology.FieldError
	switch {
	case errors.As(err, &fe):
		st := status.New(codes.InvalidArgument, err.Error())
		if d, derr := st.WithDetails(&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{
			Field: fe.Field, Description: fe.Error(),
		}}}); derr == nil {
			st = d
		}
		return st.Err()
	case errors.Is(err, ErrNotFound):
		return status.Error(codes.NotFound, trimSentinel(err))
	case errors.Is(err, ErrExists):
		return status.Error(codes.AlreadyExists, trimSentinel(err))
	case errors.Is(err, ErrFailedPrecondition):
		return status.Error(codes.FailedPrecondition, trimSentinel(err))
	case errors.Is(err, ErrConflict):
		return status.Error(codes.Aborted, trimSentinel(err))
	case errors.Is(err, ErrNotLeader), errors.Is(err, raftnode.ErrNotLeader):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, ErrShutdown):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}

// trimSentinel drops the "cell: <sentinel>: " prefix users need not read:
// the gRPC code already says it.
func trimSentinel(err error) string {
	msg := err.Error()
	for _, s := range []error{ErrNotFound, ErrExists, ErrFailedPrecondition, ErrConflict} {
		if rest, ok := strings.CutPrefix(msg, s.Error()+": "); ok {
			return rest
		}
	}
	return msg
}
