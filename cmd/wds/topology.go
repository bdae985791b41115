package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/wdsio/wds/federation"
	"github.com/wdsio/wds/internal/rpcerr"
	globalv1 "github.com/wdsio/wds/proto/wds/global/v1"
	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
	"github.com/wdsio/wds/topology"
)

// NewTopologyCommand returns `wds topology` and its subcommands.
func NewTopologyCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "topology",
		Short: "Validate, plan, apply and show a federation's topology",
		Long: `A topology file (YAML) names the regions with their nodes and failover order,
and the work domains with their placement (regions, failover, pins). Every
node of a federation starts from it (wds server --topology FILE --node ID),
and the global group, which keeps the regions and the domain catalog, is
changed through it:

  validate  checks a file here, without asking anyone
  plan      shows what applying a file would change, applying nothing
  apply     shows the plan, asks, and applies the file as one change
  show      prints the global group's topology as a topology file

plan and apply talk to the file's global voters (the nodes with a global
address) unless --endpoint says otherwise; show talks to --endpoint. Only a
global voter serves the global group: a lone cell has none.`,
		Example: `  wds topology validate wds.yaml
  wds topology plan wds.yaml
  wds topology apply wds.yaml
  wds topology show --endpoint 10.1.0.1:7100 > current.yaml`,
		RunE: groupRunE,
	}
	cmd.AddCommand(
		newTopologyValidateCommand(g),
		newTopologyPlanCommand(g),
		newTopologyApplyCommand(g),
		newTopologyShowCommand(g),
	)
	return cmd
}

// validateJSON is `wds topology validate -o json`.
type validateJSON struct {
	File         string `json:"file"`
	OK           bool   `json:"ok"`
	Regions      int    `json:"regions"`
	Domains      int    `json:"domains"`
	GlobalVoters int    `json:"global_voters"`
	// Federation: the file has global voters (else it is a lone cell).
	Federation bool `json:"federation"`
}

func newTopologyValidateCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "validate FILE",
		Short: "Check a topology file, offline",
		Long: `Check a topology file as wds server would read it: YAML syntax, unknown or
duplicate fields, names, ids and addresses (well formed and unique), node
counts, failover lists, domains (kind, shards, ttl) and their placement
(regions of the file, pins on shard boundaries that do not overlap).

Nothing is contacted. On success it prints the counts of regions, domains
and global voters; an error names the file, the line and the field, and
the exit status is 1.

What only the global group can check (that an existing domain keeps its
kind, shards and ttl, say) is checked by "wds topology plan".`,
		Example: `  wds topology validate wds.yaml
  wds topology validate wds.yaml -o json`,
		Args: exactArgs(1, "the topology FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := topology.Load(args[0])
			if err != nil {
				return err
			}
			v := validateJSON{File: args[0], OK: true, Regions: len(f.Regions), Domains: len(f.Domains),
				GlobalVoters: len(f.GlobalVoters()), Federation: federation.Federated(f)}
			out := cmd.OutOrStdout()
			if g.json() {
				return writeJSON(out, v)
			}
			lone := ""
			if !v.Federation {
				lone = " (a lone cell)"
			}
			_, err = fmt.Fprintf(out, "%s: ok — %s, %s, %s%s\n", v.File,
				countOf(v.Regions, "region"), countOf(v.Domains, "domain"), countOf(v.GlobalVoters, "global voter"), lone)
			return err
		},
	}
}

func newTopologyPlanCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "plan FILE",
		Short: "Show what applying a topology file would change",
		Long: `Show what applying a topology file would change, applying nothing: regions
added, removed or changed (failover order), global voters added or removed
(a node given a global address, or no longer given one), domains created,
changed (regions, failover, pins) or deleted (a domain absent from the file starts
deleting: every grant in it is revoked), and the delegation moves placement
would start at once with the regions live now: which shards of which key
space go from which region to which, and how many consumers hold shards of
the domain in the region they leave. It prints "no changes" when there are
none.

The global leader computes the plan on a copy of its state, so it checks
what only the global group knows too: an existing domain's kind, shards
and ttl cannot change. The file is validated first, as by
"wds topology validate".

The file's global voters are asked (their grpc endpoints, in file order)
unless --endpoint is given. With -o json it prints regions_added,
regions_removed, regions_changed, domains_created, domains_changed
(domains as "wds domain list -o json" prints them), domains_deleted,
voters_added, voters_removed (node ids), moves
(domain, region, from_region, to_region, shards, consumers_affected) and
changes (false when nothing would change).`,
		Example: `  wds topology plan wds.yaml
  wds topology plan wds.yaml --endpoint 10.1.0.1:7100
  wds topology plan wds.yaml -o json | jq '.moves'`,
		Args: exactArgs(1, "the topology FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, ga, p, err := planTopologyFile(cmd, g, args[0])
			if err != nil {
				return err
			}
			defer ga.close()
			out := cmd.OutOrStdout()
			if g.json() {
				return writeJSON(out, p.json())
			}
			return p.write(out)
		},
	}
}

// applyJSON is `wds topology apply -o json`.
type applyJSON struct {
	Plan    planJSON `json:"plan"`
	Applied bool     `json:"applied"`
	// Index is the global log index of the entry that applied the file
	// (0 when nothing was applied).
	Index uint64 `json:"index"`
}

