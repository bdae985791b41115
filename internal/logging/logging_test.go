package logging

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
)

// capture returns a JSON logger at level and a function that decodes what it
// has written so far, one map per record.
func capture(t *testing.T, level slog.Level) (*slog.Logger, func() []map[string]any) {
	t.Helper()
	var buf bytes.Buffer
	l, err := New(&buf, level, FormatJSON)
	if err != nil {
		t.Fatal(err)
	}
	return l, func() []map[string]any {
		var recs []map[string]any
		for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
			if line == "" {
				continue
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Fatalf("bad JSON line %q: %v", line, err)
			}
			recs = append(recs, m)
		}
		buf.Reset()
		return recs
	}
}

func TestParseLevel(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want slog.Level
	}{
		{"trace", LevelTrace},
		{"TRACE", LevelTrace},
		{"debug", slog.LevelDebug},
		{"Info", slog.LevelInfo},
		{" info ", slog.LevelInfo},
		{"warn", slog.LevelWarn},
		{"warning", slog.LevelWarn},
		{"error", slog.LevelError},
		{"debug+2", slog.LevelDebug + 2},
		{"INFO-1", slog.LevelInfo - 1},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseLevel(tc.in)
			if err != nil || got != tc.want {
				t.Fatalf("ParseLevel(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			}
		})
	}
	for _, bad := range []string{"", "verbose", "info+x"} {
		t.Run("bad/"+bad, func(t *testing.T) {
			_, err := ParseLevel(bad)
			if err == nil || !strings.Contains(err.Error(), `"`+bad+`"`) {
				t.Fatalf("ParseLevel(%q) error = %v; want one naming the value", bad, err)
			}
		})
	}
}

func TestNew(t *testing.T) {
	for _, format := range []string{FormatText, FormatJSON} {
		t.Run(format, func(t *testing.T) {
			var buf bytes.Buffer
			l, err := New(&buf, LevelTrace, format)
			if err != nil {
				t.Fatal(err)
			}
			Component(l, "cell").Log(t.Context(), LevelTrace, "hello", "k", 1)
			out := buf.String()
			for _, want := range []string{"TRACE", "hello", "cell", "component"} {
				if !strings.Contains(out, want) {
					t.Errorf("output %q lacks %q", out, want)
				}
			}
			if strings.Contains(out, "DEBUG-4") {
				t.Errorf("trace level printed as DEBUG-4: %q", out)
			}
		})
	}
	t.Run("level filters", func(t *testing.T) {
		var buf bytes.Buffer
		l, _ := New(&buf, slog.LevelWarn, FormatText)
		l.Info("dropped")
		l.Warn("kept")
		if out := buf.String(); strings.Contains(out, "dropped") || !strings.Contains(out, "kept") {
			t.Fatalf("output %q", out)
		}
	})
	t.Run("bad format", func(t *testing.T) {
		_, err := New(&bytes.Buffer{}, slog.LevelInfo, "xml")
		if err == nil || !strings.Contains(err.Error(), `"xml"`) {
			t.Fatalf("error = %v; want one naming \"xml\"", err)
		}
	})
}

func TestDiscard(t *testing.T) {
	l := Discard()
	l.Error("nothing")
	if l.Enabled(t.Context(), slog.LevelError) {
		t.Fatal("Discard logger is enabled")
	}
}
