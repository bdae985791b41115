package topology

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// MaxFileSize bounds a topology file. Topology files also arrive over the
// Admin API, and a real one is a few kilobytes.
const MaxFileSize = 1 << 20

// MaxNodesPerRegion bounds the nodes of one region. A region's nodes form one
// Raft group; more than 7 voters only slow every commit down.
const MaxNodesPerRegion = 7

// File is a parsed topology file: the regions with their nodes, and the work
// domains. Parse and Validate guarantee that names, ids and addresses are
// well formed and unique, and that every region a failover list, a domain's
// regions or a pin names is a region of the file, so consumers of a File
// need not check again.
//
// A file of one region without global voters is a lone cell: no global
// group, the cell serves every domain itself. A file of several regions is a
// federation and names the voters of the global group (Node.Global).
type File struct {
	Regions []Region
	Domains []Domain
}

// Region is one failure domain and the nodes of its cell.
type Region struct {
	// Name follows the rules of ValidateName.
	Name string
	// Nodes are the cell's Raft voters, 1 to MaxNodesPerRegion.
	Nodes []Node
	// Failover is the ordered list of the regions that serve this region's
	// REGIONAL key spaces while it is down: the global group re-delegates
	// each to the first region of the list that is live. Every entry names
	// another region of the file, at most once.
	//
	// The list is not transitive: a region's key spaces go to the first
	// live region of its own list, never on along the list of that region.
	// So mutual lists (a: [b], b: [a]) are normal, and a list need not name
	// every region. Empty means the file gives no order; FailoverOf then
	// answers every other region, in file order.
	Failover []string
}

// Node is one WDS server process. Its addresses are the ones other nodes
// and clients dial, so they must name a reachable host, not a wildcard.
type Node struct {
	// ID follows the rules of ValidateConsumerID; unique across regions.
	ID string
	// Raft is the host:port of the Raft transport.
	Raft string
	// GRPC is the host:port of the client and admin gRPC endpoint.
	GRPC string
	// HTTP is the optional host:port serving /metrics, /healthz and /readyz.
	// It may be a wildcard such as 0.0.0.0:7300, since only scrapers use it.
	HTTP string
	// Global is the optional host:port of the node's global Raft transport:
	// set, it makes the node a voter of the global group too (typically one
	// node per region). A file of more than one region needs at least one.
	Global string
}

// Region returns the region called name.
func (f *File) Region(name string) (*Region, bool) {
	for i := range f.Regions {
		if f.Regions[i].Name == name {
			return &f.Regions[i], true
		}
	}
	return nil, false
}

// Node returns the node with id and the region it belongs to.
func (f *File) Node(id string) (*Region, *Node, bool) {
	for i := range f.Regions {
		r := &f.Regions[i]
		for j := range r.Nodes {
			if r.Nodes[j].ID == id {
				return r, &r.Nodes[j], true
			}
		}
	}
	return nil, nil, false
}

// FileError is an error in a topology file, located by file name, line and
// field path (e.g. "regions[0].nodes[1].raft") so the operator can go
// straight to it. Line is 0 when unknown, Field empty for errors of the file
// as a whole (such as YAML syntax). Err is usually a *FieldError, so
// errors.Is(err, ErrInvalid) holds for every FileError of a malformed file.
type FileError struct {
	File  string
	Line  int
	Field string
	Err   error
}