func newTopologyApplyCommand(g *globals) *cobra.Command {
	var yes bool
	cmd := &cobra.Command{
		Use:   "apply FILE [--yes]",
		Short: "Apply a topology file to the global group, after showing the plan",
		Long: `Apply a topology file to the global group: its regions (with their failover
order) and domains become the federation's, as one entry of the global
log, all or nothing. Domains absent from the global group are created;
domains present are updated (regions, failover, pins: kind, shards and ttl
cannot change); domains absent from the file start deleting.

It first shows the plan (as "wds topology plan" does) and asks
"apply? [y/N]" on stdin; --yes applies without asking. When the plan has
no changes, nothing is applied. A file that does not validate, or that the
global group refuses, changes nothing: the error names the file, the line
and the field, and the exit status is 1. So does any answer but y or yes.

The file's global voters are asked (their grpc endpoints, in file order)
unless --endpoint is given. It prints the global log index of the entry
that applied the file; with -o json, {"plan", "applied", "index"} (the plan
then goes to stderr in table form before the question).`,
		Example: `  wds topology apply wds.yaml
  wds topology apply wds.yaml --yes
  wds topology apply wds.yaml --yes -o json | jq .index`,
		Args: exactArgs(1, "the topology FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			tf, ga, p, err := planTopologyFile(cmd, g, args[0])
			if err != nil {
				return err
			}
			defer ga.close()
			out := cmd.OutOrStdout()
			res := applyJSON{Plan: p.json()}
			planOut := out
			if g.json() {
				planOut = cmd.ErrOrStderr()
			}
			if !g.json() || !yes {
				if err := p.write(planOut); err != nil {
					return err
				}
			}
			if !p.changes() {
				if g.json() {
					return writeJSON(out, res)
				}
				_, err := fmt.Fprintln(out, "nothing to apply")
				return err
			}
			if !yes {
				ok, err := confirm(cmd.InOrStdin(), cmd.ErrOrStderr(), "apply? [y/N] ")
				if err != nil {
					return err
				}
				if !ok {
					return errors.New("not applied: the answer was not yes (--yes applies without asking)")
				}
			}
			var ar *globalv1.ApplyTopologyResponse
			err = ga.call(cmd.Context(), func(ctx context.Context, c globalv1.GlobalAdminClient) (err error) {
				ar, err = c.ApplyTopology(ctx, &globalv1.ApplyTopologyRequest{Topology: tf.proto})
				return err
			})
			if err != nil {
				return tf.fileError(err)
			}
			res.Applied, res.Index = true, ar.GetIndex()
			if g.json() {
				return writeJSON(out, res)
			}
			_, err = fmt.Fprintf(out, "applied %s at global index %d\n", tf.path, res.Index)
			return err
		},
	}
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "apply without asking")
	return cmd
}

// confirm asks question on w and reads the answer from r: true for y or
// yes (any case). No answer (end of input) is no.
func confirm(r io.Reader, w io.Writer, question string) (bool, error) {
	if _, err := fmt.Fprint(w, question); err != nil {
		return false, err
	}
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil && err != io.EOF {
		return false, fmt.Errorf("reading the answer from stdin: %w", err)
	}
	if err == io.EOF && line == "" {
		fmt.Fprintln(w)
		return false, errors.New("not applied: no answer on stdin (--yes applies without asking)")
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return true, nil
	}
	return false, nil
}

func newTopologyShowCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "show",
		Short: "Print the global group's topology as a topology file",
		Long: `Print the regions (with their failover order and global voters) and the
domains (kind, shards, ttl, regions, failover, pins) the global group holds
now, as a topology file. The global group knows only the nodes that are its
voters (id, grpc, global), and shows them as comments: add each region's
nodes (id, raft, grpc, and global for the global voters) to use the output
as a file for wds server or wds topology apply.

It asks the first global voter of --endpoint, which answers from its own
copy of the global state. With -o json it prints {"index", "regions":
[{"name", "failover", "voters": [{"id", "grpc", "global"}]}], "domains"} (domains as "wds domain list -o json"
prints them).`,
		Example: `  wds topology show --endpoint 10.1.0.1:7100
  wds topology show -o json | jq '.domains[].name'`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ga, err := g.globalAdmin()
			if err != nil {
				return err
			}
			defer ga.close()
			res, from, err := ga.leaderTopology(cmd.Context())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if g.json() {
				return writeJSON(out, topologyToJSON(res))
			}
			return writeTopologyYAML(out, res, from)
		},
	}
}

// leaderTopology reads the topology from the global leader, which a voter
// of the endpoints names (a follower may not have applied the latest
// change yet); from the voter itself when the leader does not answer.
// from says whose copy it is.
func (a *globalAdmin) leaderTopology(ctx context.Context) (res *globalv1.GetTopologyResponse, from string, err error) {
	var st *globalv1.GlobalStatusResponse
	err = a.call(ctx, func(ctx context.Context, c globalv1.GlobalAdminClient) (err error) {
		st, err = c.GlobalStatus(ctx, &globalv1.GlobalStatusRequest{})
		return err
	})
	if err != nil {
		return nil, "", err
	}
	get := func(ctx context.Context, c globalv1.GlobalAdminClient) (err error) {
		res, err = c.GetTopology(ctx, &globalv1.GetTopologyRequest{})
		return err
	}
	if st.GetState() != "Leader" && st.GetLeaderEndpoint() != "" && st.GetLeaderEndpoint() != a.answered {
		la := newGlobalAdmin([]string{st.GetLeaderEndpoint()}, "the global leader", min(a.timeout, globalLookupTimeout))
		defer la.close()
		if la.call(ctx, get) == nil {
			return res, fmt.Sprintf("the global leader %s (%s)", st.GetLeaderId(), st.GetLeaderEndpoint()), nil
		}
	}
	voter := a.answered
	if err := a.call(ctx, get); err != nil {
		return nil, "", err
	}
	if st.GetState() == "Leader" {
		return res, fmt.Sprintf("the global leader %s (%s)", st.GetNodeId(), voter), nil
	}
	return res, fmt.Sprintf("voter %s (%s; the global leader did not answer, this copy may lag)", st.GetNodeId(), voter), nil
}

