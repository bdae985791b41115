package client

import (
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Errors a session can end with. They mirror the cell's gRPC codes; use
// errors.Is. The wrapped error carries the server's message, which names
// the offending field.
var (
	// ErrInvalid: the cell rejected the request as malformed
	// (InvalidArgument), e.g. a bad consumer id or the wrong region.
	ErrInvalid = errors.New("wds: invalid request")
	// ErrNotFound: an unknown domain (NotFound).
	ErrNotFound = errors.New("wds: not found")
	// ErrDuplicateConsumer: another live session uses this consumer id
	// (FailedPrecondition). A restarted process sees this until its old
	// lease lapses; the library keeps retrying.
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

// fromStatus maps a gRPC error to the library's sentinel errors.
func fromStatus(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	switch st.Code() {
	case codes.InvalidArgument, codes.ResourceExhausted:
		return fmt.Errorf("%w: %s", ErrInvalid, st.Message())
	case codes.NotFound:
		return fmt.Errorf("%w: %s", ErrNotFound, st.Message())
	case codes.FailedPrecondition:
		if containsDuplicate(st.Message()) {
			return fmt.Errorf("%w: %s", ErrDuplicateConsumer, st.Message())
		}
		return fmt.Errorf("%w: %s", ErrFailedPrecondition, st.Message())
	case codes.Unavailable:
		return fmt.Errorf("%w: %s", ErrUnavailable, st.Message())
	default:
		return fmt.Errorf("%w: %s: %s", ErrUnavailable, st.Code(), st.Message())
	}
}

func containsDuplicate(msg string) bool {
	return strings.Contains(msg, "duplicate consumer id")
}

// permanent reports errors retrying cannot fix.
func permanent(err error) bool {
	return errors.Is(err, ErrInvalid) || errors.Is(err, ErrNotFound)
}
