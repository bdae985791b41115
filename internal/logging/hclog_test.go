package logging

import (
	"log/slog"
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

func TestHCLogLevels(t *testing.T) {
	l, records := capture(t, LevelTrace)
	h := HCLog(l, "raft")
	for _, tc := range []struct {
		name string
		log  func(string, ...any)
		want string
	}{
		{"trace", h.Trace, "TRACE"},
		{"debug", h.Debug, "DEBUG"},
		{"info", h.Info, "INFO"},
		{"warn", h.Warn, "WARN"},
		{"error", h.Error, "ERROR"},
		{"Log(NoLevel)", func(m string, a ...any) { h.Log(hclog.NoLevel, m, a...) }, "INFO"},
		{"Log(Warn)", func(m string, a ...any) { h.Log(hclog.Warn, m, a...) }, "WARN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.log("msg "+tc.name, "k", "v")
			recs := records()
			if len(recs) != 1 {
				t.Fatalf("got %d records, want 1", len(recs))
			}
			r := recs[0]
			if r["level"] != tc.want || r["msg"] != "msg "+tc.name || r["k"] != "v" || r[NameKey] != "raft" {
				t.Fatalf("record %v; want level %s", r, tc.want)
			}
		})
	}
	h.Log(hclog.Off, "never")
	if recs := records(); len(recs) != 0 {
		t.Fatalf("Log(Off) wrote %v", recs)
	}
}

func TestHCLogSlogLevelSilences(t *testing.T) {
	l, records := capture(t, slog.LevelWarn)
	h := HCLog(l, "raft")
	h.Info("entering candidate state")
	h.Debug("votes")
	h.Warn("heartbeat timeout")
	recs := records()
	if len(recs) != 1 || recs[0]["msg"] != "heartbeat timeout" {
		t.Fatalf("records %v; want only the warning", recs)
	}
	if h.IsInfo() || h.IsDebug() || h.IsTrace() || !h.IsWarn() || !h.IsError() {
		t.Fatal("IsX disagree with the slog level")
	}
	if got := h.GetLevel(); got != hclog.Warn {
		t.Fatalf("GetLevel = %v; want Warn", got)
	}
}

func TestHCLogSetLevel(t *testing.T) {
	l, records := capture(t, slog.LevelDebug)
	h := HCLog(l, "raft")
	if got := h.GetLevel(); got != hclog.Debug {
		t.Fatalf("GetLevel = %v; want Debug (from the handler)", got)
	}
	child := h.Named("net").With("peer", "n2")
	h.SetLevel(hclog.Error)
	if got := child.GetLevel(); got != hclog.Error {
		t.Fatalf("child GetLevel = %v; want the shared Error", got)
	}
	child.Info("dropped")
	child.Warn("dropped")
	child.Error("kept")
	if recs := records(); len(recs) != 1 || recs[0]["msg"] != "kept" {
		t.Fatalf("records %v", recs)
	}
	// The hclog threshold cannot lower the slog one.
	h.SetLevel(hclog.Trace)
	h.Trace("dropped by the handler")
	if h.IsTrace() {
		t.Fatal("IsTrace with a Debug handler")
	}
	h.SetLevel(hclog.Off)
	h.Error("dropped")
	if recs := records(); len(recs) != 0 {
		t.Fatalf("records %v", recs)
	}
	h.SetLevel(hclog.NoLevel)
	if got := h.GetLevel(); got != hclog.Debug {
		t.Fatalf("GetLevel after NoLevel = %v; want Debug", got)
	}
}

func TestHCLogWith(t *testing.T) {
	l, records := capture(t, slog.LevelInfo)
	h := HCLog(l, "raft").With("node", "n1", "term", 3)
	h = h.With("term", 4, "odd")
	want := []any{"node", "n1", "term", 4, hclog.MissingKey, "odd"}
	if got := h.ImpliedArgs(); !reflect.DeepEqual(got, want) {
		t.Fatalf("ImpliedArgs = %v; want %v", got, want)
	}
	h.Info("elected", "addr", hclog.Fmt("%s:%d", "h", 1), "id", hclog.Hex(255), 7, "x")
	recs := records()
	if len(recs) != 1 {
		t.Fatalf("records %v", recs)
	}
	r := recs[0]
	for k, v := range map[string]any{
		"node": "n1", "term": 4.0, hclog.MissingKey: "odd",
		"addr": "h:1", "id": "0xff", "7": "x", NameKey: "raft",
	} {
		if r[k] != v {
			t.Errorf("%s = %v; want %v (record %v)", k, r[k], v, r)
		}
	}
	// With must not leak into the parent.
	HCLog(l, "raft").Info("plain")
	if r := records()[0]; r["node"] != nil {
		t.Fatalf("parent carries child's args: %v", r)
	}
}

