package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/BurntSushi/toml"

	"github.com/reprolab/repro/exp"
	"github.com/reprolab/repro/internal/cli"
)

// resolveConfig is the config `repro train` would save for this config and
// these overrides: the same loading, the same encoder as config.Save.
func resolveConfig(path string, sets []string) ([]byte, error) {
	_, cfg, err := loadTaskConfig(path, sets)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := toml.NewEncoder(&b).Encode(cfg); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// loadExperiment loads an experiment file and resolves every run's config.
func loadExperiment(path string) (*exp.Experiment, map[*exp.Run][]byte, error) {
	e, err := exp.Load(path)
	if err != nil {
		return nil, nil, err
	}
	resolved, err := e.Resolve(resolveConfig)
	return e, resolved, err
}

func expCommand() *cli.Command {
	return &cli.Command{
		Name:  "exp",
		Short: "run a paper's whole experiment grid from one file, and report it",
		Long: `exp runs the experiment an experiment file describes (experiments/README.md):
stages of training runs over conditions, axes and seeds, in dependency order, in
parallel and resumably; status shows where it stands; report writes the tables
(mean ± std over seeds), plots and a JSON summary.`,
		Sub: []*cli.Command{expRun(), expStatus(), expReport()},
	}
}

func expRun() *cli.Command {
	var jobs, threads int
	var only stringsFlag
	return &cli.Command{
		Name:  "run",
		Short: "run every run not done yet",
		Usage: "[-jobs N] [-threads N] [-only PATTERN]... FILE",
		Long: `run starts each run as a child "repro train" as soon as the runs it depends
on are done, jobs at a time: finished runs (results.json for the same config) are
skipped, interrupted ones resume from their newest checkpoint. Each run's output
goes to DIR/train.log. A failed run blocks the runs that depend on it, the others
go on; failures are listed at the end with their logs, and the exit status is 1.
A run whose saved config.toml differs from what the file now gives it is never
reused or overwritten: run refuses, naming the keys that differ. Run directories
are locked, so two "exp run"s of the same file share the work safely.
-only runs the runs whose IDs (as "status" lists them) match a glob, and the
runs they depend on: -only 'pretrain/ptw*/*' -only 'lexname/*/seed-0'.`,
		Flags: func(fs *flag.FlagSet) {
			fs.IntVar(&jobs, "jobs", 0, "runs at a time (default: the file's jobs)")
			fs.IntVar(&threads, "threads", 0, "libtorch threads per run (default: the file's threads)")
			fs.Var(&only, "only", "run only the runs whose IDs match this glob (\"*\" stops at \"/\"), with the runs they depend on (repeatable)")
		},
		Run: func(env *cli.Env, args []string) error {
			if len(args) != 1 {
				return cli.Usagef("run takes one experiment FILE")
			}
			e, resolved, err := loadExperiment(args[0])
			if err != nil {
				return err
			}
			self, err := os.Executable()
			if err != nil {
				return err
			}
			// Runs are in their own process groups, so a Ctrl-C reaches only
			// this process: the runner passes it on (SIGTERM: checkpoint and
			// stop; a second one kills them).
			sigs := make(chan os.Signal, 2)
			signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
			defer signal.Stop(sigs)
			var runs []*exp.Run
			if len(only) > 0 {
				if runs, err = e.Select(only); err != nil {
					return err
				}
			}
			rn := &exp.Runner{Exp: e, Resolved: resolved, Exe: self, Out: env.Stdout, Runs: runs, Jobs: jobs, Threads: threads, Signals: sigs}
			_, err = rn.Run(context.Background())
			return err
		},
	}
}

func expStatus() *cli.Command {
	var commands bool
	return &cli.Command{
		Name:  "status",
		Short: "show each run's state without running anything",
		Usage: "[-v] FILE",
		Long: `status lists every run of the experiment with its state (done, partial with its
newest checkpoint, not started, running in another process, or changed: its saved
config differs from what the file now gives it, with the keys), the runs it waits
for and its directory. It starts nothing and writes nothing.`,
		Flags: func(fs *flag.FlagSet) {
			fs.BoolVar(&commands, "v", false, "also print each run's repro train command")
		},
		Run: func(env *cli.Env, args []string) error {
			if len(args) != 1 {
				return cli.Usagef("status takes one experiment FILE")
			}
			e, resolved, err := loadExperiment(args[0])
			if err != nil && e == nil {
				return err
			}
			e.PrintStatus(env.Stdout, e.Statuses(resolved), commands)
			return err
		},
	}
}

type stringsFlag []string

func (m *stringsFlag) String() string     { return strings.Join(*m, " ") }
func (m *stringsFlag) Set(v string) error { *m = append(*m, v); return nil }

func expReport() *cli.Command {
	var out, dir string
	var splice stringsFlag
	var noPlots bool
	return &cli.Command{
		Name:  "report",
		Short: "write the results tables, plots and a JSON summary",
		Usage: "[-o FILE.md] [-dir DIR] [-splice FILE.md]... [-no-plots] FILE",
		Long: `report reads every run's results.json and metrics.jsonl and writes to the report
folder (default <root>/report): report.md (a table per metric and per [[table]]:
mean ± sample standard deviation over seeds, then each seed's value, "—" for a
missing run, never counted), summary.json, and plots/<stage>.<metric>.png (a
curve per condition over steps, with a band across seeds). It prints the
Markdown. -splice FILE.md replaces, in FILE.md, what stands between
<!-- exp:TABLE --> and <!-- /exp --> with that table as generated.`,
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&out, "o", "", "also write the Markdown report to this file")
			fs.StringVar(&dir, "dir", "", "report folder (default: the file's report, or <root>/report)")
			fs.Var(&splice, "splice", "fill the <!-- exp:TABLE --> ... <!-- /exp --> regions of this Markdown file (repeatable)")
			fs.BoolVar(&noPlots, "no-plots", false, "skip the plots")
		},
		Run: func(env *cli.Env, args []string) error {
			if len(args) != 1 {
				return cli.Usagef("report takes one experiment FILE")
			}
			e, err := exp.Load(args[0])
			if err != nil {
				return err
			}
			rep, err := e.WriteReport(dir, !noPlots)
			if err != nil {
				return err
			}
			fmt.Fprint(env.Stdout, rep.Markdown)
			for _, w := range rep.Warnings {
				fmt.Fprintln(env.Stderr, "warning:", w)
			}
			if out != "" {
				if err := os.WriteFile(out, []byte(rep.Markdown), 0o644); err != nil {
					return err
				}
			}
			for _, p := range splice {
				src, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				text, names, err := exp.Splice(string(src), rep.Tables, len(e.Seeds), e.Name)
				if err != nil {
					return fmt.Errorf("%s:%w", p, err)
				}
				if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
					return err
				}
				fmt.Fprintf(env.Stderr, "%s: filled %s\n", p, strings.Join(names, ", "))
			}
			fmt.Fprintf(env.Stderr, "wrote %s\n", strings.Join(rep.Files, ", "))
			return nil
		},
	}
}
