package main

import (
	"flag"
	"fmt"
	"sort"
	"strings"

	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/internal/cli"
	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/train"

	_ "github.com/reprolab/repro/mae" // registers the vit_mae family
)

func hfCommand() *cli.Command {
	return &cli.Command{
		Name:  "hf",
		Short: "Hugging Face model folders: run one as transformers would",
		Sub:   []*cli.Command{hfRun()},
	}
}

func hfRun() *cli.Command {
	var inputs, out, device string
	return &cli.Command{
		Name:  "run",
		Short: "build the model a HF folder's config.json names, load it, run forward",
		Usage: "DIR -inputs IN.safetensors -out OUT.safetensors [-device cpu]",
		Long: `run builds the model that DIR's config.json names (model_type and
architectures), loads DIR's weights (model.safetensors, sharded or not, or
pytorch_model.bin, in any naming variant the family knows) and runs the forward
pass in eval mode, without gradients. DIR may also be hf:ORG/NAME[@REV], from the
Hugging Face cache.

The tensors of IN are forward's arguments under HF's names (input_ids,
attention_mask, token_type_ids, labels; pixel_values, noise; for llama and
mistral input_ids, attention_mask, position_ids, labels); OUT gets what it
returns under HF's output names (logits, loss, mask, ids_restore). Arguments not
given take HF's defaults (a Llama without position_ids counts positions from 0
whatever the padding, as HF's forward does; pass position_ids for a left-padded
batch). So a model's outputs here can be compared with transformers' on the same
inputs. Parameters are float32, as from_pretrained gives them without torch_dtype.

Supported: ` + strings.Join(torchmods.SupportedFamilies(), "; ") + ".",
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&inputs, "inputs", "", "safetensors file of forward's arguments, by HF's names")
			fs.StringVar(&out, "out", "", "safetensors file to write the outputs to")
			fs.StringVar(&device, "device", "cpu", "cpu or cuda")
		},
		Run: func(env *cli.Env, args []string) error {
			if len(args) != 1 {
				return cli.Usagef("run takes one HF folder (or hf:ORG/NAME)")
			}
			if inputs == "" || out == "" {
				return cli.Usagef("run needs -inputs and -out")
			}
			dev, err := train.DeviceOf(train.TrainerConfig{Device: device})
			if err != nil {
				return err
			}
			s := ts.NewScope()
			defer s.Close()
			store := torchmods.NewStore(dev)
			defer store.Drop()
			m, err := torchmods.OpenHF(args[0], store, env.Stdout)
			if err != nil {
				return err
			}
			in, err := torchmods.LoadWeights(inputs, dev)
			if err != nil {
				return fmt.Errorf("-inputs: %w", err)
			}
			var given, defaulted []string
			for _, n := range m.Architecture.Inputs {
				if _, ok := in[n]; ok {
					given = append(given, n)
				} else {
					defaulted = append(defaulted, n)
				}
			}
			res, err := m.Run(in)
			if err != nil {
				return err
			}
			names := make([]string, 0, len(res))
			for n := range res {
				names = append(names, n)
			}
			sort.Strings(names)
			tensors := make([]*ts.Tensor, len(names))
			shapes := make([]string, len(names))
			for i, n := range names {
				tensors[i] = res[n]
				shapes[i] = fmt.Sprintf("%s %v", n, res[n].MustSize())
			}
			meta := map[string]string{"model": args[0], "architecture": m.Architecture.Name, "inputs": inputs}
			if err := torchmods.SaveTensors(out, names, tensors, "", meta); err != nil {
				return err
			}
			line := fmt.Sprintf("%s forward on %s", m.Architecture.Name, strings.Join(given, ", "))
			if len(defaulted) > 0 {
				line += fmt.Sprintf(" (HF's defaults for %s)", strings.Join(defaulted, ", "))
			}
			fmt.Fprintf(env.Stdout, "%s: wrote %s: %s\n", line, out, strings.Join(shapes, ", "))
			return nil
		},
	}
}
