package logging

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"runtime"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

// NameKey is the attribute under which HCLog records carry the hclog logger
// name ("raft", "raft.net", ...).
const NameKey = "logger"

// HCLog returns an hclog.Logger, for hashicorp/raft and memberlist, that writes
// through l. Records carry name under NameKey when name is not empty.
//
// Levels map one to one (Trace goes to LevelTrace, NoLevel to Info), and a
// record is written only if l's handler is enabled at its level: a logger at
// slog.LevelWarn silences raft's INFO election chatter. SetLevel adds a second,
// hclog-side threshold on top of that, shared by every logger derived from the
// result through With, Named and ResetNamed; SetLevel(hclog.NoLevel) removes
// it again, leaving only the slog handler's level.
func HCLog(l *slog.Logger, name string) hclog.Logger {
	return &hclogAdapter{
		base:   l,
		logger: l,
		name:   name,
		level:  new(atomic.Int32),
	}
}

// hclogAdapter implements hclog.Logger on top of a *slog.Logger. It is
// immutable apart from the shared level; derived loggers are copies.
type hclogAdapter struct {
	base    *slog.Logger  // the logger HCLog was given
	logger  *slog.Logger  // base.With(implied...)
	name    string        // dotted hclog name
	implied []any         // key/value pairs added by With, keys unique
	level   *atomic.Int32 // hclog.Level threshold; NoLevel: none
}

var _ hclog.Logger = (*hclogAdapter)(nil)

// slogLevel maps an hclog level to the slog level its records are written at.
func slogLevel(l hclog.Level) slog.Level {
	switch l {
	case hclog.Trace:
		return LevelTrace
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	default: // NoLevel, Info
		return slog.LevelInfo
	}
}

// hclogLevel maps a slog level back to the hclog level that covers it.
func hclogLevel(l slog.Level) hclog.Level {
	switch {
	case l <= LevelTrace:
		return hclog.Trace
	case l < slog.LevelInfo:
		return hclog.Debug
	case l < slog.LevelWarn:
		return hclog.Info
	case l < slog.LevelError:
		return hclog.Warn
	default:
		return hclog.Error
	}
}

// enabled reports whether a record at level passes both thresholds.
func (a *hclogAdapter) enabled(level hclog.Level) bool {
	if level == hclog.Off {
		return false
	}
	if level == hclog.NoLevel {
		level = hclog.Info
	}
	if own := hclog.Level(a.level.Load()); own != hclog.NoLevel && level < own {
		return false
	}
	return a.logger.Handler().Enabled(context.Background(), slogLevel(level))
}

// emit writes one record; pc is the caller's program counter, or 0.
func (a *hclogAdapter) emit(level hclog.Level, msg string, args []any, pc uintptr) {
	if !a.enabled(level) {
		return
	}
	r := slog.NewRecord(time.Now(), slogLevel(level), msg, pc)
	if a.name != "" {
		r.AddAttrs(slog.String(NameKey, a.name))
	}
	r.AddAttrs(attrs(args)...)
	_ = a.logger.Handler().Handle(context.Background(), r)
}

// callerPC returns the program counter of the code that called the hclog
// method which called callerPC, so that records point at raft, not here.
func callerPC() uintptr {
	var pcs [1]uintptr
	// 0: runtime.Callers, 1: callerPC, 2: the hclog method, 3: its caller.
	runtime.Callers(3, pcs[:])
	return pcs[0]
}

func (a *hclogAdapter) Log(level hclog.Level, msg string, args ...any) {
	a.emit(level, msg, args, callerPC())
}

func (a *hclogAdapter) Trace(msg string, args ...any) {
	a.emit(hclog.Trace, msg, args, callerPC())
}

func (a *hclogAdapter) Debug(msg string, args ...any) {
	a.emit(hclog.Debug, msg, args, callerPC())
}

func (a *hclogAdapter) Info(msg string, args ...any) {
	a.emit(hclog.Info, msg, args, callerPC())
}

func (a *hclogAdapter) Warn(msg string, args ...any) {
	a.emit(hclog.Warn, msg, args, callerPC())
}

func (a *hclogAdapter) Error(msg string, args ...any) {
	a.emit(hclog.Error, msg, args, callerPC())
}

func (a *hclogAdapter) IsTrace() bool { return a.enabled(hclog.Trace) }
func (a *hclogAdapter) IsDebug() bool { return a.enabled(hclog.Debug) }
func (a *hclogAdapter) IsInfo() bool  { return a.enabled(hclog.Info) }
func (a *hclogAdapter) IsWarn() bool  { return a.enabled(hclog.Warn) }
func (a *hclogAdapter) IsError() bool { return a.enabled(hclog.Error) }

// ImpliedArgs returns the key/value pairs added by With, in order.
func (a *hclogAdapter) ImpliedArgs() []any {
	return append([]any(nil), a.implied...)
}

