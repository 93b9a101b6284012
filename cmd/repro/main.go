// Command repro is the front door to repro: information about the
// installation now, and training, evaluation and each paper's tools as they
// land. Run `repro help` for the list of commands.
package main

import (
	"os"

	"github.com/reprolab/repro/internal/cli"
	"github.com/reprolab/repro/papers"
	"github.com/reprolab/repro/train"
)

func main() {
	os.Exit(run(&cli.Env{Stdout: os.Stdout, Stderr: os.Stderr}, os.Args[1:]))
}

// run registers every paper's tasks and runs the command line; tests call
// it with their own writers.
func run(env *cli.Env, args []string) int {
	train.Register(papers.Tasks()...)
	return cli.Main(root(), env, args)
}

func root() *cli.Command {
	return &cli.Command{
		Name: "repro",
		Long: `repro turns ML papers into Go packages on libtorch: each paper's model,
objective and training recipe, run from a TOML config on CPU or CUDA.`,
		Sub: []*cli.Command{infoCommand(), weightsCommand(), trainCommand(), evalCommand(), configCommand(), plotCommand(), dataCommand(), maeCommand(), causalCommand(), expCommand(), hfCommand(), predictCommand(), icaeCommand(), pmlmCommand(), irCommand(), clipCommand(), capCommand(), vqaCommand(), vampnetCommand()},
	}
}
