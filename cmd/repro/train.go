package main

import (
	"flag"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/reprolab/repro/internal/cli"
	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/train"
)

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, " ") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// loadTaskConfig is train.LoadConfig: the config's task, loaded strictly.
func loadTaskConfig(path string, sets []string) (train.Task, train.Config, error) {
	return train.LoadConfig(path, sets)
}

func trainCommand() *cli.Command {
	var sets multiFlag
	var out, resume, device, allow string
	var overwrite bool
	return &cli.Command{
		Name:  "train",
		Short: "run the experiment a TOML config describes",
		Usage: "[-set section.key=value]... [-device cpu|cuda] [-out DIR [-overwrite] | -resume DIR [-allow-change KEYS]] CONFIG",
		Long: `train runs the config's task, writing the resolved config (config.toml),
metrics.jsonl, checkpoints and results.json to the run directory (default
runs/<config>-<time>). The directory is locked while the run lives; a directory
that is not empty is refused unless -resume continues it or -overwrite moves its
contents aside. A resume must use the run's config: -allow-change lets named keys
differ (for example trainer.max_steps), and records the change. Ctrl-C (SIGINT) or
SIGTERM finishes the step, writes a checkpoint and exits; a second one exits at once.`,
		Flags: func(fs *flag.FlagSet) {
			fs.Var(&sets, "set", "override a config key, e.g. -set trainer.epochs=3 (repeatable)")
			fs.StringVar(&out, "out", "", "run directory")
			fs.StringVar(&resume, "resume", "", "continue the run in DIR from its newest checkpoint that verifies")
			fs.StringVar(&device, "device", "", "cpu or cuda (same as -set trainer.device=...)")
			fs.BoolVar(&overwrite, "overwrite", false, "start afresh in a directory that is not empty, moving its contents into DIR/replaced-<time>/")
			fs.StringVar(&allow, "allow-change", "", "comma-separated config keys a resume may change, e.g. trainer.max_steps")
		},
		Run: func(env *cli.Env, args []string) error {
			if len(args) != 1 {
				return cli.Usagef("train takes one CONFIG")
			}
			if device != "" {
				sets = append(sets, fmt.Sprintf("trainer.device=%q", device))
			}
			task, cfg, err := loadTaskConfig(args[0], sets)
			if err != nil {
				return err
			}
			if resume != "" {
				if out != "" && out != resume {
					return cli.Usagef("-out and -resume name different directories")
				}
				out = resume
			}
			if out == "" {
				base := strings.TrimSuffix(filepath.Base(args[0]), filepath.Ext(args[0]))
				out = filepath.Join("runs", base+"-"+time.Now().Format("20060102-150405"))
			}
			if overwrite && resume != "" {
				return cli.Usagef("-overwrite starts afresh; it cannot go with -resume")
			}
			var allowed []string
			for _, k := range strings.Split(allow, ",") {
				if k = strings.TrimSpace(k); k != "" {
					allowed = append(allowed, k)
				}
			}
			fmt.Fprintf(env.Stdout, "%s: task %s, run directory %s\n", args[0], task.TaskName(), out)
			return train.Run(task, cfg, train.RunOptions{Out: out, Resume: resume != "", W: env.Stdout, Overwrite: overwrite, AllowChange: allowed, Signals: true})
		},
	}
}

func evalCommand() *cli.Command {
	var sets multiFlag
	var checkpoint, device string
	return &cli.Command{
		Name:  "eval",
		Short: "evaluate trained weights as a config describes",
		Usage: "-checkpoint PATH [-set section.key=value]... [-device cpu|cuda] CONFIG",
		Long: `eval builds the config's model, loads PATH (a checkpoint folder, a run folder's
newest checkpoint, or a weight file) and runs the task's evaluation.`,
		Flags: func(fs *flag.FlagSet) {
			fs.Var(&sets, "set", "override a config key (repeatable)")
			fs.StringVar(&checkpoint, "checkpoint", "", "checkpoint folder, run folder or weight file")
			fs.StringVar(&device, "device", "", "cpu or cuda (same as -set trainer.device=...)")
		},
		Run: func(env *cli.Env, args []string) error {
			if len(args) != 1 || checkpoint == "" {
				return cli.Usagef("eval takes -checkpoint PATH and one CONFIG")
			}
			if device != "" {
				sets = append(sets, fmt.Sprintf("trainer.device=%q", device))
			}
			task, cfg, err := loadTaskConfig(args[0], sets)
			if err != nil {
				return err
			}
			if file, err := torchmods.ResolveWeights(checkpoint); err == nil && file != checkpoint {
				fmt.Fprintf(env.Stdout, "evaluating %s\n", file)
			}
			return train.Eval(task, cfg, checkpoint, env.Stdout)
		},
	}
}

func configCommand() *cli.Command {
	return &cli.Command{
		Name:  "config",
		Short: "validate experiment configs",
		Sub: []*cli.Command{{
			Name:  "check",
			Short: "validate configs without running them",
			Usage: "FILE...",
			Run: func(env *cli.Env, args []string) error {
				if len(args) == 0 {
					return cli.Usagef("check takes at least one FILE")
				}
				bad := 0
				for _, p := range args {
					task, _, err := loadTaskConfig(p, nil)
					if err != nil {
						fmt.Fprintln(env.Stdout, err)
						bad++
						continue
					}
					fmt.Fprintf(env.Stdout, "%s: ok (%s)\n", p, task.TaskName())
				}
				if bad > 0 {
					return fmt.Errorf("%d of %d configs are invalid", bad, len(args))
				}
				return nil
			},
		}},
	}
}
