package cli

import (
	"bytes"
	"flag"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// testFlags is a flag set like train's: a repeatable string flag, a string,
// an int and a boolean.
type testFlags struct {
	set     listFlag
	out     string
	n       int
	verbose bool
}

func (f *testFlags) declare(fs *flag.FlagSet) {
	fs.Var(&f.set, "set", "override (repeatable)")
	fs.StringVar(&f.out, "out", "", "run directory")
	fs.IntVar(&f.n, "n", 0, "a number")
	fs.BoolVar(&f.verbose, "v", false, "verbose")
}

func TestParseInterleaved(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		pos  []string
		want testFlags
	}{
		{name: "none", args: nil, pos: []string{}},
		{name: "flags first, as the flag package reads them",
			args: []string{"-set", "a=1", "-out", "d", "cfg.toml"},
			pos:  []string{"cfg.toml"}, want: testFlags{set: listFlag{"a=1"}, out: "d"}},
		{name: "flags after the positional argument",
			args: []string{"cfg.toml", "-set", "trainer.epochs=1"},
			pos:  []string{"cfg.toml"}, want: testFlags{set: listFlag{"trainer.epochs=1"}}},
		{name: "interleaved, order of positionals and repeated flags kept",
			args: []string{"a", "-set", "x=1", "b", "-n", "3", "c", "-set=y=2"},
			pos:  []string{"a", "b", "c"}, want: testFlags{set: listFlag{"x=1", "y=2"}, n: 3}},
		{name: "-flag=value, --flag=value and --flag value",
			args: []string{"-out=d1", "p", "--n=4", "--set", "z=3"},
			pos:  []string{"p"}, want: testFlags{set: listFlag{"z=3"}, out: "d1", n: 4}},
		{name: "a later value wins",
			args: []string{"-out", "d1", "p", "-out", "d2"},
			pos:  []string{"p"}, want: testFlags{out: "d2"}},
		{name: "boolean flag does not consume the next argument",
			args: []string{"-v", "cfg.toml"},
			pos:  []string{"cfg.toml"}, want: testFlags{verbose: true}},
		{name: "boolean flag after a positional",
			args: []string{"cfg.toml", "--v", "other"},
			pos:  []string{"cfg.toml", "other"}, want: testFlags{verbose: true}},
		{name: "boolean flag takes a value only with =",
			args: []string{"-v=true", "-v=false", "false"},
			pos:  []string{"false"}, want: testFlags{}},
		{name: "-- ends the flags",
			args: []string{"a", "-n", "1", "--", "-set", "x=1", "--", "-v"},
			pos:  []string{"a", "-set", "x=1", "--", "-v"}, want: testFlags{n: 1}},
		{name: "-- first",
			args: []string{"--", "-out"},
			pos:  []string{"-out"}},
		{name: "a lone - is positional",
			args: []string{"-", "-v", "-"},
			pos:  []string{"-", "-"}, want: testFlags{verbose: true}},
		{name: "a value that looks like a flag, or --, is the value",
			args: []string{"-out", "--", "-set", "-v", "p"},
			pos:  []string{"p"}, want: testFlags{set: listFlag{"-v"}, out: "--"}},
		{name: "an empty value",
			args: []string{"-out", "", "p", "-out="},
			pos:  []string{"p"}, want: testFlags{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got testFlags
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			got.declare(fs)
			pos, err := ParseInterleaved(fs, tc.args)
			require.NoError(t, err)
			assert.Equal(t, tc.pos, pos)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestParseInterleavedErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		msg  string // in the error and in what fs printed
	}{
		{"unknown flag before the positional", []string{"-bogus", "cfg.toml"}, "flag provided but not defined: -bogus"},
		{"unknown flag after the positional", []string{"cfg.toml", "-set", "a=1", "-bogus"}, "flag provided but not defined: -bogus"},
		{"unknown flag with a value", []string{"cfg.toml", "--bogus=3"}, "flag provided but not defined: -bogus"},
		{"missing value at the end", []string{"cfg.toml", "-out"}, "flag needs an argument: -out"},
		{"bad value", []string{"cfg.toml", "-n", "three"}, `invalid value "three" for flag -n`},
		{"bad boolean value", []string{"-v=maybe", "cfg.toml"}, `invalid boolean value "maybe" for -v`},
		{"bad syntax", []string{"cfg.toml", "---n"}, "bad flag syntax: ---n"},
		{"bad syntax with =", []string{"cfg.toml", "-=x"}, "bad flag syntax: -=x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var f testFlags
			var buf bytes.Buffer
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			fs.SetOutput(&buf)
			f.declare(fs)
			_, err := ParseInterleaved(fs, tc.args)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.msg)
			assert.Contains(t, buf.String(), tc.msg)
		})
	}

	// -h and -help anywhere ask for help, unless a flag of that name exists.
	for _, args := range [][]string{{"-h"}, {"cfg.toml", "-h"}, {"cfg.toml", "--help"}} {
		var f testFlags
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		f.declare(fs)
		_, err := ParseInterleaved(fs, args)
		assert.ErrorIs(t, err, flag.ErrHelp, args)
	}
}