// topologyJSON is `wds topology show -o json`.
type topologyJSON struct {
	Index   uint64       `json:"index"`
	Regions []regionJSON `json:"regions"`
	Domains []domainJSON `json:"domains"`
}

type regionJSON struct {
	Name     string      `json:"name"`
	Failover []string    `json:"failover"`
	Voters   []voterJSON `json:"voters"`
}

// voterJSON is a region's global voter as the applied topology lists it.
type voterJSON struct {
	ID     string `json:"id"`
	GRPC   string `json:"grpc"`
	Global string `json:"global"`
}

func topologyToJSON(res *globalv1.GetTopologyResponse) topologyJSON {
	v := topologyJSON{Index: res.GetIndex(), Regions: []regionJSON{}, Domains: []domainJSON{}}
	for _, r := range res.GetRegions() {
		rj := regionJSON{Name: r.GetName(), Failover: append([]string{}, r.GetFailover()...), Voters: []voterJSON{}}
		for _, vo := range r.GetVoters() {
			rj.Voters = append(rj.Voters, voterJSON{ID: vo.GetId(), GRPC: vo.GetGrpc(), Global: vo.GetRaft()})
		}
		v.Regions = append(v.Regions, rj)
	}
	for _, d := range res.GetDomains() {
		v.Domains = append(v.Domains, domainToJSON(d))
	}
	return v
}

// writeTopologyYAML prints a topology as a topology file, without nodes.
func writeTopologyYAML(w io.Writer, res *globalv1.GetTopologyResponse, from string) error {
	str := func(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s} }
	num := func(n int64) *yaml.Node {
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.FormatInt(n, 10)}
	}
	flowList := func(items []string) *yaml.Node {
		l := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
		for _, it := range items {
			l.Content = append(l.Content, str(it))
		}
		return l
	}
	mapping := func(style yaml.Style, kv ...*yaml.Node) *yaml.Node {
		return &yaml.Node{Kind: yaml.MappingNode, Style: style, Content: kv}
	}
	regions := &yaml.Node{Kind: yaml.SequenceNode}
	for _, r := range res.GetRegions() {
		m := mapping(0, str("name"), str(r.GetName()))
		if len(r.GetFailover()) > 0 {
			m.Content = append(m.Content, str("failover"), flowList(r.GetFailover()))
		}
		if len(r.GetVoters()) > 0 {
			// A comment, not nodes: the state knows no node's raft
			// address, and a partial node would not parse.
			var vs []string
			for _, vo := range r.GetVoters() {
				vs = append(vs, fmt.Sprintf("%s (grpc %s, global %s)", vo.GetId(), vo.GetGrpc(), vo.GetRaft()))
			}
			m.Content[1].LineComment = "global voters: " + strings.Join(vs, ", ")
		}
		regions.Content = append(regions.Content, m)
	}
	domains := &yaml.Node{Kind: yaml.SequenceNode}
	for _, p := range res.GetDomains() {
		kind := topology.KindFromProto(p.GetKind())
		m := mapping(0, str("name"), str(p.GetName()), str("kind"), str(kind.String()))
		if kind != topology.KindUnit {
			m.Content = append(m.Content, str("shards"), num(int64(p.GetShards())))
		}
		m.Content = append(m.Content, str("ttl"), str(ttlString(p.GetTtlMillis())))
		if kind == topology.KindRegional {
			if len(p.GetRegions()) > 0 {
				m.Content = append(m.Content, str("regions"), flowList(p.GetRegions()))
			}
			m.Content = append(m.Content, str("failover"), str(failoverString(p.GetFailover())))
			if ms := p.GetFailbackAfterMillis(); ms > 0 {
				m.Content = append(m.Content, str("failback_after"), str(ttlString(ms)))
			}
		}
		if len(p.GetPins()) > 0 {
			pins := &yaml.Node{Kind: yaml.SequenceNode}
			for _, pj := range pinsToJSON(p) {
				pm := mapping(yaml.FlowStyle)
				if kind != topology.KindUnit {
					to := pj.To
					if pj.ToEnd {
						to = "end"
					}
					pm.Content = append(pm.Content, str("from"), str(pj.From), str("to"), str(to))
				}
				pm.Content = append(pm.Content, str("region"), str(pj.Region))
				pins.Content = append(pins.Content, pm)
			}
			m.Content = append(m.Content, str("pins"), pins)
		}
		domains.Content = append(domains.Content, m)
	}
	root := mapping(0, str("regions"), regions, str("domains"), domains)
	var b bytes.Buffer
	fmt.Fprintf(&b, "# The global group's topology at global index %d,\n# as %s holds it.\n", res.GetIndex(), from)
	b.WriteString("# The global state knows only the global voters (in comments): add each\n")
	b.WriteString("# region's nodes (id, raft, grpc, and global for the global voters) to use\n")
	b.WriteString("# this as a topology file.\n")
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(root); err != nil {
		return err
	}
	if err := enc.Close(); err != nil {
		return err
	}
	_, err := w.Write(b.Bytes())
	return err
}

