package pmlm

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/sugarme/gotch"

	"github.com/reprolab/repro/mlm"
	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/train"
)

// Generator is a fine-tuned pmlm.s2s model ready to generate, for `repro
// pmlm generate` and Go programs.
type Generator struct {
	Model  *torchmods.BertForMaskedLM
	Tok    *mlm.Tokenizer
	S2S    S2SOptions
	Decode BeamOptions
	tokens S2STokens
	store  *torchmods.Store
	dev    gotch.Device
}

// LoadGenerator opens a pmlm.s2s run (its newest checkpoint) or one of its
// checkpoint folders with the run's config.toml (cfgPath, or found in the
// run folder or two folders above a checkpoint folder); a bare weight file
// needs cfgPath.
func LoadGenerator(weights, cfgPath string, dev gotch.Device, w io.Writer) (*Generator, error) {
	if cfgPath == "" {
		for _, p := range []string{filepath.Join(weights, "config.toml"), filepath.Join(weights, "..", "..", "config.toml")} {
			if _, err := os.Stat(p); err == nil {
				cfgPath = p
				break
			}
		}
		if cfgPath == "" {
			return nil, fmt.Errorf("%s: no config.toml in it or two folders up; name the run's config with -config", weights)
		}
	}
	_, cfg, err := train.LoadConfig(cfgPath, nil)
	if err != nil {
		return nil, err
	}
	c, ok := cfg.(*FinetuneConfig)
	if !ok {
		return nil, fmt.Errorf("%s: task %q is not pmlm.s2s", cfgPath, cfg.Common().Task)
	}
	tok, err := mlm.LoadTokenizer(c.Data.Vocab)
	if err != nil {
		return nil, fmt.Errorf("%s: data.vocab: %w", cfgPath, err)
	}
	if c.Model.VocabSize == 0 {
		c.Model.VocabSize = tok.Size
	}
	c.Model.PadTokenID = tok.PAD
	g := &Generator{Tok: tok, S2S: c.S2S, Decode: c.Decode, store: torchmods.NewStore(dev), dev: dev,
		tokens: S2STokens{CLS: tok.CLS, SEP: tok.SEP, Pad: tok.PAD, Mask: tok.MASK, Vocab: c.Model.VocabSize}}
	g.Decode.EOSID = tok.SEP
	if err := resolveIgnoreWords(&g.Decode, tok); err != nil {
		return nil, fmt.Errorf("%s: %w", cfgPath, err)
	}
	if err := torchmods.Try(func() { g.Model = torchmods.NewBertForMaskedLM(g.store.Root(), c.Model) }); err != nil {
		g.Drop()
		return nil, err
	}
	if err := torchmods.LoadModel(weights, g.store); err != nil {
		g.Drop()
		return nil, err
	}
	fmt.Fprintf(w, "pmlm: %s with %s, beam %d\n", weights, cfgPath, g.Decode.BeamSize)
	return g, nil
}

// Generate decodes one source text into the target text, detokenised.
func (g *Generator) Generate(source string) (string, error) {
	e, err := g.Tok.Encode(source, g.S2S.MaxSourceLen+1)
	if err != nil {
		return "", err
	}
	src, err := inner(g.Tok, e.IDs)
	if err != nil {
		return "", err
	}
	ids, err := decodeOne(g.Model, src, g.tokens, g.S2S, g.Decode, g.dev)
	if err != nil {
		return "", err
	}
	return Detokenize(g.Tok, ids), nil
}

// Drop frees the model's parameters.
func (g *Generator) Drop() { g.store.Drop() }
