package rpcerr

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/wdsio/wds/topology"
)

var (
	errNotFound = &Sentinel{Text: "x: not found", Code: codes.NotFound, Reason: ReasonNotFound}
	errPrecond  = &Sentinel{Text: "x: failed precondition", Code: codes.FailedPrecondition, Reason: ReasonFailedPrecondition}
	errDup      = &Sentinel{Text: "x: failed precondition", Code: codes.FailedPrecondition, Reason: ReasonDuplicateConsumer, Parent: errPrecond}
	errLeader   = &Sentinel{Text: "x: not leader", Code: codes.Unavailable, Reason: ReasonNotLeader, KeepText: true}
)

func TestToStatus(t *testing.T) {
	raw := errors.New("raft: not the leader")
	for _, tc := range []struct {
		name   string
		err    error
		code   codes.Code
		reason string
		msg    string
	}{
		{"sentinel trimmed", fmt.Errorf("%w: domain %q", errNotFound, "d"), codes.NotFound, ReasonNotFound, `domain "d"`},
		{"bare sentinel", errNotFound, codes.NotFound, ReasonNotFound, "x: not found"},
		{"refined kind", fmt.Errorf("%w: consumer_id %q is held (duplicate consumer id)", errDup, "c"), codes.FailedPrecondition, ReasonDuplicateConsumer, `consumer_id "c" is held (duplicate consumer id)`},
		{"outermost kind", fmt.Errorf("%w: because %w", errDup, errNotFound), codes.FailedPrecondition, ReasonDuplicateConsumer, "because x: not found"},
		{"kept text", fmt.Errorf("%w: stepping down", errLeader), codes.Unavailable, ReasonNotLeader, "x: not leader: stepping down"},
		{"marked", Mark(raw, errLeader), codes.Unavailable, ReasonNotLeader, "raft: not the leader"},
		{"wrapped context", fmt.Errorf("propose: %w", context.DeadlineExceeded), codes.DeadlineExceeded, ReasonDeadlineExceeded, "propose: context deadline exceeded"},
		{"canceled", context.Canceled, codes.Canceled, ReasonCanceled, "context canceled"},
		{"other", errors.New("boom"), codes.Internal, ReasonInternal, "boom"},
		{"built", Newf(codes.Aborted, ReasonSessionSuperseded, "superseded %d", 1), codes.Aborted, ReasonSessionSuperseded, "superseded 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ToStatus(tc.err)
			st := status.Convert(err)
			if st.Code() != tc.code || st.Message() != tc.msg || Reason(err) != tc.reason {
				t.Errorf("ToStatus(%v) = %v %q reason %q; want %v %q reason %q", tc.err, st.Code(), st.Message(), Reason(err), tc.code, tc.msg, tc.reason)
			}
			if info := Info(err); info.GetDomain() != Domain {
				t.Errorf("ErrorInfo domain %q, want %q", info.GetDomain(), Domain)
			}
		})
	}
	if ToStatus(nil) != nil {
		t.Error("ToStatus(nil) != nil")
	}
	if !errors.Is(fmt.Errorf("%w: x", errDup), errPrecond) || errors.Is(errPrecond, errDup) {
		t.Error("a refined kind must be its parent, not the other way round")
	}
	if m := Mark(raw, errLeader); !errors.Is(m, raw) || !errors.Is(m, errLeader) {
		t.Error("a marked error must be both the error and the kind")
	}
}

func TestFieldError(t *testing.T) {
	err := ToStatus(fmt.Errorf("hello: %w", topology.Invalid("hello.region", "mars", "unknown region")))
	st := status.Convert(err)
	if st.Code() != codes.InvalidArgument || Reason(err) != ReasonInvalidField {
		t.Fatalf("got %v reason %q, want InvalidArgument INVALID_FIELD", st.Code(), Reason(err))
	}
	if f := Info(err).GetMetadata()[KeyField]; f != "hello.region" {
		t.Errorf("metadata field %q, want hello.region", f)
	}
	var br *errdetails.BadRequest
	for _, d := range st.Details() {
		if b, ok := d.(*errdetails.BadRequest); ok {
			br = b
		}
	}
	if br == nil || len(br.GetFieldViolations()) != 1 || br.GetFieldViolations()[0].GetField() != "hello.region" {
		t.Errorf("BadRequest detail %v, want one violation of hello.region", br)
	}
}

func TestStatusPassesThrough(t *testing.T) {
	plain := status.Error(codes.Unavailable, "connection refused")
	if got := ToStatus(plain); got != plain {
		t.Errorf("a status error changed: %v", got)
	}
	if FromServer(plain) || Reason(plain) != "" {
		t.Error("gRPC's own status read as a server's")
	}
	// Another domain's ErrorInfo is not ours.
	st, _ := status.New(codes.NotFound, "x").WithDetails(&errdetails.ErrorInfo{Reason: ReasonNotFound, Domain: "example.com"})
	if FromServer(st.Err()) {
		t.Error("an ErrorInfo of another domain read as WDS's")
	}
	// Wrapped status errors are read through.
	err := fmt.Errorf("session: %w", New(codes.Unavailable, ReasonNotLeader, "no", KeyLeaderID, "n2", KeyLeaderEndpoint, ""))
	info := Info(err)
	if info.GetReason() != ReasonNotLeader || info.GetMetadata()[KeyLeaderID] != "n2" {
		t.Errorf("Info of a wrapped status = %v", info)
	}
	if _, ok := info.GetMetadata()[KeyLeaderEndpoint]; ok {
		t.Error("an empty metadata value was sent")
	}
	if Info(nil) != nil || Info(errors.New("plain")) != nil {
		t.Error("Info of a non-status error is not nil")
	}
}