// failoverString is a REGIONAL domain's failover setting as a topology
// file writes it.
func failoverString(f wdsv1.Failover) string {
	if f == wdsv1.Failover_FAILOVER_MANUAL {
		return topology.FailoverManual.String()
	}
	return topology.FailoverAuto.String()
}

// pinJSON is a pin as the CLI prints it: a UNIT domain's has a region only.
type pinJSON struct {
	From   string `json:"from,omitempty"`
	To     string `json:"to,omitempty"`
	ToEnd  bool   `json:"to_end,omitempty"`
	Region string `json:"region"`
}

func pinsToJSON(d *wdsv1.Domain) []pinJSON {
	var out []pinJSON
	for i, p := range d.GetPins() {
		pj := pinJSON{Region: p.GetRegion()}
		if p.GetRange() != nil && topology.KindFromProto(d.GetKind()) != topology.KindUnit {
			if r, err := topology.RangeFromProto(fmt.Sprintf("pins[%d].range", i), p.GetRange()); err == nil {
				pj.From, _ = boundJSON(r.From)
				pj.To, pj.ToEnd = boundJSON(r.To)
			}
		}
		out = append(out, pj)
	}
	return out
}

// topologyFile is a validated topology file, as plan and apply send it.
type topologyFile struct {
	path  string
	data  []byte
	file  *topology.File
	proto *globalv1.ApplyTopology
}

// loadTopologyFile loads and validates a topology file that describes a
// federation.
// planTopologyFile loads and validates the file and asks the global
// group for its plan (plan and apply both start so); close the returned
// admin.
func planTopologyFile(cmd *cobra.Command, g *globals, path string) (*topologyFile, *globalAdmin, *topologyPlan, error) {
	tf, err := loadTopologyFile(path)
	if err != nil {
		return nil, nil, nil, err
	}
	ga, err := tf.admin(cmd, g)
	if err != nil {
		return nil, nil, nil, err
	}
	p, err := ga.plan(cmd.Context(), tf)
	if err != nil {
		ga.close()
		return nil, nil, nil, err
	}
	return tf, ga, p, nil
}

