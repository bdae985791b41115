package topology

import (
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// ErrInvalid is the sentinel every validation error of this package matches
// with errors.Is, so servers can map bad input to InvalidArgument in one
// place without knowing which field was wrong.
var ErrInvalid = errors.New("topology: invalid")

// FieldError reports a value that was rejected, naming the field it came
// from. Operators fix their input from the message alone, so the message
// always carries the field path (as written in the file or the wire message)
// and, when there is one, the offending value.
type FieldError struct {
	// Field is the path of the field, e.g. "domain.shards" or
	// "regions[0].nodes[1].raft". Empty only for errors about the input as a
	// whole (such as YAML syntax errors).
	Field string
	// Value is the rejected value as it should be shown to the user; string
	// values are quoted so empty or blank input is visible. Empty when the
	// value is missing or not worth echoing.
	Value string
	// Reason says what is wrong and, where it helps, what would be right.
	Reason string
}

// Error returns "<field>: <reason> (got <value>)".
func (e *FieldError) Error() string {
	if e.Field == "" {
		return e.detail()
	}
	return e.Field + ": " + e.detail()
}

// detail is the message without the field, for wrappers that print the field
// themselves (FileError).
func (e *FieldError) detail() string {
	if e.Value == "" {
		return e.Reason
	}
	return e.Reason + " (got " + e.Value + ")"
}

// Is makes every FieldError match ErrInvalid.
func (e *FieldError) Is(target error) bool { return target == ErrInvalid }

// Invalid builds a FieldError; format and args make the reason.
func Invalid(field, value, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Value: value, Reason: fmt.Sprintf(format, args...)}
}

// withPrefix returns err with its field path placed under prefix, so
// validators can name fields relative to their own value ("shards") and the
// caller that knows the context makes it absolute ("domains[2].shards").
func withPrefix(prefix string, err error) error {
	var fe *FieldError
	if !errors.As(err, &fe) {
		return err
	}
	return prefixField(prefix, fe)
}

// prefixField is withPrefix for a *FieldError; it returns a copy.
func prefixField(prefix string, fe *FieldError) *FieldError {
	c := *fe
	switch {
	case prefix == "":
	case c.Field == "":
		c.Field = prefix
	case c.Field[0] == '[':
		c.Field = prefix + c.Field
	default:
		c.Field = prefix + "." + c.Field
	}
	return &c
}

// renamed returns a copy of e naming field instead, for callers that know
// the full path of the value a validator checked under a short name.
func renamed(e *FieldError, field string) *FieldError {
	c := *e
	c.Field = field
	return &c
}

// maxEcho bounds how much of a rejected string is repeated in an error: input
// comes from files and the wire and may be arbitrarily large.
const maxEcho = 80

// quote formats a user-supplied string for FieldError.Value: quoted, so blank
// or odd input is visible, and truncated, so a huge value cannot flood logs.
func quote(s string) string {
	if len(s) <= maxEcho {
		return strconv.Quote(s)
	}
	cut := maxEcho
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + "…"
}
