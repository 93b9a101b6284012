package main

import (
	"flag"
	"fmt"
	"strings"

	"github.com/reprolab/repro/internal/cli"
	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/torchmods/safetensors"
)

func weightsCommand() *cli.Command {
	return &cli.Command{
		Name:  "weights",
		Short: "inspect and convert weight files (safetensors, torch.save .pt/.pth/.bin)",
		Long: `Weight files are read without Python and without running anything in
them: a torch.save pickle may only build tensors, storages and plain
containers, and any other global it names is refused.`,
		Sub: []*cli.Command{weightsInspect(), weightsConvert()},
	}
}

func weightsInspect() *cli.Command {
	return &cli.Command{
		Name:  "inspect",
		Short: "list every tensor of a weight file: name, dtype, shape, bytes",
		Usage: "FILE",
		Run: func(env *cli.Env, args []string) error {
			if len(args) != 1 {
				return cli.Usagef("inspect takes one FILE")
			}
			w, err := torchmods.ReadWeights(args[0])
			if err != nil {
				return err
			}
			width := len("name")
			for _, t := range w.Tensors {
				width = max(width, len(t.Name))
			}
			fmt.Fprintf(env.Stdout, "%s (%s)\n", args[0], w.Format)
			fmt.Fprintf(env.Stdout, "%-*s  %-5s  %-20s  %s\n", width, "name", "dtype", "shape", "bytes")
			var total, elems int64
			for _, t := range w.Tensors {
				fmt.Fprintf(env.Stdout, "%-*s  %-5s  %-20s  %d\n", width, t.Name, t.DType, shapeString(t.Shape), len(t.Data))
				total += int64(len(t.Data))
				elems += t.Numel()
			}
			fmt.Fprintf(env.Stdout, "total: %d tensors, %d elements, %d bytes\n", len(w.Tensors), elems, total)
			if len(w.Skipped) > 0 {
				fmt.Fprintf(env.Stdout, "non-tensor entries skipped: %s\n", strings.Join(w.Skipped, ", "))
			}
			return nil
		},
	}
}

func weightsConvert() *cli.Command {
	var prefix string
	return &cli.Command{
		Name:  "convert",
		Short: "convert any supported weight file to safetensors",
		Usage: "[-strip-prefix P] IN OUT.safetensors",
		Long: `convert writes OUT atomically (a temporary file, fsync, rename), so a
failed conversion never replaces an existing OUT.`,
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&prefix, "strip-prefix", "", `remove this prefix from tensor names (e.g. "model." for checkpoints that nest the state dict)`)
		},
		Run: func(env *cli.Env, args []string) error {
			if len(args) != 2 {
				return cli.Usagef("convert takes IN and OUT")
			}
			w, err := torchmods.ReadWeights(args[0])
			if err != nil {
				return err
			}
			tensors := w.Tensors
			if prefix != "" {
				tensors = make([]safetensors.Tensor, len(w.Tensors))
				for i, t := range w.Tensors {
					t.Name = strings.TrimPrefix(t.Name, prefix)
					if t.Name == "" {
						return fmt.Errorf("-strip-prefix %q leaves tensor %q with an empty name", prefix, w.Tensors[i].Name)
					}
					tensors[i] = t
				}
			}
			meta := map[string]string{"format": "pt", "converted_from": w.Format}
			if err := safetensors.Write(args[1], tensors, meta); err != nil {
				return err
			}
			fmt.Fprintf(env.Stdout, "wrote %s: %d tensors from %s (%s)\n", args[1], len(tensors), args[0], w.Format)
			return nil
		},
	}
}

func shapeString(s []int64) string {
	parts := make([]string, len(s))
	for i, d := range s {
		parts[i] = fmt.Sprint(d)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}
