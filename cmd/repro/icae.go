package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/icae"
	"github.com/reprolab/repro/internal/cli"
	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/train"
)

func icaeCommand() *cli.Command {
	return &cli.Command{
		Name:  "icae",
		Short: "In-context Autoencoder (Ge et al., 2024): compress text to memory slots, generate from them",
		Sub:   []*cli.Command{icaeCompress(), icaeGenerate()},
	}
}

// icaeFlags are the flags both verbs share: the trained ICAE and the device.
type icaeFlags struct{ run, config, device string }

func (f *icaeFlags) add(fs *flag.FlagSet) {
	fs.StringVar(&f.run, "run", "", "an icae.pretrain or icae.finetune run folder (its newest checkpoint), checkpoint folder or weight file")
	fs.StringVar(&f.config, "config", "", "the run's config.toml (default: found beside -run)")
	fs.StringVar(&f.device, "device", "cpu", "cpu or cuda")
}

func (f *icaeFlags) load(env *cli.Env) (*icae.Inference, error) {
	if f.run == "" {
		return nil, cli.Usagef("-run names the trained ICAE")
	}
	dev, err := train.DeviceOf(train.TrainerConfig{Device: f.device})
	if err != nil {
		return nil, err
	}
	return icae.LoadInference(f.run, f.config, dev, env.Stderr)
}

func icaeCompress() *cli.Command {
	var f icaeFlags
	var in, out string
	return &cli.Command{
		Name:  "compress",
		Short: "compress a text file into memory slots (safetensors)",
		Usage: "-run RUN -in TEXT -out SLOTS.safetensors",
		Long: `compress tokenises a text file as one context (BOS first), cuts it into segments of
at most memory.size x memory.compression tokens and runs the ICAE's encoder (the base LLM with
the trained LoRA) once per segment: the slots, memory.size per segment, are written as the
tensor "slots" [k, hidden] (float32) with the base and sizes in the file's metadata. Generate
from them with repro icae generate, as often as you like.`,
		Flags: func(fs *flag.FlagSet) {
			f.add(fs)
			fs.StringVar(&in, "in", "", "the text file to compress")
			fs.StringVar(&out, "out", "slots.safetensors", "the slots file to write")
		},
		Run: func(env *cli.Env, args []string) error {
			if in == "" || len(args) > 0 {
				return cli.Usagef("compress takes -in TEXT and no arguments")
			}
			text, err := os.ReadFile(in)
			if err != nil {
				return err
			}
			s := ts.NewScope()
			defer s.Close()
			m, err := f.load(env)
			if err != nil {
				return err
			}
			defer m.Drop()
			slots, n, err := m.Compress(strings.TrimSpace(string(text)))
			if err != nil {
				return fmt.Errorf("%s: %w", in, err)
			}
			if err := m.SaveSlots(out, slots, n); err != nil {
				return err
			}
			fmt.Fprintf(env.Stdout, "%s: %d tokens -> %d slots (%d segments) in %s\n", in, n, slots.MustSize()[0], slots.MustSize()[0]/m.Model.Opt.MemSize, out)
			return nil
		},
	}
}

func icaeGenerate() *cli.Command {
	var f icaeFlags
	var slotsPath, prompt, mode string
	var o torchmods.GenerateOptions
	var lmToken bool
	return &cli.Command{
		Name:  "generate",
		Short: "generate text from memory slots and a prompt",
		Usage: "-run RUN -slots SLOTS.safetensors [-prompt TEXT | -mode ae|lm]",
		Long: `generate feeds the slots that repro icae compress wrote to the decoder (the frozen base LLM,
LoRA off) and decodes, greedily unless -sample, until EOS or -max-new tokens. A fine-tuned ICAE
(icae.finetune) answers -prompt in its format (v2: prefix_ids [slots] [FT] prompt suffix_ids;
v1: [slots] [FT] prompt [FT]). A pre-trained one (icae.pretrain) reconstructs the context
(-mode ae: [slots] [AE]) or continues it (-mode lm).`,
		Flags: func(fs *flag.FlagSet) {
			f.add(fs)
			fs.StringVar(&slotsPath, "slots", "", "the slots file from repro icae compress")
			fs.StringVar(&prompt, "prompt", "", "the prompt (a fine-tuned ICAE)")
			fs.StringVar(&mode, "mode", "", "ae, lm or prompt (default: prompt when -prompt is given, else ae)")
			fs.BoolVar(&lmToken, "lm-token", false, "-mode lm: put [LM] after the slots (a model trained with objective.lm_special_token)")
			fs.IntVar(&o.MaxNewTokens, "max-new", 512, "the most tokens to generate (the official scripts: 512)")
			fs.BoolVar(&o.DoSample, "sample", false, "sample instead of greedy decoding")
			fs.Float64Var(&o.Temperature, "temperature", 0, "-sample: divides the logits (0: 1)")
			fs.Int64Var(&o.TopK, "top-k", 0, "-sample: keep the k best tokens (0: all)")
			fs.Float64Var(&o.TopP, "top-p", 0, "-sample: nucleus share (0: all)")
			fs.Uint64Var(&o.Seed, "seed", 0, "-sample: the sampler's seed")
		},
		Run: func(env *cli.Env, args []string) error {
			if slotsPath == "" || len(args) > 0 {
				return cli.Usagef("generate takes -slots FILE and no arguments")
			}
			if mode == "" {
				mode = icae.ModeAE
				if prompt != "" {
					mode = icae.ModePrompt
				}
			}
			if (mode == icae.ModePrompt) != (prompt != "") {
				return cli.Usagef("-prompt goes with -mode prompt, and only with it")
			}
			s := ts.NewScope()
			defer s.Close()
			m, err := f.load(env)
			if err != nil {
				return err
			}
			defer m.Drop()
			slots, err := m.ReadSlots(slotsPath, m.Model.Memory.MustDevice())
			if err != nil {
				return err
			}
			text, err := m.Generate(slots, mode, prompt, lmToken, o)
			if err != nil {
				return err
			}
			fmt.Fprintln(env.Stdout, text)
			return nil
		},
	}
}
