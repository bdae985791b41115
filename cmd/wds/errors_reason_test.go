package main

import (
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/wdsio/wds/internal/rpcerr"
)

// TestCallErrorByReason: a node's Unavailable answer (it carries an
// ErrorInfo) is never taken for a failure to reach the cell, even when its
// message quotes a transport error; gRPC's own is.
func TestCallErrorByReason(t *testing.T) {
	eps := []string{"127.0.0.1:1"}
	const refused = `connection error: desc = "transport: Error while dialing: dial tcp 127.0.0.1:2: connect: connection refused"`
	for _, tc := range []struct {
		err  error
		want string
	}{
		{rpcerr.New(codes.Unavailable, rpcerr.ReasonLeaderUnreachable, "forward to leader n2 at 127.0.0.1:2: "+refused),
			"wds: Unavailable: forward to leader n2 at 127.0.0.1:2: " + refused},
		{rpcerr.New(codes.Unavailable, rpcerr.ReasonNotLeader, "the cell has no leader right now; retry shortly"),
			"wds: Unavailable: the cell has no leader right now; retry shortly"},
		{status.Error(codes.Unavailable, refused),
			"wds: Unavailable: cannot reach the cell at 127.0.0.1:1: connection refused (is `wds dev` or `wds server` running? set --endpoint or WDS_ENDPOINT)"},
		// A cell older than the reasons: its own answers read as before.
		{status.Error(codes.Unavailable, "the cell has no leader right now; retry shortly"),
			"wds: Unavailable: the cell has no leader right now; retry shortly"},
	} {
		if got := formatError(callError(tc.err, eps, "10s")); got != tc.want {
			t.Errorf("callError(%v)\n got %s\nwant %s", tc.err, got, tc.want)
		}
	}
}
