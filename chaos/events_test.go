package chaos

import (
	"strings"
	"testing"
)

const sampleLog = `{"event":"welcome","consumer":"c1","session":"s-1","ttl":"10s"}
{"event":"grant","consumer":"c1","domain":"orders","from":"00000000-0000-0000-0000-000000000000","to":"80000000-0000-0000-0000-000000000000","to_end":false,"token":"1.42","time":"2026-11-25T18:00:00.000000001Z"}
{"event":"grant","consumer":"c1","domain":"orders","from":"80000000-0000-0000-0000-000000000000","to":"ffffffff-ffff-ffff-ffff-ffffffffffff","to_end":true,"token":"1.43","time":"2026-11-25T18:00:00.5Z"}

{"event":"revoke","consumer":"c1","domain":"orders","from":"00000000-0000-0000-0000-000000000000","to":"80000000-0000-0000-0000-000000000000","to_end":false,"token":"1.42","time":"2026-11-25T18:00:01Z"}
{"event":"release","consumer":"c1","domain":"orders","from":"00000000-0000-0000-0000-000000000000","to":"80000000-0000-0000-0000-000000000000","to_end":false,"token":"1.42","time":"2026-11-25T18:00:01.25Z"}
{"event":"grant","consumer":"c1","domain":"orders","from":"80000000-0000-0000-0000-000000000000","to":"ffffffff-ffff-ffff-ffff-ffffffffffff","to_end":true,"token":"1.43","time":"2026-11-25T18:00:01.5Z"}
{"event":"drained","consumer":"c1","time":"2026-11-25T18:00:01.7Z"}
{"event":"lost","consumer":"c1","domain":"orders","from":"80000000-0000-0000-0000-000000000000","to":"ffffffff-ffff-ffff-ffff-ffffffffffff","to_end":true,"token":"1.43","time":"2026-11-25T18:00:02Z"}
{"event":"revoke","consumer":"c1","domain":"orders","from":"80000000-0000-0000-0000-000000000000","to":"ffffffff-ffff-ffff-ffff-ffffffffffff","to_end":true,"token":"1.43","time":"2026-11-25T18:00:03Z"}
{"event":"grant","consumer":"c1","domain":"users","from":"00000000-0000-0000-0000-000000000000","to":"ffffffff-ffff-ffff-ffff-ffffffffffff","to_end":true,"token":"2.7","time":"2026-11-25T18:00:04Z"}
`

func TestParseEvents(t *testing.T) {
	got, err := ParseEvents("", strings.NewReader(sampleLog))
	if err != nil {
		t.Fatal(err)
	}
	want := []Interval{
		iv("c1", "orders", rng(0, full/2), tok(1, 42), at(1), at(1e9)),
		iv("c1", "orders", rng(full/2, full), tok(1, 43), at(5e8), at(2e9)),
		iv("c1", "users", rng(0, full), tok(2, 7), at(4e9), open),
	}
	if len(got) != len(want) {
		t.Fatalf("got %d intervals, want %d:\n%s", len(got), len(want), dump(got))
	}
	for i := range want {
		if !got[i].Start.Equal(want[i].Start) || !got[i].End.Equal(want[i].End) {
			t.Errorf("interval %d: got %s, want %s", i, got[i], want[i])
		}
		got[i].Start, got[i].End = want[i].Start, want[i].End // equal instants, maybe other locations
		if got[i] != want[i] {
			t.Errorf("interval %d: got %s, want %s", i, got[i], want[i])
		}
	}

	// The consumer argument overrides the lines'.
	got, err = ParseEvents("c9", strings.NewReader(sampleLog))
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range got {
		if x.Consumer != "c9" {
			t.Errorf("consumer %q, want c9", x.Consumer)
		}
	}
}

