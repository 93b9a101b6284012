package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"image"
	"os"
	"path/filepath"

	"github.com/sugarme/gotch"

	"github.com/reprolab/repro/data"
	"github.com/reprolab/repro/internal/cli"
	"github.com/reprolab/repro/train"
	"github.com/reprolab/repro/vqa"
)

func vqaCommand() *cli.Command {
	return &cli.Command{
		Name:  "vqa",
		Short: "MUMC medical VQA (Li et al., MICCAI 2023): answer questions about an image, write the synthetic scans",
		Long: `Pre-training and fine-tuning are vqa.pretrain and vqa.finetune configs run by "repro train"
(configs/vqa/); experiments/vqa_synth.toml is the CPU experiment.

	repro vqa answer -run runs/exp/vqa_synth/finetune/mumc/seed-0 scan.png "is there a lesion in the liver?"
	repro vqa synth data/synthvqa`,
		Sub: []*cli.Command{vqaAnswer(), vqaEval(), vqaSynth()},
	}
}

func vqaAnswer() *cli.Command {
	var run, checkpoint, device string
	var k int64
	return &cli.Command{
		Name:  "answer",
		Short: "answer questions about an image with a vqa.finetune run",
		Usage: "-run RUN [-checkpoint DIR] [-k N] IMAGE QUESTION...",
		Long: `answer loads RUN's config.toml and weights (its newest checkpoint unless -checkpoint names one),
ranks the run's candidate answers for each question about IMAGE (a PNG or JPEG) as MUMC's
rank_answer does, and prints the -k best with their probabilities. For a run on the synthetic
scans, IMAGE may also name one of them (train_00001.png).`,
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&run, "run", "", "a vqa.finetune run folder")
			fs.StringVar(&checkpoint, "checkpoint", "", "a checkpoint folder of RUN (default: the newest)")
			fs.Int64Var(&k, "k", 3, "answers to print per question")
			fs.StringVar(&device, "device", "cpu", "cpu or cuda")
		},
		Run: func(env *cli.Env, args []string) error {
			if run == "" || len(args) < 2 {
				return cli.Usagef("want -run RUN, an IMAGE and at least one QUESTION")
			}
			dev, err := train.DeviceOf(train.TrainerConfig{Device: device})
			if err != nil {
				return cli.Usagef("-device: %v", err)
			}
			c, a, _, err := openVQARun(run, checkpoint, dev, env)
			if err != nil {
				return err
			}
			img, err := vqaImage(c, args[0])
			if err != nil {
				return err
			}
			ranked, err := a.Answer(img, args[1:], k)
			if err != nil {
				return err
			}
			for i, q := range args[1:] {
				fmt.Fprintf(env.Stdout, "%s\n", q)
				for _, r := range ranked[i] {
					fmt.Fprintf(env.Stdout, "  %-24s %.3f\n", r.Answer, r.Prob)
				}
			}
			return nil
		},
	}
}

// openVQARun loads a vqa.finetune run's config and its weights (the
// newest checkpoint, or checkpoint when set) for answering.
func openVQARun(run, checkpoint string, dev gotch.Device, env *cli.Env) (*vqa.FinetuneConfig, *vqa.Answerer, string, error) {
	_, cfg, err := loadTaskConfig(filepath.Join(run, "config.toml"), nil)
	if err != nil {
		return nil, nil, "", err
	}
	c, ok := cfg.(*vqa.FinetuneConfig)
	if !ok {
		return nil, nil, "", fmt.Errorf("%s is not a vqa.finetune run", run)
	}
	weights := run
	if checkpoint != "" {
		weights = checkpoint
	}
	a, err := vqa.OpenAnswerer(c, weights, dev, env.Stderr)
	return c, a, weights, err
}

// vqaImage decodes a file, or names one of the synthetic scans of the
// run's data when no such file exists.
func vqaImage(c *vqa.FinetuneConfig, path string) (image.Image, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		return data.DecodeImage(bytes.NewReader(b), path, data.ImageFolderOptions{})
	}
	if c.Data.Kind != "synthetic" {
		return nil, err
	}
	s, serr := vqa.Synthesize(vqa.SynthOptions{Size: c.Data.Synth.Size, Train: c.Data.Synth.Train, Val: c.Data.Synth.Val, Test: c.Data.Synth.Test,
		PretrainExtra: c.Data.Synth.PretrainExtra, QuestionsPerImage: c.Data.Synth.QuestionsPerImage, Seed: c.Data.Synth.Seed})
	if serr != nil {
		return nil, serr
	}
	px, perr := s.Pixels(path)
	if perr != nil {
		return nil, fmt.Errorf("%w; and no synthetic scan of the run is named %s", err, path)
	}
	n := c.Data.Synth.Size
	return &image.Gray{Pix: px, Stride: n, Rect: image.Rect(0, 0, n, n)}, nil
}

