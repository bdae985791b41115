package topology

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
)

// Kind is the kind of a work domain. It decides who places the domain's
// shards: the global group delegates UNIT and GLOBAL domains to regions, a
// REGIONAL domain is served per region by that region's cell.
type Kind int

const (
	// KindUnspecified is the zero value; no valid domain has it, so a
	// forgotten kind is caught instead of defaulting silently.
	KindUnspecified Kind = iota
	// KindUnit is a singleton: one shard covering the whole key space, owned
	// by one consumer at a time (leader election).
	KindUnit
	// KindGlobal has UUID keys served from any region.
	KindGlobal
	// KindRegional has UUID keys served within each region.
	KindRegional
)

var kindNames = [...]string{KindUnspecified: "unspecified", KindUnit: "unit", KindGlobal: "global", KindRegional: "regional"}

// validKinds lists the kinds an operator may write, for error messages.
const validKinds = "unit, global, regional"

// String returns "unit", "global" or "regional" (the topology-file form).
func (k Kind) String() string {
	if k >= 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// MarshalText encodes k as String does, so JSON output says "global", not 2.
func (k Kind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText accepts what ParseKind accepts.
func (k *Kind) UnmarshalText(p []byte) error {
	v, err := ParseKind(string(p))
	if err != nil {
		return err
	}
	*k = v
	return nil
}

// ParseKind parses "unit", "global" or "regional", in any case. The error
// names the field "kind" and lists the valid values.
func ParseKind(s string) (Kind, error) {
	k, err := parseKind(s)
	if err != nil {
		return k, err
	}
	return k, nil
}

func parseKind(s string) (Kind, *FieldError) {
	switch strings.ToLower(s) {
	case "unit":
		return KindUnit, nil
	case "global":
		return KindGlobal, nil
	case "regional":
		return KindRegional, nil
	case "":
		return KindUnspecified, Invalid("kind", "", "required: one of %s", validKinds)
	}
	return KindUnspecified, Invalid("kind", quote(s), "unknown kind: want one of %s", validKinds)
}

// Failover says what happens to a REGIONAL domain's key space in a region
// that is down (its renewals to the global group stopped and its
// delegations' deadlines passed). The zero value is FailoverAuto, the
// default, so a Domain built in code fails over unless it says otherwise.
type Failover int

const (
	// FailoverAuto re-delegates the key space to the first live region of
	// the down region's failover list (File.FailoverOf), and fails back
	// after the region has been stable again for a while.
	FailoverAuto Failover = iota
	// FailoverManual leaves the key space unserved until an operator moves
	// it: for services whose regional data cannot be reached from elsewhere.
	FailoverManual
)

var failoverNames = [...]string{FailoverAuto: "auto", FailoverManual: "manual"}

// validFailovers lists the failover settings an operator may write.
const validFailovers = "auto, manual"

// String returns "auto" or "manual" (the topology-file form).
func (f Failover) String() string {
	if f >= 0 && int(f) < len(failoverNames) {
		return failoverNames[f]
	}
	return "Failover(" + strconv.Itoa(int(f)) + ")"
}

// MarshalText encodes f as String does.
func (f Failover) MarshalText() ([]byte, error) { return []byte(f.String()), nil }

// UnmarshalText accepts what ParseFailover accepts.
func (f *Failover) UnmarshalText(p []byte) error {
	v, err := ParseFailover(string(p))
	if err != nil {
		return err
	}
	*f = v
	return nil
}

// ParseFailover parses "auto" or "manual", in any case. The error names the
// field "failover" and lists the valid values.
func ParseFailover(s string) (Failover, error) {
	f, err := parseFailover(s)
	if err != nil {
		return f, err
	}
	return f, nil
}

func parseFailover(s string) (Failover, *FieldError) {
	switch strings.ToLower(s) {
	case "auto":
		return FailoverAuto, nil
	case "manual":
		return FailoverManual, nil
	case "":
		return FailoverAuto, Invalid("failover", "", "must be one of %s (omit the field for auto)", validFailovers)
	}
	return FailoverAuto, Invalid("failover", quote(s), "unknown failover: want one of %s", validFailovers)
}

// Pin places part of a domain in a region: a range of a GLOBAL domain, or a
// whole UNIT domain, for instance to keep work next to the database's home
// region. The global group keeps a pinned range in its region while that
// region is live; while it is down, the range fails over to a live region
// like any other, and comes back once the region is stable again.
type Pin struct {
	// Range is the pinned part of the domain's key space. For a GLOBAL
	// domain both ends lie on the domain's shard boundaries (those of
	// SplitEven(Shards)), so a pin is a run of whole shards. For a UNIT
	// domain it is Full, the domain's one shard: the file gives no range
	// there, and Parse and Normalize fill it in.
	Range Range
	// Region is the region that holds Range; a region of the file.
	Region string
}

// Limits and defaults of a domain.
const (
	// MaxShards bounds a domain's shard count, and so the size of routing
	// tables every client holds (about 50 bytes per shard).
	MaxShards = 1 << 20
	// MinTTL is the shortest grant TTL. Consumers heartbeat every TTL/3;
	// below a second, scheduling pauses alone would expire healthy leases.
	MinTTL = time.Second
	// MaxTTL is the longest grant TTL: beyond a day, a crashed owner would
	// keep its shards unserved for too long to be a useful setting.
	MaxTTL = 24 * time.Hour
	// DefaultTTL is the grant TTL of a domain that does not set one.
	DefaultTTL = 10 * time.Second
	// DefaultFailbackAfter is how long a REGIONAL domain's home region must
	// renew without a lapse before its key space, served by its failover
	// region meanwhile, moves back home.
	DefaultFailbackAfter = 30 * time.Second
	// MaxFailbackAfter bounds a domain's FailbackAfter.
	MaxFailbackAfter = 24 * time.Hour
	// MaxNameLen is the longest region or domain name: a DNS label, since
	// names end up in hostnames, metric labels and file names.
	MaxNameLen = 63
	// MaxConsumerIDLen is the longest consumer (or node) id.
	MaxConsumerIDLen = 128
)

// Domain is the definition of a work domain, as operators write it in the
// topology file and the Admin API carries it.
type Domain struct {
	// Name identifies the domain across the federation; see ValidateName.
	Name string
	// Kind decides how shards are placed.
	Kind Kind
	// Shards is the number of shards, 1 to MaxShards; exactly 1 for UNIT.
	Shards int
	// TTL is the grant lease duration, MinTTL to MaxTTL, in whole
	// milliseconds (the wire carries milliseconds).
	TTL time.Duration

	// The fields below are placement: they say where the global group puts
	// the domain's key space, not how shards are leased. Which regions
	// exist is the topology file's business, so Validate checks only their
	// form; File.Validate checks that every region named is in the file.

	// Regions is, for a REGIONAL domain, the regions that have a key space
	// of the domain, without duplicates. Empty means every region: in the
	// topology file an absent field means that too, and Parse fills in
	// every region of the file in file order (an explicit empty list there
	// is an error). Other kinds have one key space and no Regions.
	Regions []string
	// Failover is, for a REGIONAL domain, whether a down region's key space
	// moves to its failover region on its own (FailoverAuto, the default)
	// or waits for an operator. Other kinds always fail over, so anything
	// but the zero value is an error there.
	Failover Failover
	// FailbackAfter is, for a REGIONAL domain with FailoverAuto, how long
	// a region whose key space its failover region serves must have renewed
	// without a lapse before the key space moves back home (gracefully).
	// Zero means DefaultFailbackAfter; whole milliseconds up to
	// MaxFailbackAfter. Other kinds have none (their placement follows
	// consumers, not a home region).
	FailbackAfter time.Duration
	// Pins place ranges of a GLOBAL domain, or a UNIT domain as a whole, in
	// given regions. GLOBAL pins must not overlap; a UNIT domain has at most
	// one pin; a REGIONAL domain none (each region serves its own key
	// space).
	Pins []Pin
}

// Equal reports whether d and o are the same definition. A nil and an empty
// Regions or Pins are equal. Domain has slice fields, so == does not
// compile on it.
func (d Domain) Equal(o Domain) bool {
	return d.Name == o.Name && d.Kind == o.Kind && d.Shards == o.Shards && d.TTL == o.TTL &&
		slices.Equal(d.Regions, o.Regions) && d.Failover == o.Failover && d.FailbackAfter == o.FailbackAfter && slices.Equal(d.Pins, o.Pins)
}

// Normalize fills in defaults that need no operator decision: a UNIT domain
// has one shard, and a TTL of zero means DefaultTTL. Shards of other kinds
// have no default; Validate reports them missing. A UNIT domain's pin
// without a range (the zero Range) gets Full, its one shard; Pins is copied
// first, never changed in place. Regions stays empty when it is, meaning
// every region: only the topology file knows which those are.
func (d *Domain) Normalize() {
	if d.Kind == KindUnit && d.Shards == 0 {
		d.Shards = 1
	}
	if d.TTL == 0 {
		d.TTL = DefaultTTL
	}
	if d.Kind == KindUnit && slices.ContainsFunc(d.Pins, func(p Pin) bool { return p.Range == Range{} }) {
		d.Pins = slices.Clone(d.Pins)
		for i := range d.Pins {
			if d.Pins[i].Range == (Range{}) {
				d.Pins[i].Range = Full
			}
		}
	}
}

// Validate checks d and returns a *FieldError naming the first bad field:
// "name", "kind", "shards", "ttl", then the placement fields, such as
// "regions[1]", "failover", "pins[0].to" or "pins[2].region". It checks the
// form of the region names only; File.Validate checks that they name
// regions of the file. It does not apply defaults; call Normalize first
// where defaults are wanted.
func (d Domain) Validate() error {
	if err := d.validate(); err != nil {
		return err
	}
	return nil
}

func (d Domain) validate() *FieldError {
	if err := checkName("name", d.Name); err != nil {
		return err
	}
	if d.Kind == KindUnspecified {
		return Invalid("kind", "", "required: one of %s", validKinds)
	}
	if d.Kind < KindUnspecified || d.Kind > KindRegional {
		return Invalid("kind", strconv.Itoa(int(d.Kind)), "unknown kind: want one of %s", validKinds)
	}
	switch {
	case d.Shards == 0:
		// 0 is both "not given" (proto3, a file without the field) and
		// "--shards 0": say both.
		return Invalid("shards", "0", "required for %s domains: between 1 and %d", d.Kind, MaxShards)
	case d.Shards < 1 || d.Shards > MaxShards:
		return Invalid("shards", strconv.Itoa(d.Shards), "must be between 1 and %d", MaxShards)
	case d.Kind == KindUnit && d.Shards != 1:
		return Invalid("shards", strconv.Itoa(d.Shards), "must be 1 for a unit domain (it is a singleton)")
	}
	switch {
	case d.TTL < MinTTL || d.TTL > MaxTTL:
		return Invalid("ttl", d.TTL.String(), "must be between %s and %s", MinTTL, MaxTTL)
	case d.TTL%time.Millisecond != 0:
		return Invalid("ttl", d.TTL.String(), "must be a whole number of milliseconds")
	}
	return d.validatePlacement()
}

// validatePlacement checks Regions, Failover and Pins; the fields before
// them are valid (Shards in particular).
func (d Domain) validatePlacement() *FieldError {
	if d.Failover < FailoverAuto || d.Failover > FailoverManual {
		return Invalid("failover", strconv.Itoa(int(d.Failover)), "unknown failover: want one of %s", validFailovers)
	}
	if d.Kind != KindRegional {
		if len(d.Regions) > 0 {
			return errRegionsNotRegional("regions", d.Kind)
		}
		if d.Failover != FailoverAuto {
			return errFailoverNotRegional("failover", d.Kind)
		}
		if d.FailbackAfter != 0 {
			return errFailbackNotRegional("failback_after", d.Kind)
		}
	}
	if err := checkFailbackAfter("failback_after", d.FailbackAfter); err != nil {
		return err
	}
	seen := make(map[string]int, len(d.Regions))
	for i, r := range d.Regions {
		field := index("regions", i)
		if err := checkName(field, r); err != nil {
			return err
		}
		if j, dup := seen[r]; dup {
			return Invalid(field, quote(r), "duplicate region, also regions[%d]", j)
		}
		seen[r] = i
	}
	switch d.Kind {
	case KindRegional:
		if len(d.Pins) > 0 {
			return errPinsRegional("pins")
		}
	case KindUnit:
		if len(d.Pins) > 1 {
			return Invalid("pins[1]", "", "a unit domain takes at most one pin: it is one shard, and pins[0] places it")
		}
		for i, p := range d.Pins {
			if p.Range != Full {
				return Invalid(index("pins", i), p.Range.String(), "a unit domain's pin covers the whole domain: its range must be %s", Full)
			}
		}
	case KindGlobal:
		if err := checkPinRanges(d.Pins, d.Shards); err != nil {
			return err
		}
	}
	for i, p := range d.Pins {
		field := index("pins", i) + ".region"
		if p.Region == "" {
			return Invalid(field, "", "required: the region that holds the pinned range")
		}
		if err := checkName(field, p.Region); err != nil {
			return err
		}
	}
	return nil
}

// checkPinRanges checks the pins of a GLOBAL domain of n shards: each range
// holds a key and runs from a shard boundary to a shard boundary, and no two
// overlap. An overlap is reported at the pin that comes later in the list.
func checkPinRanges(pins []Pin, n int) *FieldError {
	for i, p := range pins {
		field := index("pins", i)
		if err := p.Range.validate(); err != nil {
			return prefixField(field, err)
		}
		for _, b := range []struct {
			name  string
			bound Bound
		}{{"from", p.Range.From}, {"to", p.Range.To}} {
			if s, ok := shardAt(b.bound, n); !ok {
				shard := Range{From: evenBoundary(uint64(s), uint64(n)), To: evenBoundary(uint64(s)+1, uint64(n))}
				return Invalid(field+"."+b.name, b.bound.String(),
					"must be a shard boundary: the domain's %d shards split the key space evenly, and this is inside shard %d %s", n, s, shard)
			}
		}
	}
	// Ranges sorted by start overlap somewhere iff two neighbours do. Among
	// the overlapping neighbours the first in key order is reported, naming
	// the pin that comes later in the file.
	order := make([]int, len(pins))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return pins[a].Range.From.Compare(pins[b].Range.From) })
	for k := 1; k < len(order); k++ {
		a, b := order[k-1], order[k]
		if pins[a].Range.Overlaps(pins[b].Range) {
			if a > b {
				a, b = b, a
			}
			return Invalid(index("pins", b), pins[b].Range.String(), "overlaps pins[%d] %s: a key is pinned to one region at most", a, pins[a].Range)
		}
	}
	return nil
}

