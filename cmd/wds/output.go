package main

import (
	"encoding/json"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
	"github.com/wdsio/wds/topology"
)

// writeJSON writes v as indented JSON with a trailing newline.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// newTable returns a tabwriter for aligned columns; Flush it.
func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
}

// dash shows an empty table cell as "-".
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// domainJSON is a domain as `-o json` prints it.
type domainJSON struct {
	Name         string `json:"name"`
	Kind         string `json:"kind"`
	Shards       uint32 `json:"shards"`
	TTL          string `json:"ttl"`
	TTLMillis    int64  `json:"ttl_millis"`
	CreatedIndex uint64 `json:"created_index"`
	// Placement, in a federation: a REGIONAL domain's regions (none:
	// every region) and failover ("auto" or "manual"); a GLOBAL or UNIT
	// domain's pins.
	Regions  []string `json:"regions,omitempty"`
	Failover string   `json:"failover,omitempty"`
	// FailbackAfter is a REGIONAL domain's stable period before a key
	// space served by its failover region moves home ("" for the default,
	// 30s).
	FailbackAfter string    `json:"failback_after,omitempty"`
	Pins          []pinJSON `json:"pins,omitempty"`
}

func domainToJSON(d *wdsv1.Domain) domainJSON {
	v := domainJSON{
		Name:         d.GetName(),
		Kind:         topology.KindFromProto(d.GetKind()).String(),
		Shards:       d.GetShards(),
		TTL:          ttlString(d.GetTtlMillis()),
		TTLMillis:    d.GetTtlMillis(),
		CreatedIndex: d.GetCreatedIndex(),
		Regions:      d.GetRegions(),
		Pins:         pinsToJSON(d),
	}
	if topology.KindFromProto(d.GetKind()) == topology.KindRegional && d.GetFailover() != wdsv1.Failover_FAILOVER_UNSPECIFIED {
		v.Failover = failoverString(d.GetFailover())
	}
	if ms := d.GetFailbackAfterMillis(); ms > 0 {
		v.FailbackAfter = ttlString(ms)
	}
	return v
}

func ttlString(ms int64) string { return (time.Duration(ms) * time.Millisecond).String() }

// boundJSON renders a range bound for JSON: a UUID, with the end of the key
// space (2^128, which no UUID expresses) shown as the largest UUID and
// end = true.
func boundJSON(b topology.Bound) (s string, end bool) {
	if b.IsEnd() {
		return "ffffffff-ffff-ffff-ffff-ffffffffffff", true
	}
	return b.String(), false
}

// tokenString is the token as "generation.index", or "" for none.
func tokenString(t topology.Token) string {
	if t.IsZero() {
		return ""
	}
	return t.String()
}

// grantState is a grant state in lower case, "" for none.
func grantState(s wdsv1.GrantState) string {
	switch s {
	case wdsv1.GrantState_GRANT_STATE_ALLOCATED:
		return "allocated"
	case wdsv1.GrantState_GRANT_STATE_ACTIVE:
		return "active"
	case wdsv1.GrantState_GRANT_STATE_REVOKED:
		return "revoked"
	}
	return ""
}

// countOf is "1 shard" or "n shards".
func countOf(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}

// writeJSONLine writes v as one compact JSON line (for streams of events).
func writeJSONLine(w io.Writer, v any) error {
	return json.NewEncoder(w).Encode(v)
}