func TestParseEventsRegrant(t *testing.T) {
	const log = `{"event":"grant","consumer":"c1","domain":"d","from":"00000000-0000-0000-0000-000000000000","to":"80000000-0000-0000-0000-000000000000","token":"1.1","time":"2026-11-25T18:00:00Z"}
{"event":"grant","consumer":"c1","domain":"d","from":"00000000-0000-0000-0000-000000000000","to":"40000000-0000-0000-0000-000000000000","token":"1.2","time":"2026-11-25T18:00:01Z"}
{"event":"grant","consumer":"c2","domain":"d","from":"00000000-0000-0000-0000-000000000000","to":"40000000-0000-0000-0000-000000000000","token":"1.3","time":"2026-11-25T18:00:01Z"}
{"event":"release","consumer":"c2","domain":"d","from":"00000000-0000-0000-0000-000000000000","to":"40000000-0000-0000-0000-000000000000","token":"1.3","time":"2026-11-25T18:00:02Z"}
`
	got, err := ParseEvents("", strings.NewReader(log))
	if err != nil {
		t.Fatal(err)
	}
	want := []Interval{
		iv("c1", "d", rng(0, full/2), tok(1, 1), at(0), at(1e9)),
		iv("c1", "d", rng(0, full/4), tok(1, 2), at(1e9), open),
		iv("c2", "d", rng(0, full/4), tok(1, 3), at(1e9), at(2e9)),
	}
	if len(got) != len(want) {
		t.Fatalf("got:\n%swant:\n%s", dump(got), dump(want))
	}
	for i := range want {
		if !got[i].Start.Equal(want[i].Start) || !got[i].End.Equal(want[i].End) || got[i].Range != want[i].Range || got[i].Consumer != want[i].Consumer {
			t.Errorf("interval %d: got %s, want %s", i, got[i], want[i])
		}
	}
	// c1 never gave up its second grant, which c2 got too: the parsed history feeds the checker.
	if vs := Check(got); len(vs) != 1 || vs[0].Kind != Overlap || vs[0].A.Token != tok(1, 2) || vs[0].B.Token != tok(1, 3) {
		t.Errorf("Check: want one overlap of c1's 1.2 and c2's 1.3, got:\n%s", join(vs))
	}
}

// TestParseEventsKeySpaces: a shard is (domain, region, from). One consumer holds the same range of
// two key spaces of a REGIONAL domain; a line without region is of the key space "".
func TestParseEventsKeySpaces(t *testing.T) {
	const log = `{"event":"grant","consumer":"c1","domain":"d","region":"us-east","from":"00000000-0000-0000-0000-000000000000","to":"80000000-0000-0000-0000-000000000000","to_end":false,"token":"1.1","time":"2026-11-25T18:00:00Z"}
{"event":"grant","consumer":"c1","domain":"d","region":"eu-west","from":"00000000-0000-0000-0000-000000000000","to":"80000000-0000-0000-0000-000000000000","to_end":false,"token":"1.1","time":"2026-11-25T18:00:01Z"}
{"event":"revoke","consumer":"c1","domain":"d","region":"eu-west","from":"00000000-0000-0000-0000-000000000000","to":"80000000-0000-0000-0000-000000000000","to_end":false,"token":"1.1","time":"2026-11-25T18:00:02Z"}
{"event":"grant","consumer":"c2","domain":"d","region":"eu-west","from":"00000000-0000-0000-0000-000000000000","to":"80000000-0000-0000-0000-000000000000","to_end":false,"token":"1.2","time":"2026-11-25T18:00:02Z"}
{"event":"grant","consumer":"c3","domain":"d","from":"00000000-0000-0000-0000-000000000000","to":"ffffffff-ffff-ffff-ffff-ffffffffffff","to_end":true,"token":"1.1","time":"2026-11-25T18:00:03Z"}
{"event":"lost","consumer":"c3","domain":"d","region":"","from":"00000000-0000-0000-0000-000000000000","time":"2026-11-25T18:00:04Z"}
`
	got, err := ParseEvents("", strings.NewReader(log))
	if err != nil {
		t.Fatal(err)
	}
	want := []Interval{
		ivIn("c1", "d", "us-east", rng(0, full/2), tok(1, 1), at(0), open),
		ivIn("c1", "d", "eu-west", rng(0, full/2), tok(1, 1), at(1e9), at(2e9)),
		ivIn("c2", "d", "eu-west", rng(0, full/2), tok(1, 2), at(2e9), open),
		iv("c3", "d", rng(0, full), tok(1, 1), at(3e9), at(4e9)),
	}
	if len(got) != len(want) {
		t.Fatalf("got:\n%swant:\n%s", dump(got), dump(want))
	}
	for i := range want {
		if !got[i].Start.Equal(want[i].Start) || !got[i].End.Equal(want[i].End) {
			t.Errorf("interval %d: got %s, want %s", i, got[i], want[i])
		}
		got[i].Start, got[i].End = want[i].Start, want[i].End
		if got[i] != want[i] {
			t.Errorf("interval %d: got %s, want %s", i, got[i], want[i])
		}
	}
	// Each key space has one owner at a time and increasing tokens.
	if vs := Check(got); len(vs) != 0 {
		t.Errorf("Check: want no violations, got:\n%s", join(vs))
	}

	// A second owner in c1's key space is caught, and only there.
	const late = `{"event":"grant","consumer":"c4","domain":"d","region":"us-east","from":"40000000-0000-0000-0000-000000000000","to":"80000000-0000-0000-0000-000000000000","to_end":false,"token":"1.3","time":"2026-11-25T18:00:05Z"}`
	got, err = ParseEvents("", strings.NewReader(log+late))
	if err != nil {
		t.Fatal(err)
	}
	vs := Check(got)
	if len(vs) != 1 || vs[0].Kind != Overlap || vs[0].A.Consumer != "c1" || vs[0].B.Consumer != "c4" || vs[0].A.Region != "us-east" {
		t.Errorf("Check: want one overlap of c1 and c4 in us-east, got:\n%s", join(vs))
	}
}

