package main

import (
	"fmt"

	"github.com/reprolab/repro/data"
	"github.com/reprolab/repro/internal/cli"
)

func dataCommand() *cli.Command {
	return &cli.Command{
		Name:  "data",
		Short: "check datasets before training on them",
		Sub: []*cli.Command{{
			Name:  "check",
			Short: "decode every image of an image folder, listing the ones training would skip",
			Usage: "DIR...",
			Long: `check opens an ImageNet-style folder (one subfolder per class) and decodes
every image within the loader's bounds (64 megapixels, aspect ratio 32), so a
corrupt file or a decompression bomb is found before a run instead of when its
batch comes up. It exits 1 if any image cannot be used.`,
			Run: func(env *cli.Env, args []string) error {
				if len(args) == 0 {
					return cli.Usagef("check takes at least one DIR")
				}
				bad := 0
				for _, dir := range args {
					f, err := data.NewImageFolder(dir)
					if err != nil {
						return err
					}
					if err := f.Check(); err != nil {
						fmt.Fprintln(env.Stdout, err)
						bad++
						continue
					}
					fmt.Fprintf(env.Stdout, "%s: %d images in %d classes, all readable\n", dir, f.Len(), len(f.Classes))
				}
				if bad > 0 {
					return fmt.Errorf("%d of %d folders have images that cannot be used", bad, len(args))
				}
				return nil
			},
		}},
	}
}