func loadTopologyFile(path string) (*topologyFile, error) {
	f, err := topology.Load(path)
	if err != nil {
		return nil, err
	}
	if !federation.Federated(f) {
		return nil, fmt.Errorf("%s: the file has no global voter: it describes a lone cell, which has no global group to apply it to (a federation's file gives nodes a global address)", path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return &topologyFile{path: path, data: data, file: f, proto: federation.TopologyProto(f)}, nil
}

// admin returns the client of the global group plan and apply use: the
// file's global voters' grpc endpoints, or --endpoint when given.
func (tf *topologyFile) admin(cmd *cobra.Command, g *globals) (*globalAdmin, error) {
	if cmd.Flags().Changed("endpoint") {
		return g.globalAdmin()
	}
	var eps []string
	for _, v := range tf.file.GlobalVoters() {
		eps = append(eps, v.Node.GRPC)
	}
	return newGlobalAdmin(eps, tf.path+fileVotersSource, g.timeout), nil
}

// fileError locates the field a global group's error names ("domains[1]:
// ...", paths of the ApplyTopology the file became) in the file: "FILE:LINE:
// domains[1]: ...". Other errors are returned as they are.
func (tf *topologyFile) fileError(err error) error {
	st, ok := status.FromError(err)
	if !ok || st.Code() == codes.OK {
		return err
	}
	field, rest, ok := strings.Cut(st.Message(), ": ")
	if !ok || !fieldPathRE.MatchString(field) || !(strings.HasPrefix(field, "regions[") || strings.HasPrefix(field, "domains[")) {
		return err
	}
	field = tf.voterField(field)
	line, fileField := locateField(tf.data, field)
	loc := tf.path
	if line > 0 {
		loc += ":" + strconv.Itoa(line)
	}
	return status.Error(st.Code(), loc+": "+fileField+": "+rest)
}

var voterFieldRE = regexp.MustCompile(`^regions\[([0-9]+)\]\.voters\[([0-9]+)\](?:\.([a-z]+))?$`)

// voterField turns the field of a region's global voter as the global
// group names it (regions[i].voters[j].raft: the j-th node of region i
// with a global address) into the file's (regions[i].nodes[k].global).
// Other fields are returned as they are.
func (tf *topologyFile) voterField(field string) string {
	m := voterFieldRE.FindStringSubmatch(field)
	if m == nil {
		return field
	}
	i, _ := strconv.Atoi(m[1])
	j, _ := strconv.Atoi(m[2])
	if i >= len(tf.file.Regions) {
		return field
	}
	for k, n := range tf.file.Regions[i].Nodes {
		if n.Global == "" {
			continue
		}
		if j > 0 {
			j--
			continue
		}
		sub := map[string]string{"raft": "global", "grpc": "grpc", "id": "id", "": ""}[m[3]]
		out := fmt.Sprintf("regions[%d].nodes[%d]", i, k)
		if sub != "" {
			out += "." + sub
		}
		return out
	}
	return field
}

var segmentRE = regexp.MustCompile(`^([a-z_]+)(?:\[([0-9]+)\])?$`)

// locateField finds the line of a field of the global group's
// ApplyTopology (e.g. "domains[1].pins[0].range.from") in a topology
// file's YAML, and returns the field as the file names it
// ("domains[1].pins[0].from"). The line is that of the deepest part of the
// path found (0: none).
func locateField(data []byte, field string) (int, string) {
	var parts []string
	for _, seg := range strings.Split(field, ".") {
		switch {
		case seg == "range" && len(parts) > 0 && strings.HasPrefix(parts[len(parts)-1], "pins["):
			continue // a file's pin has from and to itself
		case seg == "ttl_millis":
			seg = "ttl"
		}
		parts = append(parts, seg)
	}
	fileField := strings.Join(parts, ".")
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil || doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return 0, fileField
	}
	n, line := doc.Content[0], 0
	for _, seg := range parts {
		m := segmentRE.FindStringSubmatch(seg)
		if m == nil || n.Kind != yaml.MappingNode {
			break
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == m[1] {
				line, next = n.Content[i].Line, n.Content[i+1]
				break
			}
		}
		if next == nil {
			break
		}
		n = next
		if m[2] != "" {
			i, _ := strconv.Atoi(m[2])
			if n.Kind != yaml.SequenceNode || i >= len(n.Content) {
				break
			}
			n = n.Content[i]
			line = n.Line
		}
	}
	return line, fileField
}

// topologyPlan is the global leader's plan for a file, with the topology
// the group holds now (nil if it could not be read) to tell what changed.
type topologyPlan struct {
	tf  *topologyFile
	res *globalv1.PlanTopologyResponse
	cur *globalv1.GetTopologyResponse
}

// plan asks the global leader what applying tf would change, and reads
// the current topology to show what changes in a changed region or
// domain.
func (a *globalAdmin) plan(ctx context.Context, tf *topologyFile) (*topologyPlan, error) {
	p := &topologyPlan{tf: tf}
	err := a.call(ctx, func(ctx context.Context, c globalv1.GlobalAdminClient) (err error) {
		p.res, err = c.PlanTopology(ctx, &globalv1.ApplyTopologyRequest{Topology: tf.proto})
		return err
	})
	if err != nil {
		return nil, tf.fileError(err)
	}
	if len(p.res.GetRegionsChanged())+len(p.res.GetDomainsChanged()) > 0 {
		p.cur, _, _ = a.leaderTopology(ctx)
	}
	return p, nil
}

// changes reports whether applying the file would change the topology.
// Moves alone are not a change of the file's: placement makes them anyway
// (it has not settled yet).
func (p *topologyPlan) changes() bool {
	r := p.res
	return len(r.GetRegionsAdded())+len(r.GetRegionsRemoved())+len(r.GetRegionsChanged())+
		len(r.GetDomainsCreated())+len(r.GetDomainsChanged())+len(r.GetDomainsDeleted())+
		len(r.GetVotersAdded())+len(r.GetVotersRemoved()) > 0
}

// planJSON is `wds topology plan -o json`: the global leader's answer.
type planJSON struct {
	RegionsAdded   []string     `json:"regions_added"`
	RegionsRemoved []string     `json:"regions_removed"`
	RegionsChanged []string     `json:"regions_changed"`
	DomainsCreated []domainJSON `json:"domains_created"`
	DomainsChanged []domainJSON `json:"domains_changed"`
	DomainsDeleted []string     `json:"domains_deleted"`
	// VotersAdded and VotersRemoved are the global voters (node ids) the
	// file adds (each joins the group once started) and removes (the
	// global leader takes it out of the group).
	VotersAdded   []string   `json:"voters_added"`
	VotersRemoved []string   `json:"voters_removed"`
	Moves         []moveJSON `json:"moves"`
	// Changes is false when applying the file would change nothing (moves
	// may still be listed: placement makes them anyway, it has not
	// settled).
	Changes bool `json:"changes"`
}

type moveJSON struct {
	Domain string `json:"domain"`
	// Region is the key space's region (REGIONAL), "" otherwise.
	Region            string `json:"region"`
	FromRegion        string `json:"from_region"`
	ToRegion          string `json:"to_region"`
	Shards            uint32 `json:"shards"`
	ConsumersAffected uint32 `json:"consumers_affected"`
}

func (p *topologyPlan) json() planJSON {
	r := p.res
	v := planJSON{
		RegionsAdded:   append([]string{}, r.GetRegionsAdded()...),
		RegionsRemoved: append([]string{}, r.GetRegionsRemoved()...),
		RegionsChanged: append([]string{}, r.GetRegionsChanged()...),
		DomainsCreated: []domainJSON{}, DomainsChanged: []domainJSON{},
		DomainsDeleted: append([]string{}, r.GetDomainsDeleted()...),
		VotersAdded:    voterIDs(r.GetVotersAdded()),
		VotersRemoved:  voterIDs(r.GetVotersRemoved()),
		Moves:          []moveJSON{},
		Changes:        p.changes(),
	}
	for _, d := range r.GetDomainsCreated() {
		v.DomainsCreated = append(v.DomainsCreated, domainToJSON(d))
	}
	for _, d := range r.GetDomainsChanged() {
		v.DomainsChanged = append(v.DomainsChanged, domainToJSON(d))
	}
	for _, m := range r.GetMoves() {
		v.Moves = append(v.Moves, moveJSON{Domain: m.GetDomain(), Region: m.GetRegion(), FromRegion: m.GetFromRegion(),
			ToRegion: m.GetToRegion(), Shards: m.GetShards(), ConsumersAffected: m.GetConsumersAffected()})
	}
	return v
}

// write prints the plan for people.
func (p *topologyPlan) write(w io.Writer) error {
	r := p.res
	if !p.changes() {
		if len(r.GetMoves()) == 0 {
			_, err := fmt.Fprintf(w, "%s: no changes\n", p.tf.path)
			return err
		}
		fmt.Fprintf(w, "%s: no changes; placement is still moving shards, whatever the file says:\n", p.tf.path)
		return writeMoves(w, r.GetMoves())
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: plan of the global leader (nothing is applied yet):\n", p.tf.path)
	newRegion := map[string]*globalv1.Region{}
	for _, reg := range p.tf.proto.GetRegions() {
		newRegion[reg.GetName()] = reg
	}
	oldRegion := map[string]*globalv1.Region{}
	oldDomain := map[string]*wdsv1.Domain{}
	for _, reg := range p.cur.GetRegions() {
		oldRegion[reg.GetName()] = reg
	}
	for _, d := range p.cur.GetDomains() {
		oldDomain[d.GetName()] = d
	}
	if len(r.GetRegionsAdded())+len(r.GetRegionsRemoved())+len(r.GetRegionsChanged()) > 0 {
		b.WriteString("\nRegions:\n")
		for _, name := range r.GetRegionsAdded() {
			fmt.Fprintf(&b, "  + %s (failover %s)\n", name, regionList(newRegion[name].GetFailover(), "none"))
		}
		for _, name := range r.GetRegionsChanged() {
			if old, ok := oldRegion[name]; ok {
				fmt.Fprintf(&b, "  ~ %s: failover %s → %s\n", name, regionList(old.GetFailover(), "none"), regionList(newRegion[name].GetFailover(), "none"))
			} else {
				fmt.Fprintf(&b, "  ~ %s: failover → %s\n", name, regionList(newRegion[name].GetFailover(), "none"))
			}
		}
		for _, name := range r.GetRegionsRemoved() {
			fmt.Fprintf(&b, "  - %s\n", name)
		}
	}
	if len(r.GetVotersAdded())+len(r.GetVotersRemoved()) > 0 {
		b.WriteString("\nGlobal voters:\n")
		for _, v := range r.GetVotersAdded() {
			fmt.Fprintf(&b, "  + %s (global %s, grpc %s): joins the global group once started with this file\n", v.GetId(), v.GetRaft(), v.GetGrpc())
		}
		for _, v := range r.GetVotersRemoved() {
			fmt.Fprintf(&b, "  - %s (global %s): the global leader removes it from the group\n", v.GetId(), v.GetRaft())
		}
	}
	if len(r.GetDomainsCreated())+len(r.GetDomainsChanged())+len(r.GetDomainsDeleted()) > 0 {
		b.WriteString("\nDomains:\n")
		for _, d := range r.GetDomainsCreated() {
			fmt.Fprintf(&b, "  + %s: %s\n", d.GetName(), describeDomain(d))
		}
		for _, d := range r.GetDomainsChanged() {
			if old, ok := oldDomain[d.GetName()]; ok {
				fmt.Fprintf(&b, "  ~ %s: %s\n", d.GetName(), strings.Join(domainChanges(old, d), "; "))
			} else {
				fmt.Fprintf(&b, "  ~ %s: now %s\n", d.GetName(), describeDomain(d))
			}
		}
		for _, name := range r.GetDomainsDeleted() {
			fmt.Fprintf(&b, "  - %s (starts deleting: every grant in it is revoked)\n", name)
		}
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return err
	}
	if len(r.GetMoves()) == 0 {
		_, err := fmt.Fprintln(w, "\nDelegation moves: none")
		return err
	}
	fmt.Fprintln(w, "\nDelegation moves (placement starts them once applied, with the regions live now):")
	return writeMoves(w, r.GetMoves())
}

// voterIDs are the voters' ids (never nil, for JSON).
func voterIDs(vs []*globalv1.Voter) []string {
	out := []string{}
	for _, v := range vs {
		out = append(out, v.GetId())
	}
	return out
}

// writeMoves prints planned delegation moves as a table.
func writeMoves(w io.Writer, moves []*globalv1.PlannedMove) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "DOMAIN\tKEY SPACE\tFROM\tTO\tSHARDS\tCONSUMERS AFFECTED")
	for _, m := range moves {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\n", m.GetDomain(), dash(m.GetRegion()), m.GetFromRegion(), m.GetToRegion(), m.GetShards(), m.GetConsumersAffected())
	}
	return tw.Flush()
}

