package main

import (
	"flag"
	"fmt"
	"strings"

	"github.com/reprolab/repro/cocoop"
	"github.com/reprolab/repro/internal/cli"
	"github.com/reprolab/repro/torchmods"
)

// clipInterpret is CoOp's interpret_prompt.py as a verb: the vocabulary
// words nearest to each vector of a learned context.
func clipInterpret() *cli.Command {
	f := &clipModelFlags{}
	var prompt string
	k := 5
	return &cli.Command{
		Name:  "interpret",
		Short: "the words nearest to a CoOp or CoCoOp learned context (interpret_prompt.py)",
		Usage: "-model CLIP -prompt RUN|FILE [-k 5] [-tokenizer PATH]",
		Long: `interpret prints, for each vector of a learned prompt context, the -k entries of the CLIP's
vocabulary whose token embeddings are nearest to it by Euclidean distance, nearest first, with
the distances: what CoOp's interpret_prompt.py prints, one line per context vector. -prompt is a
cocoop.coop or cocoop.cocoop run or checkpoint, or an official CoOp/CoCoOp output folder or
prompt_learner file; -model the CLIP it was learned on (its token embedding), -tokenizer the
vocabulary that names the rows (OpenAI's BPE by default). A class-specific context (CSC) is
refused, as interpret_prompt.py refuses it.`,
		Flags: func(fs *flag.FlagSet) {
			f.register(fs)
			fs.StringVar(&prompt, "prompt", "", "the learned prompt: a cocoop run or checkpoint, or an official output folder or file")
			fs.IntVar(&k, "k", 5, "words per context vector")
		},
		Run: func(env *cli.Env, args []string) error {
			if len(args) > 0 {
				return cli.Usagef("unexpected arguments %q", args)
			}
			if prompt == "" {
				return cli.Usagef("-prompt names the learned context")
			}
			if k < 1 {
				return cli.Usagef("-k %d: want at least 1", k)
			}
			ctx, err := cocoop.ReadContext(prompt)
			if err != nil {
				return fmt.Errorf("-prompt: %w", err)
			}
			defer ctx.MustDrop()
			c, err := openCLIP(f, env)
			if err != nil {
				return err
			}
			defer c.drop()
			emb := c.l.Model.TokenEmbedding.Weight
			if vocab := emb.MustSize()[0]; int64(k) > vocab || int64(c.tok.VocabSize()) > vocab {
				return fmt.Errorf("-k %d, tokenizer of %d ids, and a token embedding of %d rows: the vocabulary does not fit the model", k, c.tok.VocabSize(), vocab)
			}
			if cw, ew := ctx.MustSize()[1], emb.MustSize()[1]; cw != ew {
				return fmt.Errorf("-prompt: a context of width %d for a CLIP whose token embedding is %d wide: not learned on this -model", cw, ew)
			}
			var near [][]cocoop.Neighbour
			if err := torchmods.Try(func() { near = cocoop.NearestTokens(ctx, emb, k) }); err != nil {
				return err
			}
			fmt.Fprintf(env.Stdout, "Return the top-%d matched words\n", k)
			for m, row := range near {
				words, dists := make([]string, len(row)), make([]string, len(row))
				for i, n := range row {
					words[i] = fmt.Sprintf("%q", c.tok.Token(n.ID))
					dists[i] = fmt.Sprintf("%.4f", n.Distance)
				}
				fmt.Fprintf(env.Stdout, "%d: [%s] [%s]\n", m+1, strings.Join(words, ", "), strings.Join(dists, ", "))
			}
			return nil
		},
	}
}