// The errors of placement fields given on the wrong kind of domain, shared
// by Validate and Parse (which also sees fields written with empty values).

func errRegionsNotRegional(field string, k Kind) *FieldError {
	return Invalid(field, "", "only a regional domain has regions: a %s domain has one key space for the whole federation (place it with pins)", k)
}

func errFailoverNotRegional(field string, k Kind) *FieldError {
	return Invalid(field, "", "only a regional domain has a failover setting: a %s domain always fails over to live regions", k)
}

func errFailbackNotRegional(field string, k Kind) *FieldError {
	return Invalid(field, "", "only a regional domain fails back: a %s domain's placement follows its consumers, not a home region", k)
}

// checkFailbackAfter: 0 (the default) or whole milliseconds, at most
// MaxFailbackAfter.
func checkFailbackAfter(field string, d time.Duration) *FieldError {
	switch {
	case d < 0 || d > MaxFailbackAfter:
		return Invalid(field, d.String(), "must be between 1ms and %s (omit it for the default, %s)", MaxFailbackAfter, DefaultFailbackAfter)
	case d%time.Millisecond != 0:
		return Invalid(field, d.String(), "must be a whole number of milliseconds")
	}
	return nil
}

// FailbackAfterOrDefault is d.FailbackAfter, or DefaultFailbackAfter when
// unset.
func (d Domain) FailbackAfterOrDefault() time.Duration {
	if d.FailbackAfter == 0 {
		return DefaultFailbackAfter
	}
	return d.FailbackAfter
}

