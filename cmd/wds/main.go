package main

import (
	"fmt"
	"io"
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes the command line args and returns the exit code: 0 on
// success, 1 on any error, whose message goes to stderr (with the command's
// usage when the command line itself was wrong).
func run(args []string, stdout, stderr io.Writer) int {
	root := NewRootCommand()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.Execute()
	if err == nil {
		return 0
	}
	fmt.Fprintln(stderr, formatError(err))
	if u, ok := asUsageError(err); ok {
		fmt.Fprintln(stderr)
		fmt.Fprint(stderr, u.cmd.UsageString())
	}
	return 1
}