func vqaEval() *cli.Command {
	var checkpoint, device, split string
	var markdown bool
	return &cli.Command{
		Name:  "eval",
		Short: "score vqa.finetune runs on their val or test questions, by answer and question type",
		Usage: "[-checkpoint DIR] [-split val|test] [-markdown] RUN...",
		Long: `eval answers every question of each RUN's split with its newest checkpoint (or -checkpoint, for
one RUN) and prints the accuracies as JSON: overall, by answer type (OPEN, CLOSED) and by question
type, and for the synthetic scans the same on the images with a lesion at a site held out of
training and on the others. -markdown prints one table instead, a row per run.`,
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&checkpoint, "checkpoint", "", "a checkpoint folder of RUN (default: the newest)")
			fs.StringVar(&split, "split", "test", "val or test")
			fs.StringVar(&device, "device", "cpu", "cpu or cuda")
			fs.BoolVar(&markdown, "markdown", false, "print a Markdown table, a row per run")
		},
		Run: func(env *cli.Env, args []string) error {
			if len(args) == 0 || (checkpoint != "" && len(args) != 1) {
				return cli.Usagef("want RUN... (one RUN with -checkpoint), got %q", args)
			}
			dev, err := train.DeviceOf(train.TrainerConfig{Device: device})
			if err != nil {
				return cli.Usagef("-device: %v", err)
			}
			var all []*vqa.Breakdown
			for _, run := range args {
				_, a, weights, err := openVQARun(run, checkpoint, dev, env)
				if err != nil {
					return err
				}
				b, err := a.Evaluate(split)
				if err != nil {
					return err
				}
				b.Weights = weights
				all = append(all, b)
			}
			if markdown {
				fmt.Fprint(env.Stdout, vqa.BreakdownTable(all))
				return nil
			}
			for _, b := range all {
				out, err := json.MarshalIndent(b, "", "  ")
				if err != nil {
					return err
				}
				fmt.Fprintln(env.Stdout, string(out))
			}
			return nil
		},
	}
}

func vqaSynth() *cli.Command {
	o := vqa.DefaultSynthOptions()
	var folder string
	return &cli.Command{
		Name:  "synth",
		Short: "write the synthetic radiology scans and their questions in MUMC's file formats",
		Usage: "[-size N] [-train N] [-val N] [-test N] [-extra N] [-questions N] [-seed N] OUT",
		Long: `synth writes the dataset that data.kind = "synthetic" generates in memory, as files a
data.kind = "files" config reads: OUT/images/*.png, trainset.json, valset.json and testset.json
(MUMC's question format), answer_list.json, captions.json (ALBEF's caption format) and a
README.txt on how the scans are drawn and which lesion sites are held out of training.
-imagefolder DIR also writes the training, caption-only and validation images (never a test
image) as DIR/train/scan/*.png and DIR/val/scan/*.png, the folder mae.pretrain reads.`,
		Flags: func(fs *flag.FlagSet) {
			fs.IntVar(&o.Size, "size", o.Size, "pixels per side")
			fs.IntVar(&o.Train, "train", o.Train, "training images")
			fs.IntVar(&o.Val, "val", o.Val, "validation images")
			fs.IntVar(&o.Test, "test", o.Test, "test images")
			fs.IntVar(&o.PretrainExtra, "extra", o.PretrainExtra, "caption-only images for pre-training")
			fs.IntVar(&o.QuestionsPerImage, "questions", o.QuestionsPerImage, "questions per image")
			fs.Uint64Var(&o.Seed, "seed", o.Seed, "generator seed")
			fs.StringVar(&folder, "imagefolder", "", "also write the non-test images as an image folder here, for mae.pretrain")
		},
		Run: func(env *cli.Env, args []string) error {
			if len(args) != 1 {
				return cli.Usagef("want OUT, got %q", args)
			}
			s, err := vqa.Synthesize(o)
			if err != nil {
				return err
			}
			if err := s.Write(args[0]); err != nil {
				return err
			}
			if folder != "" {
				if err := s.WriteImageFolder(folder); err != nil {
					return err
				}
				fmt.Fprintf(env.Stdout, "wrote the training, caption-only and validation images to %s/{train,val}/scan\n", folder)
			}
			fmt.Fprintf(env.Stdout, "wrote %d images, %d / %d / %d questions and %d caption pairs to %s\n",
				len(s.Images), len(s.Train), len(s.Val), len(s.Test), len(s.Captions), args[0])
			return nil
		},
	}
}
