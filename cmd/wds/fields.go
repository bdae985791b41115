package main

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/status"

	"github.com/wdsio/wds/topology"
)

// The cell names the field at fault by its path in the wire protocol
// ("hello.domains[0]") or in cell.Config ("max_moves_in_flight"). An
// operator typed flags and arguments, so the CLI renames those paths, per
// command, into what was typed ("--domain \"nope\"", "--max-moves").

// cliName is what the user typed for a field.
type cliName struct {
	// label replaces the field path in the message: `--domain "nope"`,
	// "--max-moves", `the 2nd --peer "n2=a:1=a:2" (ID)`, "DOMAIN".
	label string
	// arg marks a positional argument (label is its placeholder).
	arg bool
	// domain is the domain the field holds, when it holds one: the
	// cell's `domain "x" does not exist` then needs no second name.
	domain string
}

// fieldNamer returns what the user typed for a field path, and false for
// a path it does not know (the message is left as it is).
type fieldNamer func(field string) (cliName, bool)

// rename rewrites "<field>: <rest>" with the name the user knows.
func (n cliName) rename(rest string) string {
	if n.domain != "" {
		if r, ok := strings.CutPrefix(rest, fmt.Sprintf("domain %q ", n.domain)); ok {
			if n.arg {
				// `wds shards nope`: domain "nope" does not exist
				return rest
			}
			// --domain "nope": domain does not exist
			return n.label + ": domain " + r
		}
	}
	return n.label + ": " + rest
}

// fieldPathRE matches the field path that leads a message.
var fieldPathRE = regexp.MustCompile(`^[a-z][a-z0-9_]*(\[[0-9]+\])?(\.[a-z][a-z0-9_]*(\[[0-9]+\])?)*$`)

// renameMessage rewrites the field path that leads msg ("<field>: ...").
func renameMessage(msg string, name fieldNamer) (string, bool) {
	field, rest, ok := strings.Cut(msg, ": ")
	if !ok || !fieldPathRE.MatchString(field) {
		return msg, false
	}
	n, ok := name(field)
	if !ok {
		return msg, false
	}
	return n.rename(rest), true
}

// renamedError is a client library error whose message names the flag;
// it still matches the library's sentinel (errors.Is).
type renamedError struct {
	msg string
	err error
}

func (e *renamedError) Error() string { return e.msg }
func (e *renamedError) Unwrap() error { return e.err }

// nameFields rewrites the field path err names into the flag or argument
// the user typed, for the three shapes of errors with a field: a
// *topology.FieldError (cell.Config.Validate, topology.Domain.Validate), a
// gRPC status from the cell (admin calls) and a client library error
// ("wds: not found: <field>: ..."). Any other error (a usage error, a
// topology file's error, which names the file's own fields), or one about
// a field name does not know, is returned as it is.
func nameFields(err error, name fieldNamer) error {
	if err == nil || name == nil {
		return err
	}
	if fe, ok := err.(*topology.FieldError); ok {
		n, ok := name(fe.Field)
		if !ok {
			return err
		}
		c := *fe
		c.Field = n.label
		return &c
	}
	if _, usage := asUsageError(err); usage {
		return err
	}
	if se, ok := err.(interface{ GRPCStatus() *status.Status }); ok {
		st := se.GRPCStatus()
		if msg, ok := renameMessage(st.Message(), name); ok {
			// The same status with the new message: its details (the
			// ErrorInfo reason, a BadRequest) stay.
			p := st.Proto()
			p.Message = msg
			return status.FromProto(p).Err()
		}
		return err
	}
	msg := err.Error()
	for _, s := range clientSentinels {
		rest, ok := strings.CutPrefix(msg, s.err.Error()+": ")
		if !ok || !errors.Is(err, s.err) {
			continue
		}
		if renamed, ok := renameMessage(rest, name); ok {
			return &renamedError{msg: s.err.Error() + ": " + renamed, err: err}
		}
		return err
	}
	return err
}

// cellFieldNames gives, per command path, the namer of the fields the
// cell's errors name; nameCellFields applies it to the command's error.
var cellFieldNames = map[string]func(cmd *cobra.Command, args []string) fieldNamer{
	"wds shards":          argDomainNamer("domain", "DOMAIN"),
	"wds owner":           argDomainNamer("domain", "DOMAIN"),
	"wds domain describe": argDomainNamer("name", "NAME"),
	"wds domain delete":   argDomainNamer("name", "NAME"),
	"wds domain create":   domainCreateNamer,
	"wds consume":         consumeNamer,
	"wds server":          serverNamer,
}

