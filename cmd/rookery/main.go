// Command rookery is Rookery's daemon and inspection tool. Each sub-command
// lives in its own file and registers itself with one line:
//
//	func init() { register(command{"name", "what it does", runName}) }
//
// Run `rookery help` for the list.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"sort"
	"syscall"
	"text/tabwriter"
)

// command is one sub-command: rookery NAME ARGS...
type command struct {
	name    string
	summary string // one line for `rookery help`
	// run does the work. Flag and argument mistakes are returned as a
	// *usageError; anything else is a plain error.
	run func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

var commands = map[string]command{}

// register adds a sub-command; each command's file calls it from init.
func register(c command) {
	if _, dup := commands[c.name]; dup {
		panic("rookery: command " + c.name + " registered twice")
	}
	commands[c.name] = c
}

func init() {
	register(command{"help", "list the commands, or show one command's flags: rookery help [COMMAND]", runHelp})
	register(command{"version", "print the version of this binary and of Go", runVersion})
}

// usageError is a mistake in how a command was called.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return &usageError{fmt.Sprintf(format, a...)} }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run dispatches to a sub-command and returns the exit status: 0 on
// success, 2 for a usage mistake, 1 for any other failure.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		listCommands(stderr)
		return 2
	}
	name := args[0]
	if name == "-h" || name == "--help" || name == "-help" {
		name = "help"
	}
	c, ok := commands[name]
	if !ok {
		fmt.Fprintf(stderr, "rookery: unknown command %q\n\n", name)
		listCommands(stderr)
		return 2
	}
	err := c.run(ctx, args[1:], stdout, stderr)
	var ue *usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "rookery %s: %v\nrun 'rookery help %s' for usage\n", name, err, name)
		return 2
	default:
		fmt.Fprintf(stderr, "rookery %s: %v\n", name, err)
		return 1
	}
}

func listCommands(w io.Writer) {
	fmt.Fprintln(w, "usage: rookery COMMAND [ARGS...]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "commands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, n := range names {
		fmt.Fprintf(tw, "  %s\t%s\n", n, commands[n].summary)
	}
	tw.Flush()
}

func runHelp(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	switch len(args) {
	case 0:
		listCommands(stdout)
		return nil
	case 1:
		c, ok := commands[args[0]]
		if !ok {
			return usagef("unknown command %q", args[0])
		}
		if args[0] == "help" {
			listCommands(stdout)
			return nil
		}
		// Every command prints its usage on -h.
		return c.run(ctx, []string{"-h"}, stdout, stdout)
	}
	return usagef("help takes at most one command name")
}

func runVersion(_ context.Context, args []string, stdout, _ io.Writer) error {
	if len(args) > 0 {
		return usagef("version takes no arguments")
	}
	version := "(unknown)"
	if bi, ok := debug.ReadBuildInfo(); ok {
		version = bi.Main.Version
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				version += " " + s.Value
			}
		}
	}
	fmt.Fprintf(stdout, "rookery %s (%s, %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}

// parseDaemonFlags parses the flags of a command that takes no arguments
// (provider, seed). done is true when the command has nothing more to do:
// help was shown, or --version printed the version.
func parseDaemonFlags(fs *flag.FlagSet, args []string, version *bool, stdout io.Writer) (done bool, err error) {
	if err := parseFlags(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return true, nil
		}
		return true, err
	}
	if fs.NArg() > 0 {
		return true, usagef("unexpected arguments %q", fs.Args())
	}
	if *version {
		printVersion(stdout)
		return true, nil
	}
	return false, nil
}

// parseFlags parses args into fs. A mistake gives a *usageError, which
// run prints in one line with a pointer to `rookery help COMMAND` rather
// than the whole usage; -h prints the usage and gives flag.ErrHelp.
func parseFlags(fs *flag.FlagSet, args []string) error {
	usage, out := fs.Usage, fs.Output()
	fs.Usage = func() {}
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	fs.Usage = usage
	fs.SetOutput(out)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs.Usage()
		return err
	case err != nil:
		return usagef("%v", err)
	}
	return nil
}
