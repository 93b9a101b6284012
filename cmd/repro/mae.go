package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/internal/cli"
	"github.com/reprolab/repro/mae"
	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/train"
)

func maeCommand() *cli.Command {
	return &cli.Command{
		Name:  "mae",
		Short: "Masked Autoencoders (He et al., 2022): tools beyond train and eval",
		Sub:   []*cli.Command{maeReconstruct()},
	}
}

func maeReconstruct() *cli.Command {
	var checkpoint, config, out, device string
	var first, n int
	var ratio float64
	var seed int64
	var normPix bool
	var heads, decoderHeads int64
	return &cli.Command{
		Name:  "reconstruct",
		Short: "draw masked images and their reconstructions as a PNG grid",
		Usage: "-checkpoint PATH [-config CONFIG] [-out grid.png] [-n 8] [-mask 0.75] (fashion-mnist | IMAGE...)",
		Long: `reconstruct loads a full MAE (encoder and decoder: a repro pre-training run or
checkpoint, an official *_full.pth or mae_visualize_*.pth, or HF ViTMAE weights), masks
each image and writes one row per image: the original, the visible patches, the
reconstruction, and the reconstruction with the visible patches pasted in, as the
official demo shows them. The model's sizes come from -config, else from the run's
config.toml, else from a HF folder's config.json, else from the checkpoint's shapes:
then say -norm-pix for a model trained on normalised patches, and -heads and
-decoder-heads when the head counts are not the paper's (a checkpoint does not store
them, and what is assumed is printed). Images are the Fashion-MNIST test set ("fashion-mnist", from
-first) or image files (resized and centre-cropped, ImageNet-normalised).`,
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&checkpoint, "checkpoint", "", "run folder, checkpoint folder or weight file")
			fs.StringVar(&config, "config", "", "the mae.pretrain config the model was trained with")
			fs.StringVar(&out, "out", "reconstruction.png", "the PNG to write")
			fs.IntVar(&n, "n", 8, "images (Fashion-MNIST)")
			fs.IntVar(&first, "first", 0, "first Fashion-MNIST test image")
			fs.Float64Var(&ratio, "mask", 0.75, "mask ratio")
			fs.Int64Var(&seed, "seed", 0, "seeds the masks")
			fs.BoolVar(&normPix, "norm-pix", false, "the checkpoint was trained with norm_pix_loss (when its sizes are inferred)")
			fs.Int64Var(&heads, "heads", 0, "encoder attention heads (when the sizes are inferred; default: the paper's, said)")
			fs.Int64Var(&decoderHeads, "decoder-heads", 0, "decoder attention heads (when the sizes are inferred; default: the paper's, said)")
			fs.StringVar(&device, "device", "cpu", "cpu or cuda")
		},
		Run: func(env *cli.Env, args []string) error {
			if checkpoint == "" || len(args) == 0 {
				return cli.Usagef("reconstruct takes -checkpoint PATH and fashion-mnist or image files")
			}
			if ratio <= 0 || ratio >= 1 {
				return cli.Usagef("-mask must be in (0, 1), got %v", ratio)
			}
			if config == "" { // a run folder, or a checkpoint inside one, carries its config
				for _, c := range []string{filepath.Join(checkpoint, "config.toml"), filepath.Join(checkpoint, "..", "..", "config.toml")} {
					if _, err := os.Stat(c); err == nil {
						config = c
						break
					}
				}
			}
			var opts *mae.Options
			if config != "" {
				task, cfg, err := loadTaskConfig(config, nil)
				if err != nil {
					return err
				}
				pc, ok := cfg.(*mae.PretrainConfig)
				if !ok {
					return fmt.Errorf("%s: task %s; reconstruction needs a mae.pretrain config", config, task.TaskName())
				}
				opts = &pc.Model
				if heads != 0 || decoderHeads != 0 {
					return cli.Usagef("-heads and -decoder-heads are for sizes inferred from a checkpoint; %s sets model.heads and model.decoder_heads", config)
				}
			}
			dev, err := train.DeviceOf(train.TrainerConfig{Device: device})
			if err != nil {
				return err
			}
			s := ts.NewScope()
			defer s.Close()
			store := torchmods.NewStore(dev)
			defer store.Drop()
			m, err := mae.LoadForReconstruction(store, checkpoint, opts, mae.Hints{NormPix: normPix, Heads: heads, DecoderHeads: decoderHeads}, env.Stdout)
			if err != nil {
				return err
			}
			var imgs *ts.Tensor
			mean, std := []float32{0.485, 0.456, 0.406}, []float32{0.229, 0.224, 0.225}
			if len(args) == 1 && strings.EqualFold(args[0], "fashion-mnist") {
				if m.Opt.InChans != 1 || m.Opt.ImgSize != 28 {
					return fmt.Errorf("the model takes %dx%d images with %d channels; Fashion-MNIST's are 28x28 grey", m.Opt.ImgSize, m.Opt.ImgSize, m.Opt.InChans)
				}
				imgs, err = mae.FashionMNISTBatch("", first, n, dev)
				mean, std = []float32{0.2860}, []float32{0.3530}
			} else {
				if m.Opt.InChans != 3 {
					return fmt.Errorf("image files are read as RGB; this model takes %d channel(s)", m.Opt.InChans)
				}
				imgs, err = mae.FileBatch(args, m.Opt.ImgSize, dev)
			}
			if err != nil {
				return err
			}
			ts.ManualSeed(seed)
			p, err := mae.Reconstruct(m, imgs, ratio, nil)
			if err != nil {
				return err
			}
			scale := max(1, 112/int(m.Opt.ImgSize))
			if err := mae.WriteGrid(out, p, mean, std, scale); err != nil {
				return err
			}
			fmt.Fprintf(env.Stdout, "wrote %s: %d images x (original, masked %.0f%%, reconstruction, reconstruction + visible)\n", out, imgs.MustSize()[0], 100*ratio)
			return nil
		},
	}
}