// nameCellFields wraps the RunE of every command of root that has a table
// in cellFieldNames, so its errors name flags and arguments.
func nameCellFields(root *cobra.Command) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if mk, ok := cellFieldNames[c.CommandPath()]; ok && c.RunE != nil {
			runE := c.RunE
			c.RunE = func(cmd *cobra.Command, args []string) error {
				return nameFields(runE(cmd, args), mk(cmd, args))
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

// argDomainNamer names the field of a request that holds the command's
// domain argument.
func argDomainNamer(field, placeholder string) func(*cobra.Command, []string) fieldNamer {
	return func(_ *cobra.Command, args []string) fieldNamer {
		return func(f string) (cliName, bool) {
			if f != field || len(args) == 0 {
				return cliName{}, false
			}
			return cliName{label: placeholder, arg: true, domain: args[0]}, true
		}
	}
}

// domainCreateNamer names the fields of the domain `wds domain create`
// checks (topology.Domain) and sends (the cell's "domain.shards").
func domainCreateNamer(cmd *cobra.Command, args []string) fieldNamer {
	regions, _ := cmd.Flags().GetStringSlice("regions")
	return func(f string) (cliName, bool) {
		f = strings.TrimPrefix(f, "domain.")
		switch f {
		case "name":
			return cliName{label: "NAME", arg: true}, true
		case "kind":
			return cliName{label: "--kind"}, true
		case "shards":
			return cliName{label: "--shards"}, true
		case "ttl", "ttl_millis":
			return cliName{label: "--ttl"}, true
		case "regions":
			return cliName{label: "--regions"}, true
		case "failover":
			return cliName{label: "--failover"}, true
		}
		if i, ok := indexOf(f, "regions"); ok {
			if i < len(regions) {
				return cliName{label: fmt.Sprintf("--regions %q", strings.TrimSpace(regions[i]))}, true
			}
			return cliName{label: "--regions"}, true
		}
		return cliName{}, false
	}
}

// consumeNamer names the fields of the Hello `wds consume` sends.
func consumeNamer(cmd *cobra.Command, _ []string) fieldNamer {
	domains, _ := cmd.Flags().GetStringSlice("domain")
	return func(f string) (cliName, bool) {
		// The cell names the fields of its Hello; the client library,
		// checking first, those of its Config.
		f = strings.TrimPrefix(f, "hello.")
		switch f {
		case "consumer_id", "id":
			return cliName{label: "--id"}, true
		case "region":
			return cliName{label: "--region"}, true
		case "endpoint":
			return cliName{label: "--endpoint-advertise"}, true
		case "domains":
			return cliName{label: "--domain"}, true
		}
		if i, ok := indexOf(f, "domains"); ok && i < len(domains) {
			return cliName{label: fmt.Sprintf("--domain %q", domains[i]), domain: domains[i]}, true
		}
		return cliName{}, false
	}
}

// serverNamer names the fields of cell.Config, as `wds server` fills it
// from flags. With --topology, the region and the voters come from the
// file, which names its own fields: only the flags' fields are renamed.
func serverNamer(cmd *cobra.Command, _ []string) fieldNamer {
	flags := cmd.Flags()
	peers, _ := flags.GetStringArray("peer")
	withTopology := flags.Changed("topology")
	return func(f string) (cliName, bool) {
		switch f {
		case "node_id":
			return cliName{label: "--node"}, true
		case "data_dir":
			return cliName{label: "--data-dir"}, true
		case "drift":
			return cliName{label: "--drift"}, true
		case "max_moves_in_flight":
			return cliName{label: "--max-moves"}, true
		}
		if withTopology {
			return cliName{}, false
		}
		switch f {
		case "region":
			return cliName{label: "--region"}, true
		case "peers":
			return cliName{label: "--peer"}, true
		}
		head, part, ok := strings.Cut(f, ".")
		if !ok {
			return cliName{}, false
		}
		i, ok := indexOf(head, "peers")
		if !ok {
			return cliName{}, false
		}
		if len(peers) == 0 {
			// No --peer: the node is its own single voter, from
			// --node, --raft and --grpc.
			flag := map[string]string{"id": "--node", "raft": "--raft", "grpc": "--grpc"}[part]
			return cliName{label: flag}, flag != ""
		}
		what := map[string]string{"id": "ID", "raft": "RAFTADDR", "grpc": "GRPCADDR"}[part]
		if i >= len(peers) || what == "" {
			return cliName{}, false
		}
		return cliName{label: fmt.Sprintf("the %s --peer %q (%s)", ordinal(i+1), peers[i], what)}, true
	}
}

// indexOf parses "<prefix>[i]".
func indexOf(field, prefix string) (int, bool) {
	rest, ok := strings.CutPrefix(field, prefix+"[")
	if !ok {
		return 0, false
	}
	digits, ok := strings.CutSuffix(rest, "]")
	if !ok {
		return 0, false
	}
	i, err := strconv.Atoi(digits)
	return i, err == nil && i >= 0
}

// ordinal spells 1 as "1st", 2 as "2nd", 11 as "11th", 23 as "23rd".
func ordinal(n int) string {
	suffix := "th"
	if n%100 < 11 || n%100 > 13 {
		switch n % 10 {
		case 1:
			suffix = "st"
		case 2:
			suffix = "nd"
		case 3:
			suffix = "rd"
		}
	}
	return strconv.Itoa(n) + suffix
}
