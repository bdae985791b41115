// Package rpcerr is WDS's one mapping from errors to gRPC statuses. The
// cell (and the global group, which must not import the cell) build every
// status they return here; the client library and the CLI read them back
// here. It imports only gRPC's status packages and topology, so the client
// library may import it (internal/importcheck allows that edge).
//
// Every status a WDS server returns carries a google.rpc.ErrorInfo whose
// Domain is "wds.io" and whose Reason is one of the stable,
// machine-readable reasons below. Programs branch on the code and the
// reason, never on the message, which is for people and may change.
// Validation errors also keep a google.rpc.BadRequest naming the field.
// gRPC's own errors (a connection refused, a deadline passed in transit)
// carry no ErrorInfo, and neither do servers older than the reasons: read
// such a status by its code alone.
//
// The reasons are API: none is ever renamed, removed or given another
// code; new ones may be added, so treat an unknown reason by its code.
//
//	Reason               Code                Meaning (ErrorInfo metadata)
//	NOT_LEADER           Unavailable         this node is not the ready leader, no leader is known, or
//	                                         a forwarded call reached a node that does not lead; retry,
//	                                         at the leader (when rpcfwd refuses a leader-only call:
//	                                         leader_id, leader_endpoint of the leader it knows, if any)
//	LEADER_UNREACHABLE   Unavailable         a follower could not forward a leader-only call to the
//	                                         leader (leader_id, leader_endpoint)
//	SHUTTING_DOWN        Unavailable         the node is stopping
//	SLOW_CONSUMER        Unavailable         session ended: the client read too slowly (outbound queue
//	                                         full); reconnect
//	DOMAIN_CHANGED       Unavailable         session ended: a domain it serves changed (its TTL);
//	                                         reconnect (domain)
//	INVALID_FIELD        InvalidArgument     a request field is invalid (field; also a BadRequest)
//	MALFORMED_MESSAGE    InvalidArgument     a message did not decode as the call's protobuf message
//	NOT_FOUND            NotFound            an unknown domain, consumer or shard
//	ALREADY_EXISTS       AlreadyExists       the thing to create exists
//	DUPLICATE_CONSUMER   FailedPrecondition  another session (live, or not yet lapsed) holds the
//	                                         consumer id; a restarted process is admitted once the
//	                                         old lease lapses
//	DOMAIN_DELETING      FailedPrecondition  the domain is being deleted
//	FAILED_PRECONDITION  FailedPrecondition  any other state that forbids the request
//	LEASE_EXPIRED        FailedPrecondition  session ended: the consumer's lease expired or it left;
//	                                         reconnect to join again
//	CONFLICT             Aborted             the request lost a race with a concurrent change; retry
//	SESSION_SUPERSEDED   Aborted             session ended: a newer stream of the same consumer took
//	                                         over
//	HELLO_TIMEOUT        DeadlineExceeded    a session sent no Hello in time
//	DEADLINE_EXCEEDED    DeadlineExceeded    the call's deadline passed in the server
//	CANCELED             Canceled            the call was canceled
//	INTERNAL             Internal            a server bug
package rpcerr

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"

	"github.com/wdsio/wds/topology"
)

// Domain is the ErrorInfo domain of every WDS status.
const Domain = "wds.io"

// Reasons: see the package comment for their codes and meaning.
const (
	ReasonNotLeader          = "NOT_LEADER"
	ReasonLeaderUnreachable  = "LEADER_UNREACHABLE"
	ReasonShuttingDown       = "SHUTTING_DOWN"
	ReasonSlowConsumer       = "SLOW_CONSUMER"
	ReasonDomainChanged      = "DOMAIN_CHANGED"
	ReasonInvalidField       = "INVALID_FIELD"
	ReasonMalformedMessage   = "MALFORMED_MESSAGE"
	ReasonNotFound           = "NOT_FOUND"
	ReasonAlreadyExists      = "ALREADY_EXISTS"
	ReasonDuplicateConsumer  = "DUPLICATE_CONSUMER"
	ReasonDomainDeleting     = "DOMAIN_DELETING"
	ReasonFailedPrecondition = "FAILED_PRECONDITION"
	ReasonLeaseExpired       = "LEASE_EXPIRED"
	ReasonConflict           = "CONFLICT"
	ReasonSessionSuperseded  = "SESSION_SUPERSEDED"
	ReasonHelloTimeout       = "HELLO_TIMEOUT"
	ReasonDeadlineExceeded   = "DEADLINE_EXCEEDED"
	ReasonCanceled           = "CANCELED"
	ReasonInternal           = "INTERNAL"
)

// ErrorInfo metadata keys.
const (
	KeyField          = "field"           // INVALID_FIELD: the field, as the request names it
	KeyLeaderID       = "leader_id"       // NOT_LEADER, LEADER_UNREACHABLE
	KeyLeaderEndpoint = "leader_endpoint" // NOT_LEADER, LEADER_UNREACHABLE: host:port
	KeyDomain         = "domain"          // DOMAIN_CHANGED
)

// A Sentinel is a kind of error with its code and reason: a package's
// sentinel errors (cell.ErrNotFound, ...) are Sentinels, wrapped with %w
// and context. Compare them with errors.Is.
type Sentinel struct {
	Text   string     // the error's text, e.g. "cell: not found"
	Code   codes.Code // the status code
	Reason string     // the ErrorInfo reason
	// Parent, if set, is a broader kind this one refines: errors.Is(err,
	// Parent) holds for an error of this kind.
	Parent *Sentinel
	// KeepText keeps Text in the status message. By default a message
	// "<Text>: <rest>" is sent as "<rest>": the code already says it.
	KeepText bool
}

