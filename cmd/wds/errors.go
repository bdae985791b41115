package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/wdsio/wds/client"
	"github.com/wdsio/wds/internal/rpcerr"
)

// usageError is a wrong command line: main prints it as one line with a
// hint to the command's --help. Errors at run time (the cell said no, a
// connection failed) are printed alone.
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

// helpHint is the short pointer a usage error ends with.
func helpHint(cmd *cobra.Command) string {
	return "(see '" + cmd.CommandPath() + " --help')"
}

// clientSentinels are the client library's sentinel errors with the
// cell's status code each stands for.
var clientSentinels = []struct {
	err  error
	code codes.Code
}{
	{client.ErrInvalid, codes.InvalidArgument},
	{client.ErrNotFound, codes.NotFound},
	{client.ErrDuplicateConsumer, codes.FailedPrecondition},
	{client.ErrFailedPrecondition, codes.FailedPrecondition},
	{client.ErrUnavailable, codes.Unavailable},
}

// formatError renders err as the one line main prints: "wds: <message>",
// and for errors the cell returned "wds: <code>: <message>", where the
// message names the offending flag or field. A usage error ends with a
// hint to the command's --help.
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
	for _, s := range clientSentinels {
		if rest, ok := strings.CutPrefix(msg, s.err.Error()+": "); ok && errors.Is(err, s.err) {
			return "wds: " + s.code.String() + ": " + rest
		}
	}
	if u, ok := asUsageError(err); ok {
		return "wds: " + oneLine(msg) + " " + helpHint(u.cmd)
	}
	if strings.HasPrefix(msg, "unknown command") {
		// cobra's own message for `wds <typo>`, with its suggestions on
		// lines of their own: "...\n\nDid you mean this?\n\tdev\n".
		first, more, _ := strings.Cut(msg, "\n")
		var sugg []string
		for _, l := range strings.Split(more, "\n") {
			if l, ok := strings.CutPrefix(l, "\t"); ok && strings.TrimSpace(l) != "" {
				sugg = append(sugg, strings.TrimSpace(l))
			}
		}
		return "wds: " + first + didYouMean(sugg) + " (see 'wds --help')"
	}
	if strings.HasPrefix(msg, "wds: ") {
		return msg
	}
	return "wds: " + msg
}

// oneLine joins the lines of a message.
func oneLine(msg string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(msg, "\n", " ")), " ")
}

// flagError turns pflag's error about the command line into a usage
// error; an unknown flag gets the closest flags of the command as
// suggestions.
func flagError(cmd *cobra.Command, err error) error {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "unknown flag: --"); ok {
		return usageErrorf(cmd, "unknown flag --%s for %q%s", name, cmd.CommandPath(), didYouMean(flagSuggestions(cmd, name)))
	}
	// `-domain` is the shorthand -d followed by "omain" to pflag.
	if rest, ok := strings.CutPrefix(msg, "unknown shorthand flag: "); ok {
		if _, word, ok := strings.Cut(rest, " in -"); ok && len(word) > 1 {
			name, _, _ := strings.Cut(word, "=")
			if f := cmd.Flags().Lookup(name); f != nil && !f.Hidden {
				return usageErrorf(cmd, "%s; did you mean --%s?", msg, name)
			}
			return usageErrorf(cmd, "%s%s", msg, didYouMean(flagSuggestions(cmd, name)))
		}
	}
	return &usageError{cmd: cmd, err: err}
}

// flagSuggestions returns the flags of cmd (its own and inherited) closest
// to name: within a small edit distance, or starting with it; none when
// nothing is close.
func flagSuggestions(cmd *cobra.Command, name string) []string {
	seen := map[string]bool{}
	var names []string
	add := func(f *pflag.Flag) {
		if !f.Hidden && f.Deprecated == "" && !seen[f.Name] {
			seen[f.Name] = true
			names = append(names, f.Name)
		}
	}
	cmd.Flags().VisitAll(add)
	cmd.InheritedFlags().VisitAll(add)
	var out []string
	for _, s := range suggest(name, names) {
		out = append(out, "--"+s)
	}
	return out
}

// suggest returns the candidates closest to typed: those at the smallest
// edit distance (counting a swap of two neighbours as one edit) if that is
// at most maxDistance(typed), else those typed is a prefix of (for at least
// 3 characters); at most 3, in order.
func suggest(typed string, candidates []string) []string {
	best, limit := -1, maxDistance(typed)
	var out []string
	for _, c := range candidates {
		d := editDistance(strings.ToLower(typed), strings.ToLower(c))
		switch {
		case d > limit:
		case best < 0 || d < best:
			best, out = d, []string{c}
		case d == best:
			out = append(out, c)
		}
	}
	if len(out) == 0 && len(typed) >= 3 {
		for _, c := range candidates {
			if strings.HasPrefix(c, typed) {
				out = append(out, c)
			}
		}
	}
	slices.Sort(out)
	if len(out) > 3 {
		out = out[:3]
	}
	return out
}

// maxDistance is how many edits still make a close name: 1 for short ones.
func maxDistance(s string) int {
	if len(s) <= 4 {
		return 1
	}
	return 2
}

// editDistance is the optimal string alignment distance of a and b:
// insertions, deletions, substitutions and swaps of adjacent characters.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev2 := make([]int, len(rb)+1)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(rb)]
}

// didYouMean renders suggestions as "; did you mean X?", "; did you mean
// X or Y?", or "" for none.
func didYouMean(s []string) string {
	switch len(s) {
	case 0:
		return ""
	case 1:
		return "; did you mean " + s[0] + "?"
	}
	return "; did you mean " + strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1] + "?"
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
	if nl := (*client.NoLeaderError)(nil); errors.As(err, &nl) && errors.Is(nl.Err, context.DeadlineExceeded) {
		return status.Errorf(codes.DeadlineExceeded, "%s within %s (--timeout)", nl.Summary, timeout)
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
	case st.Code() == codes.Unavailable && transportFailure(err):
		return status.Errorf(codes.Unavailable, "cannot reach the cell at %s: %s (is `wds dev` or `wds server` running? set --endpoint or %s)",
			strings.Join(endpoints, ","), shortTransport(st.Message()), EnvEndpoint)
	}
	return err
}

// transportFailure tells a connection failure (gRPC's own Unavailable) from
// a node that answered Unavailable (no leader right now): a node's statuses
// carry an ErrorInfo (rpcerr), gRPC's own do not. Those carry nothing
// machine-readable at all but the code, which a cell older than the
// reasons shares for its own answers, so only the text of the dialer's
// error tells a connection failure.
func transportFailure(err error) bool {
	if rpcerr.FromServer(err) {
		return false
	}
	msg := status.Convert(err).Message()
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