// testTree is repro's shape: a group with a leaf that has flags, and a leaf
// without.
func testTree(f *testFlags, got *[]string) *Command {
	run := func(env *Env, args []string) error {
		*got = args
		if len(args) != 1 {
			return Usagef("train takes one CONFIG")
		}
		return nil
	}
	return &Command{Name: "repro", Sub: []*Command{
		{Name: "train", Usage: "[-set k=v]... CONFIG", Flags: f.declare, Run: run},
		{Name: "weights", Sub: []*Command{{Name: "inspect", Usage: "FILE", Run: run}}},
	}}
}

func runMain(args ...string) (f testFlags, pos []string, code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = Main(testTree(&f, &pos), &Env{Stdout: &out, Stderr: &errb}, args)
	return f, pos, code, out.String(), errb.String()
}

func TestMainAcceptsFlagsAnywhere(t *testing.T) {
	f, pos, code, _, stderr := runMain("train", "cfg.toml", "-set", "trainer.epochs=1", "-v", "-out=run")
	require.Equal(t, 0, code, stderr)
	assert.Equal(t, []string{"cfg.toml"}, pos)
	assert.Equal(t, testFlags{set: listFlag{"trainer.epochs=1"}, out: "run", verbose: true}, f)

	f, pos, code, _, stderr = runMain("train", "-set", "a=1", "cfg.toml", "-set", "b=2")
	require.Equal(t, 0, code, stderr)
	assert.Equal(t, []string{"cfg.toml"}, pos)
	assert.Equal(t, listFlag{"a=1", "b=2"}, f.set)

	// A subcommand's arguments after -- reach Run as they are.
	_, pos, code, _, stderr = runMain("weights", "inspect", "--", "-odd-name.pt")
	require.Equal(t, 0, code, stderr)
	assert.Equal(t, []string{"-odd-name.pt"}, pos)
}

func TestMainFlagErrors(t *testing.T) {
	// An unknown flag after the config is misuse naming the flag, with the
	// command's usage.
	_, pos, code, _, stderr := runMain("train", "cfg.toml", "-bogus", "1")
	assert.Equal(t, 2, code)
	assert.Nil(t, pos, "Run is not called")
	assert.Contains(t, stderr, "flag provided but not defined: -bogus")
	assert.Contains(t, stderr, "usage: repro train [-set k=v]... CONFIG")

	// A command without flags refuses one after its argument too.
	_, _, code, _, stderr = runMain("weights", "inspect", "f.pt", "-x")
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "flag provided but not defined: -x")

	// A boolean flag left an extra positional argument: Run's usage error.
	_, pos, code, _, stderr = runMain("train", "-v", "true", "cfg.toml")
	assert.Equal(t, 2, code)
	assert.Equal(t, []string{"true", "cfg.toml"}, pos)
	assert.Contains(t, stderr, "repro train: train takes one CONFIG")

	// -h after the config prints the usage and succeeds.
	_, pos, code, _, stderr = runMain("train", "cfg.toml", "-h")
	assert.Equal(t, 0, code)
	assert.Nil(t, pos)
	assert.Contains(t, stderr, "usage: repro train")

	// A group still names an unknown subcommand, wherever flags are.
	_, _, code, _, stderr = runMain("weights", "nope")
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, `repro weights: unknown command "nope"`)
}