// regionList is "a, b", or none when empty.
func regionList(rs []string, none string) string {
	if len(rs) == 0 {
		return none
	}
	return strings.Join(rs, ", ")
}

// describeDomain is a domain's definition in one line: "regional, 16
// shards, ttl 10s, regions a, b, failover manual".
func describeDomain(d *wdsv1.Domain) string {
	kind := topology.KindFromProto(d.GetKind())
	parts := []string{kind.String(), countOf(int(d.GetShards()), "shard"), "ttl " + ttlString(d.GetTtlMillis())}
	if kind == topology.KindRegional {
		parts = append(parts, "regions "+regionList(d.GetRegions(), "every region"), "failover "+failoverString(d.GetFailover()))
		if d.GetFailover() != wdsv1.Failover_FAILOVER_MANUAL {
			parts = append(parts, "failback after "+failbackString(d))
		}
	}
	if len(d.GetPins()) > 0 {
		parts = append(parts, "pins "+pinList(d))
	}
	return strings.Join(parts, ", ")
}

// domainChanges lists what differs between two definitions of a domain.
func domainChanges(old, d *wdsv1.Domain) []string {
	var out []string
	kind := topology.KindFromProto(d.GetKind())
	if !slices.Equal(old.GetRegions(), d.GetRegions()) {
		out = append(out, fmt.Sprintf("regions %s → %s", regionList(old.GetRegions(), "every region"), regionList(d.GetRegions(), "every region")))
	}
	if kind == topology.KindRegional && failoverString(old.GetFailover()) != failoverString(d.GetFailover()) {
		out = append(out, fmt.Sprintf("failover %s → %s", failoverString(old.GetFailover()), failoverString(d.GetFailover())))
	}
	if kind == topology.KindRegional && failbackString(old) != failbackString(d) {
		out = append(out, fmt.Sprintf("failback_after %s → %s", failbackString(old), failbackString(d)))
	}
	if op, np := pinList(old), pinList(d); op != np {
		out = append(out, fmt.Sprintf("pins %s → %s", op, np))
	}
	if len(out) == 0 {
		out = append(out, describeDomain(d))
	}
	return out
}