func errPinsRegional(field string) *FieldError {
	return Invalid(field, "", "a regional domain cannot be pinned: each of its regions serves its own key space (choose them with regions)")
}

// ValidateName checks a region or domain name: 1 to MaxNameLen characters of
// lowercase letters, digits, '-', '_' and '.', starting with a letter or
// digit. Names show up in hostnames, metric labels, file names and CLI
// arguments; this alphabet is safe in all of them and leaves no two
// spellings (case) for one name.
func ValidateName(field, name string) error {
	if err := checkName(field, name); err != nil {
		return err
	}
	return nil
}

func checkName(field, name string) *FieldError {
	if name == "" {
		return Invalid(field, "", "required: 1 to %d lowercase letters, digits, '-', '_' or '.'", MaxNameLen)
	}
	if len(name) > MaxNameLen {
		return Invalid(field, quote(name), "too long: %d characters, at most %d", len(name), MaxNameLen)
	}
	if c := name[0]; !isLower(c) && !isDigit(c) {
		return Invalid(field, quote(name), "must start with a lowercase letter or digit")
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !isLower(c) && !isDigit(c) && c != '-' && c != '_' && c != '.' {
			return Invalid(field, quote(name), "invalid character %q at offset %d: use lowercase letters, digits, '-', '_' or '.'", rune(c), i)
		}
	}
	return nil
}

