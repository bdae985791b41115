package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/wdsio/wds/client"
	"github.com/wdsio/wds/internal/logging"
	"github.com/wdsio/wds/topology"
)

// EnvEndpoint names the environment variable that sets the default of
// --endpoint.
const EnvEndpoint = "WDS_ENDPOINT"

// Output formats of -o/--output.
const (
	outputTable = "table"
	outputJSON  = "json"
)

// globals holds the persistent flags every command shares.
type globals struct {
	// endpoint is the comma-separated list of cell endpoints (host:port).
	endpoint string
	// output is "table" or "json".
	output string
	// timeout bounds each admin call (and the first connection of
	// streaming commands); parsed from timeoutFlag before any command
	// runs.
	timeout     time.Duration
	timeoutFlag durationFlag
	// logLevel and logFormat configure the slog logger on stderr; an empty
	// level means the command's own default.
	logLevel  string
	logFormat string
}

// endpoints returns the --endpoint list, split at commas, blanks dropped.
// endpoints parses --endpoint: one or more host:port, comma-separated.
func (g *globals) endpoints() ([]string, error) {
	var out []string
	for _, e := range strings.Split(g.endpoint, ",") {
		if e = strings.TrimSpace(e); e == "" {
			continue
		}
		if err := checkEndpoint(e); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	if len(out) == 0 {
		return nil, errors.New("--endpoint: no endpoint given (host:port, comma-separated; or set WDS_ENDPOINT)")
	}
	return out, nil
}

// checkEndpoint rejects what gRPC would only fail on later with a cryptic
// resolver error: a URL, a missing or non-numeric port.
func checkEndpoint(e string) error {
	bad := func(why string) error {
		return fmt.Errorf("--endpoint: %q: %s; want host:port, e.g. %s", e, why, client.DefaultEndpoint)
	}
	if strings.Contains(e, "://") {
		return bad("no scheme")
	}
	_, port, err := net.SplitHostPort(e)
	if err != nil {
		return bad("not host:port")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return bad("the port must be a number from 1 to 65535")
	}
	return nil
}

func (g *globals) json() bool { return g.output == outputJSON }

// logger builds the logger on stderr from --log-level (defaultLevel when
// not given; "off" discards) and --log-format.
func (g *globals) logger(cmd *cobra.Command, defaultLevel string) (*slog.Logger, error) {
	lv := g.logLevel
	if lv == "" {
		lv = defaultLevel
	}
	if lv == "off" {
		return logging.Discard(), nil
	}
	level, err := logging.ParseLevel(lv)
	if err != nil {
		return nil, usageErrorf(cmd, "invalid value %q for --log-level: want trace, debug, info, warn, error or off", lv)
	}
	l, err := logging.New(cmd.ErrOrStderr(), level, g.logFormat)
	if err != nil {
		return nil, usageErrorf(cmd, "invalid value %q for --log-format: want text or json", g.logFormat)
	}
	return l, nil
}

const rootLong = `wds is the command-line tool of WDS, the Work Distribution Service.

WDS hands the instances of a sharded, stateful service exclusive, leased
ownership of shards of a work domain, and pushes every instance the routing
table: who owns which shard. A domain's 128-bit UUID key space is cut into
shards; each shard is granted to one consumer (one instance of your service)
at a time with a fencing token that only ever grows. A cell, a Raft group of
1 or 3 wds server nodes, keeps the leases and balances the shards: every
consumer of a domain holds about the same number, and when one joins, drains
or dies, the fewest shards move.

Run a cell on this machine with "wds dev", then create a domain, join as a
consumer and look at the shard map from another terminal. Every client
command talks to --endpoint (or $WDS_ENDPOINT), by default the address
"wds dev" serves on.`

const rootExample = `  # a 3-node cell on loopback, with consumers that show shards moving
  wds dev --demo

  # in another terminal
  wds domain create orders --kind global --shards 16 --ttl 5s
  wds consume --domain orders --id worker-1
  wds shards orders
  wds watch orders -o json
  wds status --endpoint 127.0.0.1:7101`

// NewRootCommand returns the wds command with every subcommand.
func NewRootCommand() *cobra.Command {
	g := &globals{timeoutFlag: durationFlag{s: "10s"}}
	var showVersion bool
	root := &cobra.Command{
		Use:           "wds",
		Short:         "WDS: leased shard ownership and routing for sharded services",
		Long:          rootLong,
		Example:       rootExample,
		SilenceUsage:  true,
		SilenceErrors: true,
		// No Args: cobra's own check says "unknown command" with
		// suggestions for `wds <typo>`.
		RunE: func(cmd *cobra.Command, args []string) error {
			if showVersion {
				return printVersion(cmd.OutOrStdout(), g.json())
			}
			return cmd.Help()
		},
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			switch g.output {
			case outputTable, outputJSON:
			default:
				return usageErrorf(cmd, "invalid value %q for -o/--output: want table or json", g.output)
			}
			timeout, err := g.timeoutFlag.parse("--timeout")
			if err != nil {
				return &usageError{cmd: cmd, err: err}
			}
			g.timeout = timeout
			if g.timeout <= 0 {
				return usageErrorf(cmd, "invalid value %s for --timeout: must be positive", g.timeout)
			}
			if g.logLevel != "" && g.logLevel != "off" {
				if _, err := logging.ParseLevel(g.logLevel); err != nil {
					return usageErrorf(cmd, "invalid value %q for --log-level: want trace, debug, info, warn, error or off", g.logLevel)
				}
			}
			if g.logFormat != logging.FormatText && g.logFormat != logging.FormatJSON {
				return usageErrorf(cmd, "invalid value %q for --log-format: want text or json", g.logFormat)
			}
			return nil
		},
	}
	defEndpoint := client.DefaultEndpoint
	if v := os.Getenv(EnvEndpoint); v != "" {
		defEndpoint = v
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.endpoint, "endpoint", defEndpoint,
		"cell endpoints, host:port, comma-separated (any node; env "+EnvEndpoint+")")
	pf.StringVarP(&g.output, "output", "o", outputTable, "output format: table or json")
	pf.Var(&g.timeoutFlag, "timeout", "how long to wait for an answer from the cell, with a unit (10s, 1m)")
	pf.StringVar(&g.logLevel, "log-level", "", "log level on stderr: trace, debug, info, warn, error or off (default: info for server, error for dev, off for client commands)")
	pf.StringVar(&g.logFormat, "log-format", logging.FormatText, "log format on stderr: text or json")

	root.Flags().BoolVar(&showVersion, "version", false, "print the version of wds (same as wds version)")

	root.SetFlagErrorFunc(flagError)
	root.AddCommand(
		NewServerCommand(g),
		NewDevCommand(g),
		NewDomainCommand(g),
		NewShardsCommand(g),
		NewWatchCommand(g),
		NewConsumeCommand(g),
		NewDrainCommand(g),
		NewStatusCommand(g),
		NewConsumersCommand(g),
		NewOwnerCommand(g),
		NewTopologyCommand(g),
		NewFailoverCommand(g),
		NewVersionCommand(g),
	)
	nameCellFields(root)
	return root
}

