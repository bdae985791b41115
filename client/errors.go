package client

import (
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/wdsio/wds/internal/rpcerr"
)

// Errors a session can end with. They mirror the cell's gRPC codes and
// ErrorInfo reasons; use errors.Is, and Reason for the reason itself. The
// wrapped error carries the server's message, which names the offending
// field.
var (
	// ErrInvalid: the cell rejected the request as malformed
	// (InvalidArgument), e.g. a bad consumer id or the wrong region.
	ErrInvalid = errors.New("wds: invalid request")
	// ErrNotFound: an unknown domain (NotFound).
	ErrNotFound = errors.New("wds: not found")
	// ErrDuplicateConsumer: another live session uses this consumer id
	// (FailedPrecondition, reason DUPLICATE_CONSUMER). A restarted process
	// sees this until its old lease lapses; the library keeps retrying.
	ErrDuplicateConsumer = errors.New("wds: consumer id in use")
	// ErrFailedPrecondition: the cell's state forbids the request.
	ErrFailedPrecondition = errors.New("wds: failed precondition")
	// ErrUnavailable: no reachable leader.
	ErrUnavailable = errors.New("wds: unavailable")
	// ErrClosed: the consumer or observer was closed.
	ErrClosed = errors.New("wds: closed")
)

// UnreachableError is ErrUnavailable when no endpoint could be reached at
// all (every one refused the connection, or did not answer in time).
type UnreachableError struct {
	Endpoints []string
	Causes    []string // distinct root causes, e.g. "connection refused"
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("%v: cannot reach the cell at %s: %s", ErrUnavailable, strings.Join(e.Endpoints, ","), strings.Join(e.Causes, "; "))
}

func (e *UnreachableError) Unwrap() error { return ErrUnavailable }

// NoLeaderError is ErrUnavailable from a Locator whose context ended
// before any node led: Summary says what the endpoints last answered.
type NoLeaderError struct {
	Summary string
	Err     error // the context's error
}

func (e *NoLeaderError) Error() string {
	return fmt.Sprintf("%v: %s: %v", ErrUnavailable, e.Summary, e.Err)
}

func (e *NoLeaderError) Unwrap() []error { return []error{ErrUnavailable, e.Err} }

// fromStatus maps a gRPC error to the library's sentinel errors: by the
// ErrorInfo reason the cell sends (rpcerr), else, from a server older
// than the reasons or for gRPC's own errors, by the code (and, for a
// duplicate consumer id, the words of the message, all such a server
// offers). The error keeps the reason for Reason.
func fromStatus(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	reason := rpcerr.Reason(err)
	kind, ok := reasonSentinels[reason]
	if !ok {
		kind = codeSentinel(st, reason)
	}
	e := &cellError{kind: kind, reason: reason, msg: st.Message()}
	if kind == ErrUnavailable && !ok && st.Code() != codes.Unavailable {
		e.code = st.Code().String() // the code is all the error says
	}
	return e
}

// reasonSentinels: the sentinel of each reason the cell sends. Reasons
// not listed (and any added later) map by their code.
var reasonSentinels = map[string]error{
	rpcerr.ReasonInvalidField:       ErrInvalid,
	rpcerr.ReasonMalformedMessage:   ErrInvalid,
	rpcerr.ReasonNotFound:           ErrNotFound,
	rpcerr.ReasonDuplicateConsumer:  ErrDuplicateConsumer,
	rpcerr.ReasonDomainDeleting:     ErrFailedPrecondition,
	rpcerr.ReasonFailedPrecondition: ErrFailedPrecondition,
	rpcerr.ReasonLeaseExpired:       ErrFailedPrecondition,
	rpcerr.ReasonNotLeader:          ErrUnavailable,
	rpcerr.ReasonLeaderUnreachable:  ErrUnavailable,
	rpcerr.ReasonShuttingDown:       ErrUnavailable,
	rpcerr.ReasonSlowConsumer:       ErrUnavailable,
	rpcerr.ReasonDomainChanged:      ErrUnavailable,
}

// codeSentinel maps a status by its code (no known reason).
func codeSentinel(st *status.Status, reason string) error {
	switch st.Code() {
	case codes.InvalidArgument, codes.ResourceExhausted:
		return ErrInvalid
	case codes.NotFound:
		return ErrNotFound
	case codes.FailedPrecondition:
		// A server older than the reasons says "duplicate consumer id" in
		// its message, and nowhere else.
		if reason == "" && strings.Contains(st.Message(), "duplicate consumer id") {
			return ErrDuplicateConsumer
		}
		return ErrFailedPrecondition
	}
	return ErrUnavailable
}

// cellError is an error the cell returned, as a sentinel (kind) and the
// cell's message.
type cellError struct {
	kind   error
	reason string // ErrorInfo reason; "" from older servers and gRPC itself
	code   string // the gRPC code's name, shown when kind alone hides it
	msg    string
}

func (e *cellError) Error() string {
	if e.code != "" {
		return fmt.Sprintf("%v: %s: %s", e.kind, e.code, e.msg)
	}
	return fmt.Sprintf("%v: %s", e.kind, e.msg)
}

func (e *cellError) Unwrap() error { return e.kind }

// Reason returns the machine-readable reason the cell gave for err (a
// google.rpc.ErrorInfo reason of domain "wds.io", such as "NOT_FOUND",
// "DUPLICATE_CONSUMER" or "DOMAIN_DELETING"; docs/DESIGN.md lists them),
// or "" when err carries none: it did not come from the cell, or came
// from a cell older than the reasons. err may be a gRPC status error or
// an error of this library that wraps one.
func Reason(err error) string {
	var ce *cellError
	if errors.As(err, &ce) {
		return ce.reason
	}
	return rpcerr.Reason(err)
}

// permanent reports errors retrying cannot fix.
func permanent(err error) bool {
	return errors.Is(err, ErrInvalid) || errors.Is(err, ErrNotFound)
}