func TestHCLogNames(t *testing.T) {
	l, records := capture(t, slog.LevelInfo)
	root := HCLog(l, "")
	if root.Name() != "" {
		t.Fatalf("Name = %q", root.Name())
	}
	for _, tc := range []struct {
		logger hclog.Logger
		want   string
	}{
		{root.Named("raft"), "raft"},
		{HCLog(l, "raft").Named("net"), "raft.net"},
		{HCLog(l, "raft").Named("net").Named("pipe"), "raft.net.pipe"},
		{HCLog(l, "raft").Named("net").ResetNamed("memberlist"), "memberlist"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			if got := tc.logger.Name(); got != tc.want {
				t.Fatalf("Name = %q; want %q", got, tc.want)
			}
			tc.logger.Info("x")
			if r := records()[0]; r[NameKey] != tc.want {
				t.Fatalf("record %v; want %s=%s", r, NameKey, tc.want)
			}
		})
	}
	root.Info("unnamed")
	if r := records()[0]; r[NameKey] != nil {
		t.Fatalf("unnamed record carries a name: %v", r)
	}
}

func TestHCLogSource(t *testing.T) {
	var buf strings.Builder
	l := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{AddSource: true}))
	HCLog(l, "raft").Info("where")
	if !strings.Contains(buf.String(), "hclog_test.go") {
		t.Fatalf("source does not point at the caller: %s", buf.String())
	}
}

func TestHCLogStandardLogger(t *testing.T) {
	l, records := capture(t, LevelTrace)
	h := HCLog(l, "raft")
	for _, tc := range []struct {
		name      string
		opts      *hclog.StandardLoggerOptions
		line      string
		wantLevel string
		wantMsg   string
	}{
		{"plain", nil, "[WARN] as is", "INFO", "[WARN] as is"},
		{"infer", &hclog.StandardLoggerOptions{InferLevels: true}, "[ERR] boom", "ERROR", "boom"},
		{"infer none", &hclog.StandardLoggerOptions{InferLevels: true}, "no tag", "INFO", "no tag"},
		{"infer timestamp", &hclog.StandardLoggerOptions{InferLevels: true, InferLevelsWithTimestamp: true},
			"2026/01/02 15:04:05 [DEBUG] hi", "DEBUG", "hi"},
		{"force", &hclog.StandardLoggerOptions{ForceLevel: hclog.Warn, InferLevels: true}, "[DEBUG] x", "WARN", "x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.StandardLogger(tc.opts).Print(tc.line)
			recs := records()
			if len(recs) != 1 {
				t.Fatalf("records %v", recs)
			}
			if r := recs[0]; r["level"] != tc.wantLevel || r["msg"] != tc.wantMsg || r[NameKey] != "raft" {
				t.Fatalf("record %v; want %s %q", r, tc.wantLevel, tc.wantMsg)
			}
		})
	}
	w := h.StandardWriter(&hclog.StandardLoggerOptions{InferLevels: true})
	if _, err := w.Write([]byte("[TRACE] direct\n")); err != nil {
		t.Fatal(err)
	}
	if r := records()[0]; r["level"] != "TRACE" || r["msg"] != "direct" {
		t.Fatalf("record %v", r)
	}
}

func TestStdLog(t *testing.T) {
	l, records := capture(t, slog.LevelDebug)
	std := StdLog(Component(l, "gossip"), slog.LevelInfo)
	std.Printf("[DEBUG] memberlist: Stream connection from=%s", "127.0.0.1:1")
	std.Print("[WARN] memberlist: Was able to connect to n2 over TCP but UDP probes failed")
	std.Print("[ERR] memberlist: Failed fallback ping")
	std.Print("[TRACE] below the handler's level")
	std.Print("untagged line")
	want := []struct{ level, msg string }{
		{"DEBUG", "memberlist: Stream connection from=127.0.0.1:1"},
		{"WARN", "memberlist: Was able to connect to n2 over TCP but UDP probes failed"},
		{"ERROR", "memberlist: Failed fallback ping"},
		{"INFO", "untagged line"},
	}
	recs := records()
	if len(recs) != len(want) {
		t.Fatalf("got %d records %v; want %d", len(recs), recs, len(want))
	}
	for i, w := range want {
		if r := recs[i]; r["level"] != w.level || r["msg"] != w.msg || r["component"] != "gossip" {
			t.Errorf("record %d = %v; want %s %q component=gossip", i, r, w.level, w.msg)
		}
	}
}