// ValidateConsumerID checks a consumer or node id: 1 to MaxConsumerIDLen
// characters of ASCII letters, digits, '.', '_', ':' and '-'. That admits the
// ids services already have (hostnames, pod names, host:port) while keeping
// ids printable and safe as log fields and metric labels.
func ValidateConsumerID(field, id string) error {
	if err := checkConsumerID(field, id); err != nil {
		return err
	}
	return nil
}

func checkConsumerID(field, id string) *FieldError {
	if id == "" {
		return Invalid(field, "", "required: 1 to %d letters, digits, '.', '_', ':' or '-'", MaxConsumerIDLen)
	}
	if len(id) > MaxConsumerIDLen {
		return Invalid(field, quote(id), "too long: %d characters, at most %d", len(id), MaxConsumerIDLen)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !isLower(c) && !isDigit(c) && !('A' <= c && c <= 'Z') && c != '.' && c != '_' && c != ':' && c != '-' {
			return Invalid(field, quote(id), "invalid character %q at offset %d: use letters, digits, '.', '_', ':' or '-'", rune(c), i)
		}
	}
	return nil
}

func isLower(c byte) bool { return 'a' <= c && c <= 'z' }
func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// KindToProto converts k to its wire enum; an unknown kind becomes
// DOMAIN_KIND_UNSPECIFIED, which the receiver rejects.
func KindToProto(k Kind) wdsv1.DomainKind {
	switch k {
	case KindUnit:
		return wdsv1.DomainKind_DOMAIN_KIND_UNIT
	case KindGlobal:
		return wdsv1.DomainKind_DOMAIN_KIND_GLOBAL
	case KindRegional:
		return wdsv1.DomainKind_DOMAIN_KIND_REGIONAL
	}
	return wdsv1.DomainKind_DOMAIN_KIND_UNSPECIFIED
}

