package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/wdsio/wds/client"
)

// usageError is a wrong command line: main prints it with the command's
// usage. Errors at run time (the cell said no, a connection failed) are
// printed alone.
type usageError struct {
	cmd *cobra.Command
	err error
}

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usageErrorf(cmd *cobra.Command, format string, args ...any) error {
	return &usageError{cmd: cmd, err: fmt.Errorf(format, args...)}
}

func asUsageError(err error) (*usageError, bool) {
	var u *usageError
	if errors.As(err, &u) {
		return u, true
	}
	return nil, false
}

// formatError renders err as the one line main prints: "wds: <message>",
// and for errors the cell returned "wds: <code>: <message>", where the
// message names the offending field.
func formatError(err error) string {
	if st, ok := status.FromError(err); ok && st.Code() != codes.OK && st.Code() != codes.Unknown {
		msg := st.Message()
		if st.Code() == codes.AlreadyExists && !strings.Contains(msg, "exist") {
			msg += " already exists"
		}
		return "wds: " + st.Code().String() + ": " + msg
	}
	msg := err.Error()
	// The client library's sentinel errors carry the cell's status code
	// as a phrase; print them like the admin commands' errors.
	for _, s := range []struct {
		err  error
		code codes.Code
	}{
		{client.ErrInvalid, codes.InvalidArgument},
		{client.ErrNotFound, codes.NotFound},
		{client.ErrDuplicateConsumer, codes.FailedPrecondition},
		{client.ErrFailedPrecondition, codes.FailedPrecondition},
		{client.ErrUnavailable, codes.Unavailable},
	} {
		if rest, ok := strings.CutPrefix(msg, s.err.Error()+": "); ok && errors.Is(err, s.err) {
			return "wds: " + s.code.String() + ": " + rest
		}
	}
	if _, usage := asUsageError(err); !usage && strings.HasPrefix(msg, "unknown command") {
		// cobra's own message (with suggestions) for `wds <typo>`.
		return "wds: " + strings.TrimRight(msg, "\n") + "\nRun 'wds --help' for usage."
	}
	if strings.HasPrefix(msg, "wds: ") {
		return msg
	}
	return "wds: " + msg
}

// callError turns an admin call's error into one that formatError prints
// helpfully: transport failures and timeouts say which endpoints were tried
// and what to check.
func callError(err error, endpoints []string, timeout string) error {
	if err == nil {
		return nil
	}
	var ue *client.UnreachableError
	if errors.As(err, &ue) {
		return status.Errorf(codes.Unavailable, "cannot reach the cell at %s: %s (is `wds dev` or `wds server` running? set --endpoint or %s)",
			strings.Join(endpoints, ","), strings.Join(ue.Causes, "; "), EnvEndpoint)
	}
	if errors.Is(err, client.ErrUnavailable) && errors.Is(err, context.DeadlineExceeded) {
		return status.Errorf(codes.DeadlineExceeded, "%s within %s (--timeout)", strings.TrimPrefix(strings.TrimSuffix(err.Error(), ": "+context.DeadlineExceeded.Error()), client.ErrUnavailable.Error()+": "), timeout)
	}
	st, ok := status.FromError(err)
	if !ok {
		if errors.Is(err, context.DeadlineExceeded) {
			return status.Errorf(codes.DeadlineExceeded, "no answer from %s within %s (--timeout)", strings.Join(endpoints, ","), timeout)
		}
		return err
	}
	switch {
	case st.Code() == codes.DeadlineExceeded:
		return status.Errorf(codes.DeadlineExceeded, "no answer from %s within %s (--timeout): %s", strings.Join(endpoints, ","), timeout, st.Message())
	case st.Code() == codes.Unavailable && transportFailure(st.Message()):
		return status.Errorf(codes.Unavailable, "cannot reach the cell at %s: %s (is `wds dev` or `wds server` running? set --endpoint or %s)",
			strings.Join(endpoints, ","), shortTransport(st.Message()), EnvEndpoint)
	}
	return err
}

// transportFailure tells a connection failure (gRPC's own Unavailable) from
// a node that answered Unavailable (no leader right now).
func transportFailure(msg string) bool {
	for _, s := range []string{"connection error", "transport:", "connection refused", "dial tcp", "name resolver", "produced zero addresses", "connection reset", "EOF"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// shortTransport extracts the root cause of a gRPC transport error
// ("connection refused") from its nested description.
func shortTransport(msg string) string {
	if i := strings.LastIndex(msg, ": "); i >= 0 && i+2 < len(msg) {
		return strings.Trim(msg[i+2:], "\" ")
	}
	return msg
}
