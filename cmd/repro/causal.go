package main

import (
	"flag"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/reprolab/repro/causal"
	"github.com/reprolab/repro/internal/cli"
	"github.com/reprolab/repro/train"
)

func causalCommand() *cli.Command {
	return &cli.Command{
		Name:  "causal",
		Short: "order-consistent causal graphs (Chen et al., 2021): tools beyond train",
		Sub:   []*cli.Command{causalSweep()},
	}
}

func causalSweep() *cli.Command {
	var out string
	var resume bool
	var sets multiFlag
	return &cli.Command{
		Name:  "sweep",
		Short: "order recovery over a synthetic grid, joint against separate estimation",
		Usage: "[-set section.key=value]... [-out DIR] [-resume] CONFIG",
		Long: `sweep runs a causal.sweep config: for each replicate and sample size it draws the
paper's synthetic tasks, fits them in groups of each size (1 = separate estimation), and
writes fits.jsonl, results.json, shd.md (an SHD table) and recovery.png (the heatmap of
order-recovery probability over tasks per fit x samples per task). -resume keeps the fits
already in DIR/fits.jsonl.`,
		Flags: func(fs *flag.FlagSet) {
			fs.Var(&sets, "set", "override a config key (repeatable)")
			fs.StringVar(&out, "out", "", "output directory (default runs/<config>-<time>)")
			fs.BoolVar(&resume, "resume", false, "keep the fits already in the output directory")
		},
		Run: func(env *cli.Env, args []string) error {
			if len(args) != 1 {
				return cli.Usagef("sweep takes one CONFIG")
			}
			task, cfg, err := loadTaskConfig(args[0], sets)
			if err != nil {
				return err
			}
			sc, ok := cfg.(*causal.SweepConfig)
			if !ok {
				return fmt.Errorf("%s: task %s; sweep needs a causal.sweep config", args[0], task.TaskName())
			}
			if out == "" {
				if resume {
					return cli.Usagef("-resume needs -out DIR")
				}
				base := strings.TrimSuffix(filepath.Base(args[0]), filepath.Ext(args[0]))
				out = filepath.Join("runs", base+"-"+time.Now().Format("20060102-150405"))
			}
			_, err = causal.SweepTask.StartWith(sc, train.RunOptions{Out: out, Resume: resume, W: env.Stdout, Signals: true})
			return err
		},
	}
}