// KindFromProto converts a wire enum to a Kind. Protobuf enums are open, so
// a value this version does not know becomes KindUnspecified, which Validate
// rejects.
func KindFromProto(k wdsv1.DomainKind) Kind {
	switch k {
	case wdsv1.DomainKind_DOMAIN_KIND_UNIT:
		return KindUnit
	case wdsv1.DomainKind_DOMAIN_KIND_GLOBAL:
		return KindGlobal
	case wdsv1.DomainKind_DOMAIN_KIND_REGIONAL:
		return KindRegional
	}
	return KindUnspecified
}

// DomainToProto converts d to its wire form (TTL in milliseconds). d should
// be valid; out-of-range shard counts are clamped so the receiver still
// rejects them rather than seeing a wrapped-around number.
func DomainToProto(d Domain) *wdsv1.Domain {
	shards := uint32(0)
	switch {
	case d.Shards > 0 && uint64(d.Shards) > uint64(^uint32(0)):
		shards = ^uint32(0)
	case d.Shards > 0:
		shards = uint32(d.Shards)
	}
	p := &wdsv1.Domain{
		Name:      d.Name,
		Kind:      KindToProto(d.Kind),
		Shards:    shards,
		TtlMillis: d.TTL.Milliseconds(),
		Regions:   slices.Clone(d.Regions),
	}
	if d.Kind == KindRegional {
		p.Failover = wdsv1.Failover_FAILOVER_AUTO
		if d.Failover == FailoverManual {
			p.Failover = wdsv1.Failover_FAILOVER_MANUAL
		}
		p.FailbackAfterMillis = d.FailbackAfter.Milliseconds()
	}
	for _, pin := range d.Pins {
		wp := &wdsv1.Pin{Region: pin.Region}
		if d.Kind != KindUnit {
			wp.Range = RangeToProto(pin.Range)
		}
		p.Pins = append(p.Pins, wp)
	}
	return p
}

