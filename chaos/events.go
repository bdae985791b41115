package chaos

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/google/uuid"
	"github.com/wdsio/wds/topology"
)

// eventLine is one line of the event log of `wds consume`, e.g.
//
//	{"event":"grant","consumer":"c1","domain":"d","region":"us-east","from":"<uuid>","to":"<uuid>","to_end":false,"token":"1.42","time":"2026-11-25T18:00:00.123456789Z"}
//
// region is absent (or empty) for GLOBAL and UNIT domains and in logs written before key spaces.
type eventLine struct {
	Event    string `json:"event"`
	Consumer string `json:"consumer"`
	Domain   string `json:"domain"`
	Region   string `json:"region"`
	From     string `json:"from"`
	To       string `json:"to"`
	ToEnd    bool   `json:"to_end"`
	Token    string `json:"token"`
	Time     string `json:"time"`
}

type openKey struct {
	consumer, domain, region string
	from                     uuid.UUID
}

// ParseEvents reads the event log that `wds consume` prints (one JSON object per line) and returns
// the ownership intervals it describes, in the order of their grants.
//
//   - A shard is (domain, region, from): region names the key space of a REGIONAL domain; a line
//     without it (a GLOBAL or UNIT domain, or a log written before key spaces) has region "".
//   - "grant" opens an interval of the range [from, to) — [from, 2^128) when to_end is true, and
//     then `to` is ignored — under token, at time. A grant for a shard the consumer already holds
//     with the same range and token is a resumed grant and changes nothing; with another range or
//     token it closes the held interval and opens a new one.
//   - "revoke" and "lost" close the consumer's open interval of the shard at time; for lost,
//     time is when the lease lapsed. "release" normally follows a revoke and closes nothing new,
//     but closes the interval if it is still open. Closing what is not open is not an error.
//   - Any other event (welcome, drained, ...) is ignored; blank lines are skipped.
//
// When consumer is not empty it is the consumer of every event, whatever the lines say. Intervals
// still open at the end of the log have a zero End. A line that is not a JSON object, or an event
// of the four kinds with a missing or invalid field, is an error naming the line number.
func ParseEvents(consumer string, r io.Reader) ([]Interval, error) {
	var out []Interval
	open := make(map[openKey]int) // index in out
	br := bufio.NewReader(r)
	for line := 1; ; line++ {
		text, err := br.ReadBytes('\n')
		if len(text) > 0 {
			if perr := parseLine(consumer, bytes.TrimSpace(text), open, &out); perr != nil {
				return nil, fmt.Errorf("chaos: event log line %d: %w", line, perr)
			}
		}
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("chaos: event log line %d: %w", line, err)
		}
	}
}

func parseLine(consumer string, text []byte, open map[openKey]int, out *[]Interval) error {
	if len(text) == 0 {
		return nil
	}
	var ev eventLine
	if err := json.Unmarshal(text, &ev); err != nil {
		return fmt.Errorf("not a JSON event: %w", err)
	}
	switch ev.Event {
	case "grant", "revoke", "release", "lost":
	default:
		return nil
	}
	if consumer != "" {
		ev.Consumer = consumer
	}
	if ev.Consumer == "" {
		return fmt.Errorf("%s event: field consumer is empty", ev.Event)
	}
	if ev.Domain == "" {
		return fmt.Errorf("%s event: field domain is empty", ev.Event)
	}
	from, err := topology.ParseKey("from", ev.From)
	if err != nil {
		return fmt.Errorf("%s event: %w", ev.Event, err)
	}
	at, err := time.Parse(time.RFC3339Nano, ev.Time)
	if err != nil {
		return fmt.Errorf("%s event: field time: %w", ev.Event, err)
	}
	var tok topology.Token
	if ev.Token != "" || ev.Event == "grant" {
		if tok, err = topology.ParseToken(ev.Token); err != nil {
			return fmt.Errorf("%s event: %w", ev.Event, err)
		}
	}
	key := openKey{consumer: ev.Consumer, domain: ev.Domain, region: ev.Region, from: from}

	if ev.Event != "grant" {
		if i, ok := open[key]; ok {
			(*out)[i].End = at
			delete(open, key)
		}
		return nil
	}

	rng := topology.Range{From: topology.BoundOf(from), To: topology.End}
	if !ev.ToEnd {
		to, err := topology.ParseKey("to", ev.To)
		if err != nil {
			return fmt.Errorf("grant event: %w", err)
		}
		rng.To = topology.BoundOf(to)
	}
	if !rng.From.Less(rng.To) {
		return fmt.Errorf("grant event: empty range %s: field to must be after field from", rng)
	}
	if i, ok := open[key]; ok {
		held := &(*out)[i]
		if held.Token.Compare(tok) == 0 && held.Range.From.Compare(rng.From) == 0 && held.Range.To.Compare(rng.To) == 0 {
			return nil // resumed
		}
		held.End = at
	}
	open[key] = len(*out)
	*out = append(*out, Interval{Consumer: ev.Consumer, Domain: ev.Domain, Region: ev.Region, Range: rng, Token: tok, Start: at})
	return nil
}
