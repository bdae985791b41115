package logging

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// LevelTrace is the slog level that hclog's Trace maps to: below Debug, and
// printed as "TRACE" by the handlers that New builds.
const LevelTrace = slog.LevelDebug - 4

// Output formats accepted by New.
const (
	FormatText = "text"
	FormatJSON = "json"
)

// New returns a logger that writes records at or above level to w, formatted
// as format: "text" (logfmt-style key=value) or "json" (one object per line).
func New(w io.Writer, level slog.Level, format string) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: replaceLevel}
	switch format {
	case FormatText:
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case FormatJSON:
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("logging: unknown log format %q (want %q or %q)", format, FormatText, FormatJSON)
	}
}

// replaceLevel prints LevelTrace as "TRACE" rather than slog's "DEBUG-4".
func replaceLevel(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.LevelKey {
		if l, ok := a.Value.Any().(slog.Level); ok && l == LevelTrace {
			a.Value = slog.StringValue("TRACE")
		}
	}
	return a
}

// ParseLevel parses a level name as given on a command line: "trace", "debug",
// "info", "warn" (or "warning") or "error", in any case. slog's own syntax with
// an offset ("debug+2", "INFO-1") is accepted too.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "trace":
		return LevelTrace, nil
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.TrimSpace(s))); err != nil {
		return 0, fmt.Errorf("logging: unknown log level %q (want trace, debug, info, warn or error)", s)
	}
	return l, nil
}

// Component returns l with the attribute component=name, the convention every
// WDS subsystem uses to label its records.
func Component(l *slog.Logger, name string) *slog.Logger {
	return l.With("component", name)
}

// Discard returns a logger that drops every record, for tests.
func Discard() *slog.Logger {
	return slog.New(slog.DiscardHandler)
}