// failbackString is a REGIONAL domain's failback_after, the default
// spelled out.
func failbackString(d *wdsv1.Domain) string {
	if ms := d.GetFailbackAfterMillis(); ms > 0 {
		return ttlString(ms)
	}
	return topology.DefaultFailbackAfter.String() + " (default)"
}

// pinList is a domain's pins: "[from, to) in region, ...", "in region" for
// a UNIT domain, "none" without pins.
func pinList(d *wdsv1.Domain) string {
	pins := pinsToJSON(d)
	if len(pins) == 0 {
		return "none"
	}
	var out []string
	for _, p := range pins {
		if p.From == "" {
			out = append(out, "in "+p.Region)
			continue
		}
		to := p.To
		if p.ToEnd {
			to = "end"
		}
		out = append(out, fmt.Sprintf("[%s, %s) in %s", p.From, to, p.Region))
	}
	return strings.Join(out, ", ")
}

// globalAdmin calls the global group's GlobalAdmin service through the
// first of its endpoints that serves it. Only global voters do: any other
// node (a lone cell's, a federation node without a global address)
// answers Unimplemented and is skipped, as is an endpoint that cannot be
// reached. A voter answers itself or forwards to the global leader; one
// that says the group has no leader right now (Unavailable) is asked again,
// after the others, until --timeout.
type globalAdmin struct {
	endpoints []string
	// source names where the endpoints came from, for errors: "--endpoint",
	// or "FILE's global voters".
	source  string
	timeout time.Duration
	// attempt bounds one call to one endpoint, so that a hung endpoint
	// leaves time for the others.
	attempt time.Duration
	conns   map[string]*grpc.ClientConn
	// answered is the endpoint that answered the last call.
	answered string
}

func (g *globals) globalAdmin() (*globalAdmin, error) {
	eps, err := g.endpoints()
	if err != nil {
		return nil, err
	}
	return newGlobalAdmin(eps, "--endpoint", g.timeout), nil
}

func newGlobalAdmin(eps []string, source string, timeout time.Duration) *globalAdmin {
	attempt := timeout
	if len(eps) > 1 {
		attempt = min(timeout, max(timeout/time.Duration(len(eps)), 2*time.Second))
	}
	return &globalAdmin{endpoints: eps, source: source, timeout: timeout, attempt: attempt, conns: map[string]*grpc.ClientConn{}}
}

func (a *globalAdmin) close() {
	for _, cc := range a.conns {
		cc.Close()
	}
}

func (a *globalAdmin) conn(ep string) (*grpc.ClientConn, error) {
	if cc := a.conns[ep]; cc != nil {
		return cc, nil
	}
	cc, err := dial(ep)
	if err != nil {
		return nil, err
	}
	a.conns[ep] = cc
	return cc, nil
}

// noGlobalVoterError: no endpoint serves the global group.
type noGlobalVoterError struct {
	source string
	notes  []string
}

func (e *noGlobalVoterError) Error() string {
	hint := "is this a lone cell? topology commands need a federation"
	if strings.HasSuffix(e.source, fileVotersSource) {
		hint = "is this a lone cell, or does the file name none of the running group's voters? give --endpoint a voter of the running group"
	}
	return e.source + ": no global voter among the endpoints (" + hint + "): " + strings.Join(e.notes, "; ")
}

// fileVotersSource ends the source of a globalAdmin that asks a topology
// file's global voters.
const fileVotersSource = "'s global voters"

