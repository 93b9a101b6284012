package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	_ "github.com/reprolab/repro/basics" // registers its task
	"github.com/reprolab/repro/internal/cli"
	"github.com/reprolab/repro/internal/config"
	_ "github.com/reprolab/repro/mae" // registers its tasks
	_ "github.com/reprolab/repro/mlm" // registers its tasks
	"github.com/reprolab/repro/train"
)

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, " ") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// loadTaskConfig reads the config's task key, then the whole config strictly
// into that task's struct.
func loadTaskConfig(path string, sets []string) (train.Task, any, error) {
	var head map[string]any
	if _, err := toml.DecodeFile(path, &head); err != nil {
		return train.Task{}, nil, fmt.Errorf("%s: %w", path, err)
	}
	name, _ := head["task"].(string)
	for _, s := range sets { // a --set task=... counts too
		if k, v, ok := strings.Cut(s, "="); ok && strings.TrimSpace(k) == "task" {
			name = strings.Trim(strings.TrimSpace(v), `"`)
		}
	}
	if name == "" {
		return train.Task{}, nil, fmt.Errorf("%s: no task key (say which experiment, e.g. task = \"basics.fashion_mnist\")", path)
	}
	task, err := train.Lookup(name)
	if err != nil {
		return train.Task{}, nil, fmt.Errorf("%s: %w", path, err)
	}
	cfg := task.Config()
	if err := config.Load(path, cfg, sets); err != nil {
		return train.Task{}, nil, err
	}
	return task, cfg, nil
}

func trainCommand() *cli.Command {
	var sets multiFlag
	var out, resume, device string
	return &cli.Command{
		Name:  "train",
		Short: "run the experiment a TOML config describes",
		Usage: "[-set section.key=value]... [-device cpu|cuda] [-out DIR | -resume DIR] CONFIG",
		Long: `train runs the config's task, writing the resolved config (config.toml),
metrics.jsonl and results to the run directory (default runs/<config>-<time>).`,
		Flags: func(fs *flag.FlagSet) {
			fs.Var(&sets, "set", "override a config key, e.g. -set trainer.epochs=3 (repeatable)")
			fs.StringVar(&out, "out", "", "run directory")
			fs.StringVar(&resume, "resume", "", "continue the run in DIR from its newest checkpoint")
			fs.StringVar(&device, "device", "", "cpu or cuda (same as -set trainer.device=...)")
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
			if err := os.MkdirAll(out, 0o755); err != nil {
				return err
			}
			if err := config.Save(filepath.Join(out, "config.toml"), cfg); err != nil {
				return err
			}
			fmt.Fprintf(env.Stdout, "%s: task %s, run directory %s\n", args[0], task.Name, out)
			return task.Run(cfg, out, resume != "", env.Stdout)
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
			if task.Eval == nil {
				return fmt.Errorf("task %s has no evaluation", task.Name)
			}
			return task.Eval(cfg, checkpoint, env.Stdout)
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
					fmt.Fprintf(env.Stdout, "%s: ok (%s)\n", p, task.Name)
				}
				if bad > 0 {
					return fmt.Errorf("%d of %d configs are invalid", bad, len(args))
				}
				return nil
			},
		}},
	}
}