// DomainFromProto converts and validates a wire domain. Proto3 cannot tell
// zero from absent, so zero shards (for UNIT) and a zero ttl_millis take
// their defaults, as omitted fields do in the topology file. Errors name
// fields under "domain" (e.g. "domain.shards"); a nil message is an error
// naming "domain".
func DomainFromProto(p *wdsv1.Domain) (Domain, error) {
	if p == nil {
		return Domain{}, Invalid("domain", "", "required")
	}
	k := KindFromProto(p.GetKind())
	if k == KindUnspecified && p.GetKind() != wdsv1.DomainKind_DOMAIN_KIND_UNSPECIFIED {
		return Domain{}, Invalid("domain.kind", strconv.Itoa(int(p.GetKind())), "unknown kind: want one of %s", validKinds)
	}
	ms := p.GetTtlMillis()
	if ms < 0 || ms > MaxTTL.Milliseconds() {
		// Checked before conversion: a huge value would overflow Duration.
		return Domain{}, Invalid("domain.ttl_millis", strconv.FormatInt(ms, 10),
			"must be between %d and %d, or 0 for the default", MinTTL.Milliseconds(), MaxTTL.Milliseconds())
	}
	d := Domain{
		Name:    p.GetName(),
		Kind:    k,
		Shards:  int(p.GetShards()),
		TTL:     time.Duration(ms) * time.Millisecond,
		Regions: slices.Clone(p.GetRegions()),
	}
	fb := p.GetFailbackAfterMillis()
	if fb < 0 || fb > MaxFailbackAfter.Milliseconds() {
		return Domain{}, Invalid("domain.failback_after_millis", strconv.FormatInt(fb, 10),
			"must be between 0 (the default, %s) and %d", DefaultFailbackAfter, MaxFailbackAfter.Milliseconds())
	}
	d.FailbackAfter = time.Duration(fb) * time.Millisecond
	switch p.GetFailover() {
	case wdsv1.Failover_FAILOVER_UNSPECIFIED, wdsv1.Failover_FAILOVER_AUTO:
	case wdsv1.Failover_FAILOVER_MANUAL:
		d.Failover = FailoverManual
	default:
		return Domain{}, Invalid("domain.failover", strconv.Itoa(int(p.GetFailover())), "unknown failover: want auto or manual")
	}
	for i, wp := range p.GetPins() {
		pin := Pin{Region: wp.GetRegion(), Range: Full}
		if wp.GetRange() != nil {
			r, err := RangeFromProto(fmt.Sprintf("domain.pins[%d].range", i), wp.GetRange())
			if err != nil {
				return Domain{}, err
			}
			pin.Range = r
		}
		d.Pins = append(d.Pins, pin)
	}
	d.Normalize()
	if err := d.validate(); err != nil {
		return Domain{}, prefixField("domain", err)
	}
	return d, nil
}

// RangeToProto converts r to its wire form: from as 16 bytes, to as 16 bytes
// or empty for End.
func RangeToProto(r Range) *wdsv1.KeyRange {
	return &wdsv1.KeyRange{From: r.From.Bytes(), To: r.To.Bytes()}
}

// RangeFromProto decodes and validates a wire range. from must be exactly 16
// bytes; to is 16 bytes or empty for End; the range must hold a key. Errors
// name "<field>.from" or "<field>.to"; a nil message is an error naming
// field.
func RangeFromProto(field string, p *wdsv1.KeyRange) (Range, error) {
	if p == nil {
		return Range{}, Invalid(field, "", "required")
	}
	// Field paths are built only on error: clients decode every routing
	// entry through here, and concatenating them eagerly was most of the
	// cost of applying a delta.
	from, err := KeyFromBytes("from", p.GetFrom())
	if err != nil {
		return Range{}, withPrefix(field, err)
	}
	to, err := BoundFromBytes("to", p.GetTo())
	if err != nil {
		return Range{}, withPrefix(field, err)
	}
	r := Range{From: from, To: to}
	if err := r.Validate(); err != nil {
		return Range{}, withPrefix(field, err)
	}
	return r, nil
}

// TokenToProto converts t to its wire form.
func TokenToProto(t Token) *wdsv1.Token {
	return &wdsv1.Token{Generation: t.Generation, Index: t.Index}
}

// TokenFromProto converts a wire token. Every pair of numbers is a token, so
// there is nothing to reject; a nil message is the zero token ("none").
func TokenFromProto(p *wdsv1.Token) Token {
	return Token{Generation: p.GetGeneration(), Index: p.GetIndex()}
}
