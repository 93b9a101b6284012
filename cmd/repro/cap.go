package main

import (
	"flag"
	"fmt"
	"path/filepath"

	"github.com/reprolab/repro/cap"
	"github.com/reprolab/repro/internal/cli"
	"github.com/reprolab/repro/train"
)

func capCommand() *cli.Command {
	return &cli.Command{
		Name:  "cap",
		Short: "CAP, contrastive pruning (Xu et al., AAAI 2022): export a pruning run's model",
		Long: `Pruning runs are cap.prune configs run by "repro train" (configs/cap/); each writes its pruned
model to pruned/ when it finishes. export writes it from any checkpoint:

	repro cap export runs/cap/sst2 sst2-pruned
	repro cap export -checkpoint runs/cap/sst2/checkpoints/step-00042100 runs/cap/sst2 sst2-50pc
	repro predict sst2-pruned dev.tsv`,
		Sub: []*cli.Command{capExport()},
	}
}

func capExport() *cli.Command {
	var checkpoint, device string
	var threshold float64
	return &cli.Command{
		Name:  "export",
		Short: "write a cap.prune run's pruned model (really pruned, or with its masks applied) from a checkpoint",
		Usage: "[-checkpoint DIR] [-threshold X] [-device cpu|cuda] RUN OUT",
		Long: `export reads RUN's config.toml and a checkpoint (the newest unless -checkpoint names one) and
writes to OUT a BERT classifier folder (config.json, model.safetensors, the tokenizer) that
text.classify, "repro predict" and transformers load:

  - a structured run's model really pruned: the heads and feed-forward neurons its masks removed
    are gone from the weight matrices (config.json records them as HF's pruned_heads and repro's
    intermediate_sizes; transformers loads a model with pruned heads only);
  - an unstructured run's model with its masks applied to the weights at -threshold (default:
    the config's prune.final_threshold), the pruned weights zero and the mask scores dropped, as
    the official bertarize.py writes it.

The written model's logits on a fixed batch are compared with the masked model's and the largest
difference printed.`,
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&checkpoint, "checkpoint", "", "a checkpoint folder of RUN (default: the newest)")
			fs.Float64Var(&threshold, "threshold", 0, "unstructured runs: the mask threshold (default: the config's prune.final_threshold)")
			fs.StringVar(&device, "device", "cpu", "cpu or cuda")
		},
		Run: func(env *cli.Env, args []string) error {
			if len(args) != 2 {
				return cli.Usagef("want RUN and OUT, got %q", args)
			}
			run, out := args[0], args[1]
			_, cfg, err := loadTaskConfig(filepath.Join(run, "config.toml"), nil)
			if err != nil {
				return err
			}
			c, ok := cfg.(*cap.Config)
			if !ok {
				return fmt.Errorf("%s is not a cap.prune run", run)
			}
			dev, err := train.DeviceOf(train.TrainerConfig{Device: device})
			if err != nil {
				return cli.Usagef("-device: %v", err)
			}
			ckpt, err := cap.Export(c, run, out, cap.ExportOptions{Checkpoint: checkpoint, Threshold: threshold, Device: dev, W: env.Stdout})
			if err != nil {
				return err
			}
			fmt.Fprintf(env.Stdout, "wrote %s from %s\n", out, ckpt)
			return nil
		},
	}
}