// With returns a logger whose records carry args (key/value pairs). A key
// given again replaces the earlier value, as in hclog; an odd trailing value
// is kept under the key "EXTRA_VALUE_AT_END".
func (a *hclogAdapter) With(args ...any) hclog.Logger {
	if len(args)%2 == 1 {
		args = append(args[:len(args)-1:len(args)-1], hclog.MissingKey, args[len(args)-1])
	}
	implied := append([]any(nil), a.implied...)
next:
	for i := 0; i+1 < len(args); i += 2 {
		key := keyString(args[i])
		for j := 0; j < len(implied); j += 2 {
			if implied[j] == key {
				implied[j+1] = args[i+1]
				continue next
			}
		}
		implied = append(implied, key, args[i+1])
	}
	c := *a
	c.implied = implied
	c.logger = a.base
	if len(implied) > 0 {
		c.logger = a.base.With(attrsAny(implied)...)
	}
	return &c
}

// Name returns the dotted name built by Named and ResetNamed.
func (a *hclogAdapter) Name() string { return a.name }

// Named returns a logger named "<name>.<sub>" (or sub if this one has no name).
func (a *hclogAdapter) Named(sub string) hclog.Logger {
	c := *a
	if a.name != "" {
		c.name = a.name + "." + sub
	} else {
		c.name = sub
	}
	return &c
}

// ResetNamed returns a logger named name, whatever this one is called.
func (a *hclogAdapter) ResetNamed(name string) hclog.Logger {
	c := *a
	c.name = name
	return &c
}

// SetLevel sets the hclog-side threshold shared by this logger and its
// relatives; hclog.NoLevel removes it, hclog.Off silences them.
func (a *hclogAdapter) SetLevel(level hclog.Level) {
	a.level.Store(int32(level))
}

// GetLevel returns the threshold set by SetLevel or, if none, the lowest
// hclog level the slog handler is enabled for (Off if none).
func (a *hclogAdapter) GetLevel() hclog.Level {
	if own := hclog.Level(a.level.Load()); own != hclog.NoLevel {
		return own
	}
	for l := hclog.Trace; l <= hclog.Error; l++ {
		if a.logger.Handler().Enabled(context.Background(), slogLevel(l)) {
			return l
		}
	}
	return hclog.Off
}

// StandardLogger returns a *log.Logger whose lines are written through this
// logger, as StandardWriter describes.
func (a *hclogAdapter) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(a.StandardWriter(opts), "", 0)
}

// StandardWriter returns a writer that turns each Write into a record.
// opts behave as in hclog: ForceLevel writes every line at that level (any
// "[LEVEL]" prefix stripped); otherwise InferLevels takes the level from such a
// prefix (Info without one), skipping a leading timestamp when
// InferLevelsWithTimestamp is set; otherwise lines are written at Info as is.
func (a *hclogAdapter) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	if opts == nil {
		opts = &hclog.StandardLoggerOptions{}
	}
	w := &lineWriter{
		level: slog.LevelInfo,
		emit: func(level slog.Level, msg string) {
			a.emit(hclogLevel(level), msg, nil, 0)
		},
	}
	switch {
	case opts.ForceLevel != hclog.NoLevel && opts.ForceLevel != hclog.Off:
		w.level, w.mode = slogLevel(opts.ForceLevel), modeForce
	case opts.ForceLevel == hclog.Off:
		w.emit = func(slog.Level, string) {}
	case opts.InferLevels:
		w.mode, w.skipTimestamp = modeInfer, opts.InferLevelsWithTimestamp
	}
	return w
}

// keyString turns an hclog key into a slog key.
func keyString(k any) string {
	if s, ok := k.(string); ok {
		return s
	}
	return fmt.Sprint(k)
}

// value renders hclog's formatting wrappers the way hclog does.
func value(v any) any {
	switch v := v.(type) {
	case hclog.Format:
		if len(v) == 0 {
			return ""
		}
		if f, ok := v[0].(string); ok {
			return fmt.Sprintf(f, v[1:]...)
		}
		return fmt.Sprint(v...)
	case hclog.Hex:
		return "0x" + strconv.FormatInt(int64(v), 16)
	case hclog.Octal:
		return "0" + strconv.FormatInt(int64(v), 8)
	case hclog.Binary:
		return "0b" + strconv.FormatInt(int64(v), 2)
	case hclog.Quote:
		return strconv.Quote(string(v))
	default:
		return v
	}
}

// attrs converts hclog key/value pairs to slog attributes.
func attrs(args []any) []slog.Attr {
	if len(args) == 0 {
		return nil
	}
	out := make([]slog.Attr, 0, (len(args)+1)/2)
	for i := 0; i < len(args); i += 2 {
		if i+1 == len(args) {
			out = append(out, slog.Any(hclog.MissingKey, value(args[i])))
			break
		}
		out = append(out, slog.Any(keyString(args[i]), value(args[i+1])))
	}
	return out
}

// attrsAny is attrs as ...any, for slog.Logger.With.
func attrsAny(args []any) []any {
	as := attrs(args)
	out := make([]any, len(as))
	for i, a := range as {
		out[i] = a
	}
	return out
}