// Error returns "file:line: field: reason (got value)".
func (e *FileError) Error() string {
	var b strings.Builder
	switch {
	case e.File != "" && e.Line > 0:
		b.WriteString(e.File + ":" + strconv.Itoa(e.Line) + ": ")
	case e.File != "":
		b.WriteString(e.File + ": ")
	case e.Line > 0:
		b.WriteString("line " + strconv.Itoa(e.Line) + ": ")
	}
	var fe *FieldError
	if errors.As(e.Err, &fe) && fe.Field == e.Field {
		// Print the field once, even though the inner error names it too.
		if e.Field != "" {
			b.WriteString(e.Field)
			b.WriteString(": ")
		}
		b.WriteString(fe.detail())
		return b.String()
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	if e.Err != nil {
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the underlying error.
func (e *FileError) Unwrap() error { return e.Err }

// Load reads and parses the topology file at path; errors name path.
func Load(path string) (*File, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read topology file: %w", err)
	}
	return Parse(path, data)
}

// Parse parses and validates a topology file. name is the file name used in
// errors. Omitted fields take their defaults (a UNIT domain's shards: 1; a
// domain's ttl: DefaultTTL; a REGIONAL domain's regions: every region of
// the file, in file order; its failover: auto); explicitly written zeros
// are rejected, since they are more likely mistakes than requests for the
// default (an empty regions or failover list, an empty failover setting). A
// region's failover list has no default in the File: FailoverOf supplies it.
//
// Every error is a *FileError carrying name, line and field path. The parser
// works on the YAML node tree rather than decoding into structs, because only
// the tree knows lines, and because decoding would silently accept things a
// topology file must not contain: unknown fields (typos), duplicate keys,
// several documents.
func Parse(name string, data []byte) (*File, error) {
	fail := func(line int, field string, err *FieldError) (*File, error) {
		return nil, &FileError{File: name, Line: line, Field: field, Err: err}
	}
	if len(data) > MaxFileSize {
		return fail(0, "", Invalid("", strconv.Itoa(len(data))+" bytes", "file too large: the limit is %d bytes", MaxFileSize))
	}
	root, err := decodeOne(data)
	if err != nil {
		var se *syntaxError
		if errors.As(err, &se) {
			return fail(se.line, "", &FieldError{Reason: se.msg})
		}
		return fail(0, "", &FieldError{Reason: err.Error()})
	}
	p := &parser{lines: map[string]int{"": root.Line}}
	if n := findAlias(root); n != nil {
		return fail(n.Line, "", Invalid("", "*"+n.Value, "YAML aliases are not supported in topology files; write the value out"))
	}
	f, ferr := p.file(root)
	if ferr == nil {
		ferr = f.validate()
	}
	if ferr != nil {
		line := p.errLine
		if line == 0 {
			line = p.line(ferr.Field)
		}
		return fail(line, ferr.Field, ferr)
	}
	return f, nil
}

// syntaxError is a YAML syntax error with the line yaml reported.
type syntaxError struct {
	line int
	msg  string
}

func (e *syntaxError) Error() string { return e.msg }

var yamlLineRE = regexp.MustCompile(`(?s)^yaml: line (\d+): (.*)$`)

// decodeOne returns the root node of the only document in data.
func decodeOne(data []byte) (root *yaml.Node, err error) {
	// The YAML parser has panicked on malformed input in the past; a bad
	// topology file must produce an error, never take the server down.
	defer func() {
		if v := recover(); v != nil {
			root, err = nil, &syntaxError{msg: fmt.Sprintf("invalid YAML: parser failed: %v", v)}
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	switch err := dec.Decode(&doc); {
	case err == io.EOF:
		return nil, &syntaxError{msg: "empty topology file: want a mapping with regions and domains"}
	case err != nil:
		return nil, yamlError(err)
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		return nil, &syntaxError{line: extra.Line, msg: "a topology file holds one YAML document; found a second one (remove the '---')"}
	case err != io.EOF:
		return nil, yamlError(err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, &syntaxError{line: doc.Line, msg: "empty topology file: want a mapping with regions and domains"}
	}
	root = doc.Content[0]
	switch {
	case root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null":
		return nil, &syntaxError{line: root.Line, msg: "empty topology file: want a mapping with regions and domains"}
	case root.Kind != yaml.MappingNode:
		return nil, &syntaxError{line: root.Line, msg: "the top level must be a mapping with regions and domains, not " + describe(root)}
	}
	return root, nil
}

func yamlError(err error) error {
	if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &syntaxError{line: line, msg: "invalid YAML: " + m[2]}
	}
	return &syntaxError{msg: "invalid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}
}

// findAlias returns the first alias node under n. Aliases are rejected: they
// are never needed in a topology file, and following them could expand a
// small file into an enormous tree.
func findAlias(n *yaml.Node) *yaml.Node {
	if n.Kind == yaml.AliasNode {
		return n
	}
	for _, c := range n.Content {
		if a := findAlias(c); a != nil {
			return a
		}
	}
	return nil
}

// describe names the kind of a node for error messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.ShortTag() == "!!null" {
			return "null"
		}
		return "the value " + quote(n.Value)
	}
	return "an unsupported YAML node"
}

// parser turns the node tree into a File, remembering the line of every
// field path so that errors found later by validate can be located.
type parser struct {
	lines map[string]int
	// errLine, when set, is the line of the error being returned, for the
	// errors whose line the path alone does not determine.
	errLine int
}

// line returns the line of path, or of its closest recorded ancestor (a
// missing field is reported at the mapping that lacks it).
func (p *parser) line(path string) int {
	for {
		if l, ok := p.lines[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			return p.lines[""]
		}
		path = path[:i]
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func index(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

// mapping calls fn for every field of the mapping n, in order. It rejects
// anything but a mapping, and keys that are unknown (typos must not pass
// silently) or repeated (yaml.v3's node API keeps duplicates).
func (p *parser) mapping(n *yaml.Node, path string, known []string, fn func(key string, v *yaml.Node, path string) *FieldError) *FieldError {
	if n.Kind != yaml.MappingNode {
		return Invalid(path, "", "must be a mapping with fields %s, not %s", strings.Join(known, ", "), describe(n))
	}
	seen := make(map[string]int, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			p.errLine = k.Line
			return Invalid(path, "", "field names must be plain strings, not %s", describe(k))
		}
		fp := join(path, k.Value)
		if first, dup := seen[k.Value]; dup {
			p.errLine = k.Line
			return Invalid(fp, "", "duplicate field (first at line %d)", first)
		}
		seen[k.Value] = k.Line
		p.lines[fp] = k.Line
		if !slices.Contains(known, k.Value) {
			return Invalid(fp, "", "unknown field; known fields here: %s", strings.Join(known, ", "))
		}
		if err := fn(k.Value, v, fp); err != nil {
			return err
		}
	}
	return nil
}

// sequence returns the items of a list; null (an empty value) is an empty
// list.
func (p *parser) sequence(n *yaml.Node, path string) ([]*yaml.Node, *FieldError) {
	switch {
	case n.Kind == yaml.SequenceNode:
		for i, it := range n.Content {
			p.lines[index(path, i)] = it.Line
		}
		return n.Content, nil
	case n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null":
		return nil, nil
	}
	return nil, Invalid(path, "", "must be a list, not %s", describe(n))
}

// scalar returns the text of a scalar; null (an empty value) is "".
func scalar(n *yaml.Node, path string) (string, *FieldError) {
	if n.Kind != yaml.ScalarNode {
		return "", Invalid(path, "", "must be a single value, not %s", describe(n))
	}
	if n.ShortTag() == "!!null" {
		return "", nil
	}
	return n.Value, nil
}

func (p *parser) file(n *yaml.Node) (*File, *FieldError) {
	f := &File{}
	err := p.mapping(n, "", []string{"regions", "domains"}, func(key string, v *yaml.Node, path string) *FieldError {
		items, err := p.sequence(v, path)
		if err != nil {
			return err
		}
		for i, it := range items {
			ip := index(path, i)
			if key == "regions" {
				r, err := p.region(it, ip)
				if err != nil {
					return err
				}
				f.Regions = append(f.Regions, r)
			} else {
				d, err := p.domain(it, ip)
				if err != nil {
					return err
				}
				f.Domains = append(f.Domains, d)
			}
		}
		return nil
	})
	if err != nil {
		return f, err
	}
	// A REGIONAL domain without regions is in every region; an explicit
	// empty list was rejected above. The list is filled in here, where the
	// regions are known whatever order the file gives them in.
	for i := range f.Domains {
		if d := &f.Domains[i]; d.Kind == KindRegional && d.Regions == nil {
			d.Regions = make([]string, len(f.Regions))
			for j, r := range f.Regions {
				d.Regions[j] = r.Name
			}
		}
	}
	return f, nil
}

// names parses a list of names (regions); each item must be a single value.
func (p *parser) names(v *yaml.Node, path string) ([]string, *FieldError) {
	items, err := p.sequence(v, path)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(items))
	for i, it := range items {
		s, err := scalar(it, index(path, i))
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func (p *parser) region(n *yaml.Node, path string) (Region, *FieldError) {
	var r Region
	err := p.mapping(n, path, []string{"name", "nodes", "failover"}, func(key string, v *yaml.Node, path string) *FieldError {
		switch key {
		case "name":
			var err *FieldError
			r.Name, err = scalar(v, path)
			return err
		case "failover":
			var err *FieldError
			if r.Failover, err = p.names(v, path); err != nil {
				return err
			}
			if len(r.Failover) == 0 {
				// Empty would read as "no failover", yet means the default.
				return Invalid(path, "", "empty: list the regions that serve this region's regional key spaces while it is down, or omit the field for every other region in file order")
			}
			return nil
		}
		items, err := p.sequence(v, path)
		if err != nil {
			return err
		}
		for i, it := range items {
			nd, err := p.node(it, index(path, i))
			if err != nil {
				return err
			}
			r.Nodes = append(r.Nodes, nd)
		}
		return nil
	})
	return r, err
}

func (p *parser) node(n *yaml.Node, path string) (Node, *FieldError) {
	var nd Node
	err := p.mapping(n, path, []string{"id", "raft", "grpc", "http", "global"}, func(key string, v *yaml.Node, path string) *FieldError {
		s, err := scalar(v, path)
		switch key {
		case "id":
			nd.ID = s
		case "raft":
			nd.Raft = s
		case "grpc":
			nd.GRPC = s
		case "http":
			nd.HTTP = s
		case "global":
			nd.Global = s
		}
		return err
	})
	return nd, err
}

func (p *parser) domain(n *yaml.Node, path string) (Domain, *FieldError) {
	var d Domain
	var hasShards, hasTTL, hasRegions, hasFailover, hasFailback, hasPins bool
	var pinFields []pinFields
	err := p.mapping(n, path, []string{"name", "kind", "shards", "ttl", "regions", "failover", "failback_after", "pins"}, func(key string, v *yaml.Node, path string) *FieldError {
		switch key {
		case "regions":
			hasRegions = true
			var err *FieldError
			d.Regions, err = p.names(v, path)
			return err
		case "pins":
			hasPins = true
			items, err := p.sequence(v, path)
			if err != nil {
				return err
			}
			for i, it := range items {
				pin, has, err := p.pin(it, index(path, i))
				if err != nil {
					return err
				}
				d.Pins = append(d.Pins, pin)
				pinFields = append(pinFields, has)
			}
			return nil
		}
		s, err := scalar(v, path)
		if err != nil {
			return err
		}
		switch key {
		case "name":
			d.Name = s
		case "kind":
			k, err := parseKind(s)
			if err != nil {
				return renamed(err, path)
			}
			d.Kind = k
		case "shards":
			hasShards = true
			if v.ShortTag() != "!!int" {
				return Invalid(path, quote(s), "must be a whole number between 1 and %d", MaxShards)
			}
			var i int64
			if v.Decode(&i) != nil || i < 1 || i > MaxShards {
				return Invalid(path, s, "must be between 1 and %d", MaxShards)
			}
			d.Shards = int(i)
		case "ttl":
			hasTTL = true
			t, perr := time.ParseDuration(s)
			if perr != nil {
				return Invalid(path, quote(s), "must be a duration with a unit, such as 10s or 1m30s")
			}
			d.TTL = t
		case "failover":
			hasFailover = true
			f, err := parseFailover(s)
			if err != nil {
				return renamed(err, path)
			}
			d.Failover = f
		case "failback_after":
			hasFailback = true
			t, perr := time.ParseDuration(s)
			if perr != nil {
				return Invalid(path, quote(s), "must be a duration with a unit, such as 30s or 5m")
			}
			if t == 0 {
				return Invalid(path, s, "must be between 1ms and %s (omit it for the default, %s)", MaxFailbackAfter, DefaultFailbackAfter)
			}
			if err := checkFailbackAfter(path, t); err != nil {
				return err
			}
			d.FailbackAfter = t
		}
		return nil
	})
	if err != nil {
		return d, err
	}
	if !hasShards && d.Kind == KindUnit {
		d.Shards = 1
	}
	if !hasTTL {
		d.TTL = DefaultTTL
	}
	// Which placement fields a domain may have depends on its kind, which
	// may come after them. Checked here because a File cannot tell a field
	// written empty from one left out; Validate checks the rest. Without a
	// kind, validate reports the kind first.
	if d.Kind == KindUnspecified {
		return d, nil
	}
	switch {
	case hasRegions && d.Kind != KindRegional:
		return d, errRegionsNotRegional(path+".regions", d.Kind)
	case hasRegions && len(d.Regions) == 0:
		return d, Invalid(path+".regions", "", "a REGIONAL domain in no region: list the regions that have its key space, or omit the field for every region of the file")
	case hasFailover && d.Kind != KindRegional:
		return d, errFailoverNotRegional(path+".failover", d.Kind)
	case hasFailback && d.Kind != KindRegional:
		return d, errFailbackNotRegional(path+".failback_after", d.Kind)
	case hasPins && d.Kind == KindRegional:
		return d, errPinsRegional(path + ".pins")
	}
	for i, has := range pinFields {
		pp := index(path+".pins", i)
		switch {
		case d.Kind == KindUnit && has.from:
			return d, errUnitPinRange(pp + ".from")
		case d.Kind == KindUnit && has.to:
			return d, errUnitPinRange(pp + ".to")
		case d.Kind == KindUnit:
			d.Pins[i].Range = Full
		case !has.from:
			return d, Invalid(pp+".from", "", "required: the first key of the pinned range, a UUID on a shard boundary")
		case !has.to:
			return d, Invalid(pp+".to", "", "required: the end of the pinned range, a UUID on a shard boundary or end")
		}
	}
	return d, nil
}

func errUnitPinRange(field string) *FieldError {
	return Invalid(field, "", "a unit domain's pin takes only region: the domain is one shard, pinned whole")
}

// pinFields records which bounds a pin wrote: whether they are required or
// forbidden depends on the domain's kind.
type pinFields struct{ from, to bool }

func (p *parser) pin(n *yaml.Node, path string) (Pin, pinFields, *FieldError) {
	var pin Pin
	var has pinFields
	err := p.mapping(n, path, []string{"from", "to", "region"}, func(key string, v *yaml.Node, path string) *FieldError {
		s, err := scalar(v, path)
		if err != nil {
			return err
		}
		if key == "region" {
			pin.Region = s
			return nil
		}
		switch {
		case s == "" && key == "from":
			return Invalid(path, "", "must be a UUID on a shard boundary")
		case s == "":
			return Invalid(path, "", "must be a UUID on a shard boundary, or end")
		}
		b, err := parseBound(path, s)
		if err != nil {
			return err
		}
		if key == "from" {
			has.from, pin.Range.From = true, b
		} else {
			has.to, pin.Range.To = true, b
		}
		return nil
	})
	return pin, has, err
}

// Validate checks a File built in code the way Parse checks a parsed one:
// every region, node and domain valid; region names, node ids, addresses and
// domain names unique; failover lists, domains' regions and pins naming
// regions of the file; a global voter in a file of several regions. It
// applies no defaults (a REGIONAL domain with empty Regions is in every
// region). The error is a *FieldError whose Field is the path in the file,
// such as "domains[2].shards".
func (f *File) Validate() error {
	if err := f.validate(); err != nil {
		return err
	}
	return nil
}

func (f *File) validate() *FieldError {
	if len(f.Regions) == 0 {
		return Invalid("regions", "", "required: at least one region with at least one node")
	}
	regions := map[string]string{} // name → path of first use
	nodes := map[string]string{}
	addrs := map[string]string{}
	for i, r := range f.Regions {
		rp := index("regions", i)
		if err := checkName(rp+".name", r.Name); err != nil {
			return err
		}
		if first, dup := regions[r.Name]; dup {
			return Invalid(rp+".name", quote(r.Name), "duplicate region name, also %s", first)
		}
		regions[r.Name] = rp + ".name"
		switch {
		case len(r.Nodes) == 0:
			return Invalid(rp+".nodes", "", "required: a region needs at least one node")
		case len(r.Nodes) > MaxNodesPerRegion:
			return Invalid(rp+".nodes", strconv.Itoa(len(r.Nodes))+" nodes", "at most %d nodes per region: they form one Raft group, where more voters only slow commits", MaxNodesPerRegion)
		}
		for j, n := range r.Nodes {
			np := index(rp+".nodes", j)
			if err := checkConsumerID(np+".id", n.ID); err != nil {
				return err
			}
			if first, dup := nodes[n.ID]; dup {
				return Invalid(np+".id", quote(n.ID), "duplicate node id, also %s", first)
			}
			nodes[n.ID] = np + ".id"
			for _, a := range []struct {
				field, addr      string
				dialed, optional bool
			}{{"raft", n.Raft, true, false}, {"grpc", n.GRPC, true, false}, {"http", n.HTTP, false, true}, {"global", n.Global, true, true}} {
				field := np + "." + a.field
				if a.addr == "" && a.optional {
					continue
				}
				key, err := checkAddr(field, a.addr, a.dialed)
				if err != nil {
					return err
				}
				if !a.dialed && wildcardHost(a.addr) {
					// Each node binds its own wildcard: nodes on different
					// hosts may all listen on 0.0.0.0:7300.
					continue
				}
				if first, dup := addrs[key]; dup {
					return Invalid(field, quote(a.addr), "address already used by %s", first)
				}
				addrs[key] = field
			}
		}
	}
	if err := f.validateFederation(regions); err != nil {
		return err
	}
	domains := map[string]string{}
	for i, d := range f.Domains {
		dp := index("domains", i)
		if err := d.validate(); err != nil {
			return prefixField(dp, err)
		}
		if first, dup := domains[d.Name]; dup {
			return Invalid(dp+".name", quote(d.Name), "duplicate domain name, also %s", first)
		}
		domains[d.Name] = dp + ".name"
		if err := f.validateDomainRegions(dp, d, regions); err != nil {
			return err
		}
	}
	return nil
}

// checkAddr validates a host:port that others dial (dialed) or that is only
// listened on, and returns a canonical form for duplicate detection.
func checkAddr(field, addr string, dialed bool) (string, *FieldError) {
	if addr == "" {
		return "", Invalid(field, "", "required: host:port, e.g. 10.0.0.1:7200")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		reason := err.Error()
		var ae *net.AddrError
		if errors.As(err, &ae) {
			reason = ae.Err
		}
		return "", Invalid(field, quote(addr), "invalid host:port: %s", reason)
	}
	pn, err := strconv.Atoi(port)
	if err != nil || pn < 1 || pn > 65535 {
		return "", Invalid(field, quote(addr), "invalid host:port: the port must be a number from 1 to 65535")
	}
	if host == "" {
		return "", Invalid(field, quote(addr), "invalid host:port: the host is missing; give the address other nodes dial")
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if dialed && ip.IsUnspecified() {
			return "", Invalid(field, quote(addr), "invalid host:port: %s is a wildcard that nobody can dial; give this node's own address", host)
		}
		host = ip.String()
	} else if !validHostname(host) {
		return "", Invalid(field, quote(addr), "invalid host:port: %q is neither an IP address nor a host name", host)
	}
	return net.JoinHostPort(strings.ToLower(host), strconv.Itoa(pn)), nil
}

// validHostname accepts DNS names: dot-separated labels of letters, digits,
// '-' and '_' (container runtimes use it), at most 253 characters, with an
// optional trailing dot.
func validHostname(h string) bool {
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !isLower(c) && !isDigit(c) && !('A' <= c && c <= 'Z') && c != '-' && c != '_' {
				return false
			}
		}
	}
	return true
}

// ValidateHostPort checks an address others dial: host:port with a port
// from 1 to 65535 and a host that is an IP address (not a wildcard such as
// 0.0.0.0) or a DNS name. A URL ("http://...") is rejected with a hint.
func ValidateHostPort(field, addr string) error {
	if strings.Contains(addr, "://") {
		return Invalid(field, quote(addr), "want host:port, without a scheme such as http:// (e.g. 127.0.0.1:7100)")
	}
	if _, err := checkAddr(field, addr, true); err != nil {
		return err
	}
	return nil
}

// wildcardHost reports whether a listen address binds every interface
// (0.0.0.0, ::, or no host).
func wildcardHost(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return host == "" || (ip != nil && ip.IsUnspecified())
}