func TestParseEventsErrors(t *testing.T) {
	const ok = `{"event":"grant","consumer":"c1","domain":"d","from":"00000000-0000-0000-0000-000000000000","to":"80000000-0000-0000-0000-000000000000","token":"1.1","time":"2026-11-25T18:00:00Z"}` + "\n"
	tests := []struct {
		name     string
		consumer string
		line     string
		want     []string // substrings of the error
	}{
		{"not JSON", "", `grant c1 d`, []string{"line 2", "not a JSON event"}},
		{"truncated JSON", "", `{"event":"grant",`, []string{"line 2"}},
		{"bad from", "", `{"event":"grant","consumer":"c1","domain":"d","from":"xyz","to":"80000000-0000-0000-0000-000000000000","token":"1.1","time":"2026-11-25T18:00:00Z"}`, []string{"line 2", "from", `"xyz"`}},
		{"bad to", "", `{"event":"grant","consumer":"c1","domain":"d","from":"00000000-0000-0000-0000-000000000000","to":"","token":"1.1","time":"2026-11-25T18:00:00Z"}`, []string{"line 2", "to"}},
		{"bad token", "", `{"event":"grant","consumer":"c1","domain":"d","from":"00000000-0000-0000-0000-000000000000","to":"80000000-0000-0000-0000-000000000000","token":"7","time":"2026-11-25T18:00:00Z"}`, []string{"line 2", "token", `"7"`}},
		{"grant without token", "", `{"event":"grant","consumer":"c1","domain":"d","from":"00000000-0000-0000-0000-000000000000","to":"80000000-0000-0000-0000-000000000000","time":"2026-11-25T18:00:00Z"}`, []string{"line 2", "token"}},
		{"bad time", "", `{"event":"revoke","consumer":"c1","domain":"d","from":"00000000-0000-0000-0000-000000000000","time":"yesterday"}`, []string{"line 2", "time", "yesterday"}},
		{"empty range", "", `{"event":"grant","consumer":"c1","domain":"d","from":"80000000-0000-0000-0000-000000000000","to":"80000000-0000-0000-0000-000000000000","token":"1.1","time":"2026-11-25T18:00:00Z"}`, []string{"line 2", "empty range"}},
		{"no domain", "", `{"event":"lost","consumer":"c1","from":"00000000-0000-0000-0000-000000000000","time":"2026-11-25T18:00:00Z"}`, []string{"line 2", "domain"}},
		{"no consumer", "", `{"event":"grant","domain":"d","from":"00000000-0000-0000-0000-000000000000","to":"80000000-0000-0000-0000-000000000000","token":"1.1","time":"2026-11-25T18:00:00Z"}`, []string{"line 2", "consumer"}},
		{"wrong type", "", `{"event":"grant","consumer":"c1","domain":"d","from":"00000000-0000-0000-0000-000000000000","to_end":"yes","token":"1.1","time":"2026-11-25T18:00:00Z"}`, []string{"line 2", "to_end"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseEvents(tt.consumer, strings.NewReader(ok+tt.line+"\n"+ok))
			if err == nil {
				t.Fatalf("no error; intervals:\n%s", dump(got))
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
	// The consumer argument fills a missing consumer.
	line := `{"event":"grant","domain":"d","from":"00000000-0000-0000-0000-000000000000","to":"80000000-0000-0000-0000-000000000000","token":"1.1","time":"2026-11-25T18:00:00Z"}`
	if _, err := ParseEvents("c1", strings.NewReader(line)); err != nil {
		t.Errorf("with a consumer argument and no final newline: %v", err)
	}
}

func FuzzParseEvents(f *testing.F) {
	f.Add(sampleLog)
	f.Add(`{"event":"grant","consumer":"c","domain":"d","from":"00000000-0000-0000-0000-000000000000","to_end":true,"token":"0.0","time":"0001-01-01T00:00:00Z"}`)
	f.Add("{}\n\n{\"event\":\"lost\"}")
	f.Add(`{"event":"grant","consumer":"c","domain":"d","region":"r","from":"00000000-0000-0000-0000-000000000000","to_end":true,"token":"1.1","time":"2026-11-25T18:00:00Z"}`)
	f.Fuzz(func(t *testing.T, log string) {
		ivs, err := ParseEvents("", strings.NewReader(log))
		if err != nil {
			return
		}
		for _, x := range ivs {
			if x.Consumer == "" || x.Domain == "" || !x.Range.From.Less(x.Range.To) {
				t.Fatalf("ParseEvents accepted a malformed interval: %s", x)
			}
		}
		_ = Check(ivs) // must not panic
	})
}
