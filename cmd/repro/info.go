package main

import (
	"encoding/json"
	"flag"

	"github.com/reprolab/repro/internal/cli"
	"github.com/reprolab/repro/internal/torchinfo"
)

func infoCommand() *cli.Command {
	var asJSON bool
	return &cli.Command{
		Name:  "info",
		Short: "show libtorch, devices, threads and BLAS, and run a tiny tensor check",
		Usage: "[-json]",
		Long: `info prints the libtorch repro was built against (from the manifest that
scripts/install_libtorch.sh wrote), whether CUDA is usable and which GPUs the
driver sees, libtorch's thread counts, the BLAS library actually loaded, and
the result of a tiny computation on each device.`,
		Flags: func(fs *flag.FlagSet) { fs.BoolVar(&asJSON, "json", false, "print the report as JSON") },
		Run: func(env *cli.Env, args []string) error {
			if len(args) > 0 {
				return cli.Usagef("info takes no arguments")
			}
			info, err := torchinfo.Collect()
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(env.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(info)
			}
			info.Print(env.Stdout)
			return nil
		},
	}
}
