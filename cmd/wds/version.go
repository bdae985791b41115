package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// versionJSON is `wds version -o json`.
type versionJSON struct {
	// Version is the module version of wds ("(devel)" for a build
	// without one).
	Version string `json:"version"`
	// Revision is the VCS commit the binary was built from, "" if unknown;
	// Time is that commit's time (RFC 3339) and Modified whether the
	// working tree had uncommitted changes.
	Revision string `json:"revision"`
	Time     string `json:"time,omitempty"`
	Modified bool   `json:"modified"`
	// Go is the Go version that built it, Platform its GOOS/GOARCH.
	Go       string `json:"go"`
	Platform string `json:"platform"`
}

// buildVersion reads what the Go toolchain stamped into the binary.
func buildVersion() versionJSON {
	v := versionJSON{Version: "unknown", Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	if info.Main.Version != "" {
		v.Version = info.Main.Version
	}
	if info.GoVersion != "" {
		v.Go = info.GoVersion
	}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Revision = s.Value
		case "vcs.time":
			v.Time = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	return v
}

func printVersion(w io.Writer, asJSON bool) error {
	v := buildVersion()
	if asJSON {
		return writeJSON(w, v)
	}
	rev := v.Revision
	switch {
	case rev == "":
		rev = "unknown (built without VCS information)"
	case v.Modified:
		rev += " (modified)"
	}
	tw := newTable(w)
	fmt.Fprintf(tw, "wds:\t%s\n", v.Version)
	fmt.Fprintf(tw, "Revision:\t%s\n", rev)
	if v.Time != "" {
		fmt.Fprintf(tw, "Commit time:\t%s\n", v.Time)
	}
	fmt.Fprintf(tw, "Go:\t%s %s\n", v.Go, v.Platform)
	return tw.Flush()
}

// NewVersionCommand returns `wds version`.
func NewVersionCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, VCS revision and Go version of wds",
		Long: `Print what this wds binary was built from: the module version, the VCS
revision (and whether the working tree had uncommitted changes), the commit
time and the Go version. "wds --version" prints the same.

With -o json it prints an object with version, revision, time, modified, go
and platform.`,
		Example: `  wds version
  wds --version
  wds version -o json | jq -r .revision`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return printVersion(cmd.OutOrStdout(), g.json())
		},
	}
}
