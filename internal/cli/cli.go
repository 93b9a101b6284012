// Package cli is repro's command tree: `repro <command> [<subcommand>] [flags] [args]`.
// Each command parses its own flags with the standard flag package, so
// `-h`/`--help` works everywhere and flags look like every other Go tool's,
// except that flags may come anywhere among the positional arguments
// (`repro train CONFIG -set trainer.epochs=1`), as users type them; `--`
// ends the flags.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
)

// Command is one node of the tree: a group with subcommands, or a leaf with Run.
type Command struct {
	Name  string
	Short string // one line for the parent's listing
	Usage string // arguments after the command path, e.g. "[flags] CONFIG"
	Long  string // paragraphs for `repro help <command>`
	// Flags declares the command's flags on fs; nil for none.
	Flags func(fs *flag.FlagSet)
	// Run does the work with the positional arguments left after flags.
	Run func(env *Env, args []string) error
	Sub []*Command
}

// Env is what a running command may use; tests give it buffers.
type Env struct {
	Stdout, Stderr io.Writer
}

// UsageError marks a mistake in how a command was called: exit status 2 and
// the command's usage, as Go tools do.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

// Usagef returns a UsageError.
func Usagef(format string, a ...any) error { return &UsageError{Msg: fmt.Sprintf(format, a...)} }

// Main runs the tree rooted at root with args (without the program name)
// and returns the process exit status: 0, 1 for a failure, 2 for misuse.
func Main(root *Command, env *Env, args []string) int {
	cmd, path, rest := root, []string{root.Name}, args
	for len(rest) > 0 && len(cmd.Sub) > 0 {
		if rest[0] == "help" && cmd == root {
			return help(root, env, rest[1:])
		}
		if strings.HasPrefix(rest[0], "-") {
			break
		}
		next := cmd.find(rest[0])
		if next == nil {
			fmt.Fprintf(env.Stderr, "%s: unknown command %q\n", strings.Join(path, " "), rest[0])
			fmt.Fprintf(env.Stderr, "Run '%s help' for the list.\n", strings.Join(path, " "))
			return 2
		}
		cmd, path, rest = next, append(path, next.Name), rest[1:]
	}
	full := strings.Join(path, " ")
	fs := flag.NewFlagSet(full, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.Usage = func() { cmd.printUsage(env.Stderr, full) }
	if cmd.Flags != nil {
		cmd.Flags(fs)
	}
	pos, err := ParseInterleaved(fs, rest)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if cmd.Run == nil {
		if len(pos) > 0 {
			fmt.Fprintf(env.Stderr, "%s: unknown command %q\n", full, pos[0])
		}
		cmd.printUsage(env.Stderr, full)
		return 2
	}
	if err := cmd.Run(env, pos); err != nil {
		var ue *UsageError
		if errors.As(err, &ue) {
			fmt.Fprintf(env.Stderr, "%s: %s\n", full, ue.Msg)
			fmt.Fprintf(env.Stderr, "usage: %s %s\n", full, cmd.Usage)
			return 2
		}
		fmt.Fprintf(env.Stderr, "%s: %v\n", full, err)
		return 1
	}
	return 0
}

// ParseInterleaved parses args with fs, accepting flags before, between and
// after the positional arguments, and returns the positional arguments in
// order. Each flag is read as the flag package reads it: -name or --name,
// -name=value or -name value; a boolean flag takes a value only with "="
// (-v=false), so it never consumes the next argument. "--" ends the flags:
// everything after it is positional, and "-" alone is positional. Errors
// (an unknown flag, a missing or bad value, -h) are fs.Parse's: reported
// to fs's output with its usage, and ErrHelp for -h/-help.
func ParseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	pos := []string{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			pos = append(pos, a)
			continue
		}
		chunk := args[i : i+1]
		if takesNext(fs, a) && i+1 < len(args) {
			chunk = args[i : i+2]
			i++
		}
		// fs.Parse reads exactly this flag (and its value): it sets the
		// flag or reports the error, naming the flag, as it always does.
		if err := fs.Parse(chunk); err != nil {
			return nil, err
		}
		if fs.NArg() != 0 { // cannot happen: chunk is one flag and its value
			return nil, fmt.Errorf("cli: flag %q left %q unparsed", a, fs.Args())
		}
	}
	return pos, nil
}

// takesNext reports whether the flag argument a (starting with "-") is a
// defined, non-boolean flag without an "=value", so that the flag package
// reads the next argument as its value.
func takesNext(fs *flag.FlagSet, a string) bool {
	name := strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
	if name == "" || name[0] == '-' || name[0] == '=' || strings.Contains(name, "=") {
		return false // bad syntax (fs.Parse says so) or the value is attached
	}
	f := fs.Lookup(name)
	if f == nil {
		return false // unknown: fs.Parse names it (or answers -h with ErrHelp)
	}
	if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
		return false
	}
	return true
}

func (c *Command) find(name string) *Command {
	for _, s := range c.Sub {
		if s.Name == name {
			return s
		}
	}
	return nil
}

func (c *Command) printUsage(w io.Writer, full string) {
	if c.Run != nil {
		fmt.Fprintf(w, "usage: %s %s\n", full, c.Usage)
	} else {
		fmt.Fprintf(w, "usage: %s <command> [flags] [arguments]\n", full)
	}
	if c.Long != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(c.Long))
	}
	if len(c.Sub) > 0 {
		fmt.Fprintf(w, "\ncommands:\n")
		subs := append([]*Command(nil), c.Sub...)
		sort.Slice(subs, func(i, j int) bool { return subs[i].Name < subs[j].Name })
		for _, s := range subs {
			fmt.Fprintf(w, "  %-10s %s\n", s.Name, s.Short)
		}
		fmt.Fprintf(w, "\nRun '%s <command> -h' for a command's flags.\n", full)
	}
	if c.Flags != nil {
		fs := flag.NewFlagSet(full, flag.ContinueOnError)
		c.Flags(fs)
		fmt.Fprintf(w, "\nflags:\n")
		fs.SetOutput(w)
		fs.PrintDefaults()
	}
}

func help(root *Command, env *Env, args []string) int {
	cmd, path := root, []string{root.Name}
	for _, a := range args {
		next := cmd.find(a)
		if next == nil {
			fmt.Fprintf(env.Stderr, "%s help: unknown command %q\n", root.Name, strings.Join(args, " "))
			return 2
		}
		cmd, path = next, append(path, a)
	}
	cmd.printUsage(env.Stdout, strings.Join(path, " "))
	return 0
}
