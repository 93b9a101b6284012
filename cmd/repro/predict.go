package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/BurntSushi/toml"

	"github.com/reprolab/repro/imageclf"
	"github.com/reprolab/repro/internal/cli"
	"github.com/reprolab/repro/textclf"
)

// predictors are the tasks whose trained runs `repro predict` runs on new
// data, by task name: each reads its run's config.toml for how.
var predictors = map[string]func(run, checkpoint string, inputs []string, k int, out, log io.Writer) error{
	textclf.Task.Name: func(run, checkpoint string, inputs []string, _ int, out, log io.Writer) error {
		if len(inputs) != 1 {
			return cli.Usagef("predict with a %s run takes one INPUT file (csv, tsv or jsonl)", textclf.Task.Name)
		}
		return textclf.PredictRun(run, checkpoint, inputs[0], out, log)
	},
	imageclf.Task.Name: imageclf.PredictRun,
}

func predictCommand() *cli.Command {
	var checkpoint, out string
	var k int
	return &cli.Command{
		Name:  "predict",
		Short: "run a trained model on new data (text.classify, image.classify)",
		Usage: "[-checkpoint DIR] [-out FILE] [-k N] RUN INPUT...",
		Long: `predict loads a run's model as its config.toml describes it, with the run's newest
checkpoint (or -checkpoint), and predicts INPUT:

  text.classify:  one CSV, TSV or JSONL file with the columns the config names (GLUE's
                  test layout for a GLUE task); writes "index<TAB>prediction" rows, GLUE's
                  submission format. When every row has a label, its metrics are printed.
  image.classify: image files, folders of images or CSVs of paths; writes a row per
                  image: its path, then its -k best classes with their probabilities.

Predictions go to -out (default: standard output); messages go to standard error.`,
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&checkpoint, "checkpoint", "", "a checkpoint folder of the run (default: its newest)")
			fs.StringVar(&out, "out", "", "the file to write (default: standard output)")
			fs.IntVar(&k, "k", 1, "image.classify: the best k classes per image")
		},
		Run: func(env *cli.Env, args []string) error {
			if len(args) < 2 {
				return cli.Usagef("predict takes a RUN directory and at least one INPUT")
			}
			run := args[0]
			var head struct {
				Task string `toml:"task"`
			}
			if _, err := toml.DecodeFile(filepath.Join(run, "config.toml"), &head); err != nil {
				return fmt.Errorf("%s: %w (a run directory has the config.toml its run started with)", run, err)
			}
			predict, ok := predictors[head.Task]
			if !ok {
				return fmt.Errorf("%s: task %q: predict runs text.classify and image.classify runs", run, head.Task)
			}
			w := env.Stdout
			var f *os.File
			var bw *bufio.Writer
			if out != "" {
				var err error
				if f, err = os.Create(out + ".tmp"); err != nil {
					return err
				}
				defer f.Close()
				bw = bufio.NewWriter(f)
				w = bw
			}
			if err := predict(run, checkpoint, args[1:], k, w, env.Stderr); err != nil {
				if f != nil {
					os.Remove(out + ".tmp")
				}
				return err
			}
			if f == nil {
				return nil
			}
			if err := bw.Flush(); err != nil {
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
			fmt.Fprintf(env.Stderr, "wrote %s\n", out)
			return os.Rename(out+".tmp", out)
		},
	}
}