// exactArgs is cobra.ExactArgs whose error shows the usage and names what
// is missing.
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		switch {
		case len(args) < n:
			return usageErrorf(cmd, "missing argument: %s", what)
		case len(args) > n:
			return usageErrorf(cmd, "too many arguments: want %d (%s), got %d: %s", n, what, len(args), strings.Join(args, " "))
		}
		return nil
	}
}

// noArgs is cobra.NoArgs with a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageErrorf(cmd, "unexpected argument %q: %q takes none", args[0], cmd.CommandPath())
	}
	return nil
}

// groupRunE runs a command that only groups subcommands: alone it prints
// its help; with an argument that is no subcommand it is a usage error.
func groupRunE(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageErrorf(cmd, "unknown command %q for %q%s", args[0], cmd.CommandPath(), didYouMean(cmd.SuggestionsFor(args[0])))
	}
	return cmd.Help()
}

// durationFlag is a duration flag kept as typed and parsed once the
// command runs, so that a bare number ("--ttl 5") gets the message a
// topology file's ttl gets, naming the flag, instead of pflag's
// `time: missing unit in duration "5"`.
type durationFlag struct{ s string }

func (f *durationFlag) String() string     { return f.s }
func (f *durationFlag) Set(s string) error { f.s = s; return nil }
func (f *durationFlag) Type() string       { return "duration" }

// parse parses the flag's value with the wording of topology files.
func (f *durationFlag) parse(flag string) (time.Duration, error) {
	return parseDuration(flag, f.s)
}

// parseDuration parses a duration as topology files do (time.ParseDuration:
// a unit is required), failing with their message under the name field.
func parseDuration(field, s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, topology.Invalid(field, strconv.Quote(s), "must be a duration with a unit, such as 10s or 1m30s")
	}
	return d, nil
}
