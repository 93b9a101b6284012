package main

import (
	"flag"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/sugarme/gotch"
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
	var visionHeads, textHeads int64
	return &cli.Command{
		Name:  "run",
		Short: "build the model a HF folder's config.json names, load it, run forward",
		Usage: "DIR|CLIP.pt -inputs IN.safetensors -out OUT.safetensors [-device cpu] [-vision-heads N -text-heads N]",
		Long: `run builds the model that DIR's config.json names (model_type and
architectures), loads DIR's weights (model.safetensors, sharded or not, or
pytorch_model.bin, in any naming variant the family knows) and runs the forward
pass in eval mode, without gradients. DIR may also be hf:ORG/NAME[@REV], from the
Hugging Face cache, or one of OpenAI's CLIP files (a released TorchScript archive such
as ViT-B-16.pt, or an OpenAI-named state dict saved with torch.save or as safetensors):
it is run as HF's CLIPModel converted from it would run (input_ids, pixel_values,
attention_mask in; logits_per_image, logits_per_text, image_embeds, text_embeds out),
with -vision-heads and -text-heads for a model whose widths are not 64 per head.

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
			fs.Int64Var(&visionHeads, "vision-heads", 0, "an OpenAI CLIP file's vision heads (0: width/64, as build_model)")
			fs.Int64Var(&textHeads, "text-heads", 0, "an OpenAI CLIP file's text heads (0: width/64, as build_model)")
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
			m, err := openHFRunner(args[0], store, torchmods.CLIPLoadOptions{Device: dev, VisionHeads: visionHeads, TextHeads: textHeads}, env)
			if err != nil {
				return err
			}
			defer m.drop()
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
			res, err := m.run(in)
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

// hfRunner is what `hf run` runs: a model OpenHF opened, or an OpenAI CLIP
// file as HF's CLIPModel.
type hfRunner struct {
	Architecture *torchmods.Architecture
	run          func(map[string]*ts.Tensor) (map[string]*ts.Tensor, error)
	drop         func()
}

// openHFRunner opens spec with OpenHF, or, when it is a file with no
// config.json beside it, as one of OpenAI's CLIP files (LoadCLIP), run
// through CLIPFamily's CLIPModel.
func openHFRunner(spec string, store *torchmods.Store, o torchmods.CLIPLoadOptions, env *cli.Env) (*hfRunner, error) {
	src, err := torchmods.Resolve(spec)
	if err != nil || src.Config != "" || src.Kind != torchmods.SourceFile {
		m, err := torchmods.OpenHF(spec, store, env.Stdout)
		if err != nil {
			return nil, err
		}
		return &hfRunner{Architecture: m.Architecture, run: m.Run, drop: func() {}}, nil
	}
	l, err := torchmods.LoadCLIP(spec, o, env.Stdout)
	if err != nil {
		return nil, fmt.Errorf("%s: no config.json beside it (a HF model folder has one), and not an OpenAI CLIP file either: %w", spec, err)
	}
	m, err := torchmods.NewCLIPForExport(l.Model)
	if err != nil {
		l.Store.Drop()
		return nil, fmt.Errorf("%s: %w", spec, err)
	}
	arch := torchmods.CLIPFamily.Architectures[0]
	run := func(inputs map[string]*ts.Tensor) (map[string]*ts.Tensor, error) {
		in, err := hfInputs(arch, inputs, o.Device)
		if err != nil {
			return nil, err
		}
		var out map[string]*ts.Tensor
		var ferr error
		err = torchmods.Try(func() { ts.NoGrad(func() { out, ferr = m.Forward(in) }) })
		if err == nil {
			err = ferr
		}
		if err != nil {
			return nil, fmt.Errorf("%s forward: %w", arch.Name, err)
		}
		return out, nil
	}
	return &hfRunner{Architecture: arch, run: run, drop: l.Store.Drop}, nil
}

// hfInputs checks inputs against arch as OpenedHF.Run does (a required
// one missing or an unknown one is an error naming it) and gives them the
// dtypes HF's forward takes on dev: floats as float32, the rest as int64.
func hfInputs(arch *torchmods.Architecture, inputs map[string]*ts.Tensor, dev gotch.Device) (map[string]*ts.Tensor, error) {
	for _, r := range arch.Required {
		if _, ok := inputs[r]; !ok {
			return nil, fmt.Errorf("%s needs input %q (inputs: %s)", arch.Name, r, strings.Join(arch.Inputs, ", "))
		}
	}
	in := map[string]*ts.Tensor{}
	names := make([]string, 0, len(inputs))
	for n := range inputs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		x := inputs[n]
		if !slices.Contains(arch.Inputs, n) {
			return nil, fmt.Errorf("%s does not take input %q (inputs: %s)", arch.Name, n, strings.Join(arch.Inputs, ", "))
		}
		err := torchmods.Try(func() {
			switch x.DType() {
			case gotch.Float, gotch.Double, gotch.Half, gotch.BFloat16:
				in[n] = x.MustTotype(gotch.Float, false).MustTo(dev, true)
			default:
				in[n] = x.MustTotype(gotch.Int64, false).MustTo(dev, true)
			}
		})
		if err != nil {
			return nil, fmt.Errorf("input %q: %w", n, err)
		}
	}
	return in, nil
}
