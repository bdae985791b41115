package topology

import (
	"errors"
	"math/big"
	"strings"
	"testing"

	"github.com/google/uuid"
)

// FuzzParse feeds arbitrary bytes to Parse: it must never panic, every
// failure must be a located *FileError, and every success must be a File that
// validates again on its own.
func FuzzParse(f *testing.F) {
	f.Add([]byte(exampleFile))
	f.Add([]byte(prelude + "  - {name: a, kind: unit}\n  - {name: b, kind: global, shards: 3, ttl: 2s}\n"))
	f.Add([]byte(""))
	f.Add([]byte("---\n"))
	f.Add([]byte("regions: &r\n  - name: r\ndomains: *r\n"))
	f.Add([]byte("regions:\n  - name: local\n    nodes:\n      - id: n1\n        raft: 127.0.0.1:7200\n       grpc: x\n"))
	f.Add([]byte(prelude + "  - name: orders\n    kind: global\n    shards: 1048577\n    ttl: 500ms\n"))
	f.Add([]byte("regions:\n  - name: r\n    nodes:\n" + nodes(8)))
	f.Add([]byte("? [a]\n: 1\n"))
	f.Add([]byte("a: 1\n---\nb: 2\n"))
	f.Add([]byte("regions:\n  - {name: r, nodes: [{id: n, raft: '[::1]:1', grpc: 'x.y.:2', http: '[::]:3'}]}\n"))
	f.Add([]byte(federationFile))
	f.Add([]byte(fedPrelude + "  - {name: g, kind: global, shards: 3, pins: [{from: 55555555-5555-5555-5555-555555555555, to: end, region: c}, {from: 00000000-0000-0000-0000-000000000000, to: 55555555-5555-5555-5555-555555555556, region: a}]}\n"))
	f.Add([]byte(fedPrelude + "  - {name: u, kind: unit, pins: [{region: b, to: end}]}\n  - {name: r, kind: regional, shards: 2, regions: [], failover: manual}\n"))
	f.Add([]byte(twoRegions("    failover: [b, a]\n", ", global: 'h:13'")))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse("fuzz.yaml", data)
		if err != nil {
			var fe *FileError
			if !errors.As(err, &fe) {
				t.Fatalf("error %q (%T) is not a *FileError", err, err)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %q does not match ErrInvalid", err)
			}
			if !strings.HasPrefix(err.Error(), "fuzz.yaml") || fe.Line < 0 {
				t.Fatalf("error %q is not located", err)
			}
			return
		}
		if err := file.Validate(); err != nil {
			t.Fatalf("parsed file does not validate: %v", err)
		}
		for i := range file.Regions {
			r := &file.Regions[i]
			if got, ok := file.Region(r.Name); !ok || got != r {
				t.Fatalf("Region(%q) = %v, %v", r.Name, got, ok)
			}
			for j := range r.Nodes {
				if gr, gn, ok := file.Node(r.Nodes[j].ID); !ok || gr != r || gn != &r.Nodes[j] {
					t.Fatalf("Node(%q) = %v, %v, %v", r.Nodes[j].ID, gr, gn, ok)
				}
			}
		}
		for _, d := range file.Domains {
			if _, err := DomainFromProto(DomainToProto(d)); err != nil {
				t.Fatalf("domain %+v does not survive the wire: %v", d, err)
			}
			if d.Kind == KindRegional && len(d.Regions) == 0 {
				t.Fatalf("regional domain %q has no regions after Parse", d.Name)
			}
		}
		if len(file.Regions) > 1 && len(file.GlobalVoters()) == 0 {
			t.Fatalf("a federation of %d regions without global voters", len(file.Regions))
		}
		for _, r := range file.Regions {
			for _, o := range file.FailoverOf(r.Name) {
				if _, ok := file.Region(o); !ok || o == r.Name {
					t.Fatalf("FailoverOf(%q) has %q", r.Name, o)
				}
			}
		}
	})
}

// FuzzKeyspace checks the key-space arithmetic against math/big: SplitEven
// tiles, Find agrees with a linear scan, and Split then Merge is the
// identity, at every n and key the fuzzer finds.
func FuzzKeyspace(f *testing.F) {
	f.Add(uint32(1), uint64(0), uint64(0), uint64(0), uint64(0))
	f.Add(uint32(2), ^uint64(0), ^uint64(0), uint64(1)<<63, uint64(0))
	f.Add(uint32(3), uint64(0x5555555555555555), uint64(0x5555555555555555), uint64(0x5555555555555555), uint64(0x5555555555555554))
	f.Add(uint32(7), uint64(1), uint64(2), uint64(3), uint64(4))
	f.Add(uint32(64), uint64(0x0400000000000000), uint64(0), ^uint64(0), ^uint64(0)-1)
	f.Add(uint32(1<<16-1), uint64(12345), uint64(67890), uint64(0), uint64(1))
	f.Fuzz(func(t *testing.T, rawN uint32, aHi, aLo, bHi, bLo uint64) {
		// Up to 2^16 shards: enough to reach every code path while keeping
		// an iteration fast; TestSplitEven covers MaxShards.
		n := 1 + int(rawN%(1<<16))
		rs, err := SplitEven(n)
		if err != nil {
			t.Fatal(err)
		}
		if err := ValidateTiling(rs); err != nil {
			t.Fatalf("SplitEven(%d): %v", n, err)
		}
		a, b := Bound{hi: aHi, lo: aLo}, Bound{hi: bHi, lo: bLo}
		for _, k := range []Bound{a, b, Start, BoundOf(maxKey)} {
			key, _ := k.Key()
			if got, want := Find(rs, key), linearFind(rs, k); got != want || got < 0 {
				t.Fatalf("SplitEven(%d): Find(%v) = %d, linear scan = %d", n, k, got, want)
			}
		}

		// Split the shard holding a at a point derived from b, then merge.
		r := rs[Find(rs, uuid.UUID(a.Bytes()))]
		width := new(big.Int).Sub(toBig(r.To), toBig(r.From))
		if width.Cmp(big.NewInt(2)) >= 0 {
			off := new(big.Int).Mod(toBig(b), new(big.Int).Sub(width, big.NewInt(1)))
			at := fromBig(t, off.Add(off, toBig(r.From)).Add(off, big.NewInt(1)))
			checkSplitMerge(t, r, at)
		}
		// And an arbitrary range [min, max) of a and b, possibly up to End.
		lo, hi := a, b
		if hi.Less(lo) {
			lo, hi = hi, lo
		}
		if rawN&1 == 1 {
			hi = End
		}
		if lo.Less(hi) {
			m := Range{From: lo, To: hi}
			if mid := m.Midpoint(); mid != lo {
				checkSplitMerge(t, m, mid)
			}
		}
	})
}

func checkSplitMerge(t *testing.T, r Range, at Bound) {
	t.Helper()
	lo, hi, err := r.Split(at)
	if err != nil {
		t.Fatalf("%v.Split(%v): %v", r, at, err)
	}
	if lo.Validate() != nil || hi.Validate() != nil || lo.Overlaps(hi) || !lo.Overlaps(r) || !hi.Overlaps(r) {
		t.Fatalf("%v.Split(%v) = %v, %v", r, at, lo, hi)
	}
	m, err := Merge(lo, hi)
	if err != nil || m != r {
		t.Fatalf("Merge(%v, %v) = %v, %v; want %v", lo, hi, m, err, r)
	}
	if back, err := RangeFromProto("r", RangeToProto(r)); err != nil || back != r {
		t.Fatalf("proto round trip of %v = %v, %v", r, back, err)
	}
}