// call runs fn against the first endpoint that serves GlobalAdmin; see
// globalAdmin.
func (a *globalAdmin) call(ctx context.Context, fn func(ctx context.Context, c globalv1.GlobalAdminClient) error) error {
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	for {
		var notes []string
		var busy error
		reachable := false
		for _, ep := range a.endpoints {
			cc, err := a.conn(ep)
			if err != nil {
				notes = append(notes, fmt.Sprintf("%s: %v", ep, err))
				continue
			}
			actx, acancel := context.WithTimeout(ctx, a.attempt)
			err = fn(actx, globalv1.NewGlobalAdminClient(cc))
			attemptOver := actx.Err() != nil
			acancel()
			switch code := status.Code(err); {
			case err == nil:
				a.answered = ep
				return nil
			case ctx.Err() != nil:
				if busy == nil {
					busy = err
				}
				return status.Errorf(codes.DeadlineExceeded, "no answer from the global group within %s (--timeout): %s", a.timeout, status.Convert(busy).Message())
			case code == codes.Unimplemented:
				reachable = true
				notes = append(notes, ep+": not a global voter")
			case transportFailure(err):
				notes = append(notes, ep+": unreachable ("+shortTransport(status.Convert(err).Message())+")")
			case attemptOver && !rpcerr.FromServer(err):
				reachable = true
				notes = append(notes, fmt.Sprintf("%s: no answer within %s", ep, a.attempt))
			case code == codes.Unavailable:
				busy = err
			default:
				a.answered = ep
				return err
			}
		}
		if busy == nil {
			if !reachable {
				return status.Errorf(codes.Unavailable, "cannot reach the global group (%s): %s (is the federation running? set --endpoint to a global voter's endpoint)",
					a.source, strings.Join(notes, "; "))
			}
			return &noGlobalVoterError{source: a.source, notes: notes}
		}
		select {
		case <-ctx.Done():
			return status.Errorf(codes.DeadlineExceeded, "no answer from the global group within %s (--timeout): %s", a.timeout, status.Convert(busy).Message())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// globalLookupTimeout bounds the global group's status that `wds status`
// and `wds shards` add when their endpoint is a global voter.
const globalLookupTimeout = 3 * time.Second

// globalLookupGrace is how long the global status lookup waits for the
// endpoints still silent once another has answered that it is no global
// voter: in a lone cell every node says so at once, and a hung node should
// not hold `wds status` up for long.
const globalLookupGrace = 500 * time.Millisecond

// fetchGlobalStatus asks every endpoint at once for the global group's
// status and takes the first answer (a global voter's). A follower knows
// no regions and delegations: the leader is then asked for them, at the
// endpoint the follower names. It returns nil when no endpoint is a global
// voter (a lone cell) or none answered in time.
func fetchGlobalStatus(ctx context.Context, eps []string, timeout time.Duration) *globalView {
	timeout = min(timeout, globalLookupTimeout)
	res := firstGlobalStatus(ctx, eps, timeout)
	if res == nil {
		return nil
	}
	v := &globalView{self: res, leader: res}
	if res.GetState() == "Leader" || len(res.GetRegions()) > 0 {
		return v
	}
	v.leader = nil
	if ep := res.GetLeaderEndpoint(); ep != "" {
		if l := firstGlobalStatus(ctx, []string{ep}, timeout); l.GetState() == "Leader" {
			v.leader = l
		}
	}
	return v
}

// firstGlobalStatus asks eps at once for GlobalStatus and returns the
// first answer; nil if none answers within timeout, or within
// globalLookupGrace of the first refusal.
func firstGlobalStatus(ctx context.Context, eps []string, timeout time.Duration) *globalv1.GlobalStatusResponse {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	type answer struct {
		res *globalv1.GlobalStatusResponse
		err error
	}
	answers := make(chan answer, len(eps))
	for _, ep := range eps {
		go func() {
			cc, err := dial(ep)
			if err != nil {
				answers <- answer{err: err}
				return
			}
			defer cc.Close()
			res, err := globalv1.NewGlobalAdminClient(cc).GlobalStatus(ctx, &globalv1.GlobalStatusRequest{})
			answers <- answer{res: res, err: err}
		}()
	}
	var grace <-chan time.Time
	for range eps {
		select {
		case a := <-answers:
			if a.err == nil {
				return a.res
			}
			if grace == nil {
				grace = time.After(globalLookupGrace)
			}
		case <-grace:
			return nil
		case <-ctx.Done():
			return nil
		}
	}
	return nil
}

// globalView is the global group's status: as the voter asked sees it
// (self), and the leader's answer with regions and delegations (leader,
// self when the voter asked leads; nil when the leader did not answer).
type globalView struct {
	self, leader *globalv1.GlobalStatusResponse
}

// delegatedTo returns, for a shard of domain in key space region with range
// rng, the region whose cell holds the delegation covering it ("" for none).
func (v *globalView) delegatedTo(domain, region string, rng topology.Range) string {
	for _, d := range v.leader.GetDelegations() {
		if d.GetDomain() != domain || d.GetRegion() != region {
			continue
		}
		for i, pr := range d.GetRanges() {
			r, err := topology.RangeFromProto(fmt.Sprintf("delegations.ranges[%d]", i), pr)
			if err != nil {
				continue
			}
			if !rng.From.Less(r.From) && !r.To.Less(rng.To) {
				return d.GetHolder()
			}
		}
	}
	return ""
}