func (s *Sentinel) Error() string { return s.Text }

// Unwrap returns the parent kind.
func (s *Sentinel) Unwrap() error {
	if s.Parent == nil {
		return nil
	}
	return s.Parent
}

// Mark returns err as an error of kind s: ToStatus maps it as s; its text
// stays err's, and errors.Is holds for both err and s.
func Mark(err error, s *Sentinel) error {
	if err == nil {
		return nil
	}
	return &marked{err: err, kind: s}
}

type marked struct {
	err  error
	kind *Sentinel
}

func (m *marked) Error() string   { return m.err.Error() }
func (m *marked) Unwrap() []error { return []error{m.err, m.kind} }

// New returns a status error of code with an ErrorInfo of reason and the
// metadata kv (key, value, key, value, ...; empty values are left out).
func New(code codes.Code, reason, msg string, kv ...string) error {
	return build(code, reason, msg, kv).Err()
}

// Newf is New with a formatted message and no metadata.
func Newf(code codes.Code, reason, format string, args ...any) error {
	return build(code, reason, fmt.Sprintf(format, args...), nil).Err()
}

func build(code codes.Code, reason, msg string, kv []string, more ...*errdetails.BadRequest) *status.Status {
	st := status.New(code, msg)
	info := &errdetails.ErrorInfo{Reason: reason, Domain: Domain}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			continue
		}
		if info.Metadata == nil {
			info.Metadata = map[string]string{}
		}
		info.Metadata[kv[i]] = kv[i+1]
	}
	details := []protoadapt.MessageV1{info}
	for _, br := range more {
		details = append(details, br)
	}
	if d, err := st.WithDetails(details...); err == nil {
		st = d
	}
	return st
}

// ToStatus converts err to a gRPC status error, the one place that does:
//   - a status error is returned as it is (already converted);
//   - a *topology.FieldError is InvalidArgument INVALID_FIELD, with the
//     field in the metadata and a BadRequest detail;
//   - an error of a Sentinel kind (the outermost in its chain) takes the
//     kind's code and reason;
//   - context.DeadlineExceeded and context.Canceled their own;
//   - anything else is Internal.
func ToStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	var fe *topology.FieldError
	var s *Sentinel
	switch {
	case errors.As(err, &fe):
		br := &errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{
			Field: fe.Field, Description: fe.Error(),
		}}}
		return build(codes.InvalidArgument, ReasonInvalidField, err.Error(), []string{KeyField, fe.Field}, br).Err()
	case errors.As(err, &s):
		msg := err.Error()
		if !s.KeepText {
			if rest, ok := strings.CutPrefix(msg, s.Text+": "); ok {
				msg = rest
			}
		}
		return New(s.Code, s.Reason, msg)
	case errors.Is(err, context.DeadlineExceeded):
		return New(codes.DeadlineExceeded, ReasonDeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return New(codes.Canceled, ReasonCanceled, err.Error())
	}
	return New(codes.Internal, ReasonInternal, err.Error())
}

// Info returns the WDS ErrorInfo of err's status (err may wrap it), or
// nil: gRPC's own errors and servers older than the reasons send none.
func Info(err error) *errdetails.ErrorInfo {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return nil
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == Domain {
			return info
		}
	}
	return nil
}

// Reason returns the reason of err's WDS ErrorInfo, "" when it has none.
func Reason(err error) string { return Info(err).GetReason() }

// FromServer reports whether err is a status a WDS server built (it
// carries a WDS ErrorInfo), as opposed to one of gRPC's own.
func FromServer(err error) bool { return Info(err) != nil }

// The answers a replicated state gives (package cell/cellstate, and the
// global group's state): one vocabulary for both, so callers and the
// mapping to statuses never tell the groups apart. Wrap them with %w and
// context.
var (
	// ErrNotFound: an unknown domain, consumer, region or shard.
	ErrNotFound = &Sentinel{Text: "not found", Code: codes.NotFound, Reason: ReasonNotFound}
	// ErrExists: the thing to create already exists.
	ErrExists = &Sentinel{Text: "already exists", Code: codes.AlreadyExists, Reason: ReasonAlreadyExists}
	// ErrFailedPrecondition: the request is valid but the state forbids it.
	// ErrDuplicateConsumer and ErrDomainDeleting refine it.
	ErrFailedPrecondition = &Sentinel{Text: "failed precondition", Code: codes.FailedPrecondition, Reason: ReasonFailedPrecondition}
	// ErrDuplicateConsumer: another session (live, or whose lease has not
	// lapsed) holds the consumer id.
	ErrDuplicateConsumer = &Sentinel{Text: "failed precondition", Code: codes.FailedPrecondition, Reason: ReasonDuplicateConsumer, Parent: ErrFailedPrecondition}
	// ErrDomainDeleting: the domain is being deleted.
	ErrDomainDeleting = &Sentinel{Text: "failed precondition", Code: codes.FailedPrecondition, Reason: ReasonDomainDeleting, Parent: ErrFailedPrecondition}
	// ErrConflict: an op lost a race with another change; its proposer
	// plans again. Never shown to users as such.
	ErrConflict = &Sentinel{Text: "conflict", Code: codes.Aborted, Reason: ReasonConflict}
	// ErrUnknownOp: a log op from a newer version that says it may be
	// skipped. Never sent.
	ErrUnknownOp = errors.New("unknown log op")
)
