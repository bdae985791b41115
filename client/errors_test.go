package client

import (
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/wdsio/wds/internal/rpcerr"
	"github.com/wdsio/wds/topology"
)

// TestFromStatus: the cell's statuses map to the library's sentinels by
// their ErrorInfo reason, and, from servers older than the reasons, by
// code (and the words "duplicate consumer id"), with the same text.
func TestFromStatus(t *testing.T) {
	for _, tc := range []struct {
		name   string
		err    error
		want   error
		reason string
		text   string
	}{
		{"duplicate by reason", rpcerr.New(codes.FailedPrecondition, rpcerr.ReasonDuplicateConsumer, `consumer_id "c" is held`),
			ErrDuplicateConsumer, rpcerr.ReasonDuplicateConsumer, `wds: consumer id in use: consumer_id "c" is held`},
		{"reason beats words", rpcerr.New(codes.FailedPrecondition, rpcerr.ReasonFailedPrecondition, "no duplicate consumer id here"),
			ErrFailedPrecondition, rpcerr.ReasonFailedPrecondition, "wds: failed precondition: no duplicate consumer id here"},
		{"domain deleting", rpcerr.New(codes.FailedPrecondition, rpcerr.ReasonDomainDeleting, `domain "d" is being deleted`),
			ErrFailedPrecondition, rpcerr.ReasonDomainDeleting, `wds: failed precondition: domain "d" is being deleted`},
		{"old server duplicate", status.Error(codes.FailedPrecondition, `consumer_id "c" is held (duplicate consumer id)`),
			ErrDuplicateConsumer, "", `wds: consumer id in use: consumer_id "c" is held (duplicate consumer id)`},
		{"old server precondition", status.Error(codes.FailedPrecondition, "nope"),
			ErrFailedPrecondition, "", "wds: failed precondition: nope"},
		{"internal", rpcerr.ToStatus(fmt.Errorf("x: %w", errors.New("y"))), ErrUnavailable, rpcerr.ReasonInternal, "wds: unavailable: Internal: x: y"},
		{"invalid field", rpcerr.ToStatus(topology.Invalid("hello.region", "mars", "unknown")), ErrInvalid, rpcerr.ReasonInvalidField, "wds: invalid request: hello.region: unknown (got mars)"},
		{"malformed", rpcerr.New(codes.InvalidArgument, rpcerr.ReasonMalformedMessage, "bad"), ErrInvalid, rpcerr.ReasonMalformedMessage, "wds: invalid request: bad"},
		{"not found", rpcerr.New(codes.NotFound, rpcerr.ReasonNotFound, "gone"), ErrNotFound, rpcerr.ReasonNotFound, "wds: not found: gone"},
		{"not leader", rpcerr.New(codes.Unavailable, rpcerr.ReasonNotLeader, "not me"), ErrUnavailable, rpcerr.ReasonNotLeader, "wds: unavailable: not me"},
		{"aborted", rpcerr.New(codes.Aborted, rpcerr.ReasonSessionSuperseded, "superseded"), ErrUnavailable, rpcerr.ReasonSessionSuperseded, "wds: unavailable: Aborted: superseded"},
		{"old server aborted", status.Error(codes.Aborted, "superseded"), ErrUnavailable, "", "wds: unavailable: Aborted: superseded"},
		{"transport", status.Error(codes.Unavailable, "connection refused"), ErrUnavailable, "", "wds: unavailable: connection refused"},
		{"too big", status.Error(codes.ResourceExhausted, "message larger than max"), ErrInvalid, "", "wds: invalid request: message larger than max"},
		{"unknown reason", rpcerr.New(codes.NotFound, "SOMETHING_NEW", "x"), ErrNotFound, "SOMETHING_NEW", "wds: not found: x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := fromStatus(tc.err)
			if !errors.Is(got, tc.want) || got.Error() != tc.text || Reason(got) != tc.reason {
				t.Errorf("fromStatus = %q (reason %q), want %v %q (reason %q)", got, Reason(got), tc.want, tc.text, tc.reason)
			}
			if w := fmt.Errorf("session: %w", got); Reason(w) != tc.reason {
				t.Errorf("Reason of a wrapped error = %q", Reason(w))
			}
		})
	}
	if err := fromStatus(errors.New("eof")); !errors.Is(err, ErrUnavailable) || Reason(err) != "" {
		t.Errorf("non-status error: %v", err)
	}
	if Reason(rpcerr.New(codes.NotFound, rpcerr.ReasonNotFound, "x")) != rpcerr.ReasonNotFound {
		t.Error("Reason of a bare status")
	}
}
