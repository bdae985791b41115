package logging

import (
	"context"
	"log"
	"log/slog"
	"strings"
	"time"
)

// StdLog returns a *log.Logger (for memberlist and net/http) whose lines become
// records of l. A line that starts with a level tag in the style memberlist
// uses ("[TRACE]", "[DEBUG]", "[INFO]", "[WARN]", "[ERR]", "[ERROR]") is
// written at that level with the tag stripped; any other line at level.
func StdLog(l *slog.Logger, level slog.Level) *log.Logger {
	w := &lineWriter{
		level: level,
		mode:  modeInfer,
		emit: func(lv slog.Level, msg string) {
			ctx := context.Background()
			h := l.Handler()
			if !h.Enabled(ctx, lv) {
				return
			}
			_ = h.Handle(ctx, slog.NewRecord(time.Now(), lv, msg, 0))
		},
	}
	return log.New(w, "", 0)
}

type lineMode int

const (
	modePlain lineMode = iota // every line at level, as written
	modeInfer                 // a level tag sets the level; otherwise level
	modeForce                 // every line at level, any level tag stripped
)

// lineWriter turns each Write (one log.Logger line) into one record.
type lineWriter struct {
	level         slog.Level
	mode          lineMode
	skipTimestamp bool // look for the tag after a leading timestamp
	emit          func(level slog.Level, msg string)
}

func (w *lineWriter) Write(p []byte) (int, error) {
	line := strings.TrimRight(string(p), " \t\r\n")
	level, msg := w.level, line
	if w.mode != modePlain {
		if tagged, rest, ok := splitLevelTag(line, w.skipTimestamp); ok {
			msg = rest
			if w.mode == modeInfer {
				level = tagged
			}
		}
	}
	w.emit(level, msg)
	return len(p), nil
}

// levelTags are the prefixes hclog and memberlist put before a message.
var levelTags = []struct {
	tag   string
	level slog.Level
}{
	{"[TRACE]", LevelTrace},
	{"[DEBUG]", slog.LevelDebug},
	{"[INFO]", slog.LevelInfo},
	{"[WARN]", slog.LevelWarn},
	{"[WARNING]", slog.LevelWarn},
	{"[ERR]", slog.LevelError},
	{"[ERROR]", slog.LevelError},
}

// splitLevelTag finds a level tag at the start of line (after a timestamp made
// of digits and date/time punctuation, if skipTimestamp) and returns its level
// and the text after it.
func splitLevelTag(line string, skipTimestamp bool) (slog.Level, string, bool) {
	s := line
	if skipTimestamp {
		s = strings.TrimLeft(s, "0123456789-/:.,TZ+ ")
	}
	for _, t := range levelTags {
		if rest, ok := strings.CutPrefix(s, t.tag); ok {
			return t.level, strings.TrimLeft(rest, " "), true
		}
	}
	return 0, line, false
}
