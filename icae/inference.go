package icae

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/train"
)

// Inference is a trained ICAE ready to compress contexts once and answer
// any number of prompts from their slots (what the official
// *_inference.py scripts do): the frozen LLM, the trained LoRA and memory
// table, the tokenizer, and the fine-tuning format when the run was
// icae.finetune.
type Inference struct {
	Model    *Model
	Tok      Tokenizer
	BOS, EOS int64
	Base     string
	// Format is the prompt format of a fine-tuned ICAE; nil for a
	// pre-trained one, which is asked with [AE] (reconstruct) or for a
	// continuation.
	Format *FormatConfig
	stores [2]*torchmods.Store
}

// Drop frees the LLM and the ICAE tensors.
func (in *Inference) Drop() {
	for _, s := range in.stores {
		s.Drop()
	}
}

// LoadInference loads the ICAE of a run (its newest checkpoint; or a
// checkpoint folder or weight file with cfgPath naming the run's
// config.toml), rebuilding the model its config describes.
func LoadInference(weights, cfgPath string, dev gotch.Device, w io.Writer) (*Inference, error) {
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
	in := &Inference{}
	var base, dtype, vocab string
	var o Options
	switch c := cfg.(type) {
	case *Config:
		base, dtype, vocab, o = c.LLM, c.BaseDType, c.Data.Vocab, options(c.Memory, c.LoRA)
	case *FinetuneConfig:
		base, dtype, vocab, o = c.LLM, c.BaseDType, c.Data.Vocab, options(c.Memory, c.LoRA)
		in.Format = &c.Format
	default:
		return nil, fmt.Errorf("%s: task %q is not icae.pretrain or icae.finetune", cfgPath, cfg.Common().Task)
	}
	ll, err := torchmods.OpenLlama(base, torchmods.LlamaLoadOptions{DType: dtype, Device: dev}, w)
	if err != nil {
		return nil, fmt.Errorf("%s: base: %w", cfgPath, err)
	}
	store := torchmods.NewStore(dev)
	in.stores = [2]*torchmods.Store{ll.Store, store}
	in.Base = base
	fail := func(err error) (*Inference, error) {
		in.Drop()
		return nil, err
	}
	if len(ll.EOS) == 0 || ll.Model.Cfg.BOSTokenID < 0 {
		return fail(fmt.Errorf("base %s: config.json names no bos_token_id or eos_token_id", base))
	}
	in.BOS, in.EOS = ll.Model.Cfg.BOSTokenID, ll.EOS[0]
	if err := torchmods.Try(func() { in.Model = NewModel(store.Root(), ll.Model, o) }); err != nil {
		return fail(err)
	}
	if err := torchmods.LoadModel(weights, store); err != nil {
		return fail(err)
	}
	if vocab == "" {
		if vocab, err = FindTokenizer(ll.Source.Dir); err != nil {
			return fail(err)
		}
	}
	if in.Tok, err = LoadTokenizer(vocab); err != nil {
		return fail(err)
	}
	return in, nil
}

// Compress tokenises text as a context (BOS first, as the official
// inference's tokenizer call adds it) and returns its slots
// [segments·mem, hidden] in float32, and the number of tokens.
func (in *Inference) Compress(text string) (*ts.Tensor, int, error) {
	ids, err := in.Tok.Encode(text)
	if err != nil {
		return nil, 0, err
	}
	ids = append([]int64{in.BOS}, ids...)
	var slots *ts.Tensor
	err = torchmods.Try(func() {
		ts.NoGrad(func() {
			s, _ := in.Model.Compress([][]int64{ids}, false)
			slots = s.MustTotype(gotch.Float, true)
		})
	})
	return slots, len(ids), err
}

// SaveSlots writes slots to a safetensors file as the tensor "slots",
// with what they need to be read back: the base, the memory size, the
// compressed token count.
func (in *Inference) SaveSlots(path string, slots *ts.Tensor, tokens int) error {
	meta := map[string]string{"base": in.Base, "mem_size": strconv.FormatInt(in.Model.Opt.MemSize, 10),
		"compression": strconv.FormatInt(in.Model.Opt.Compression, 10), "tokens": strconv.Itoa(tokens), "format": "icae-slots"}
	return torchmods.SaveTensors(path, []string{"slots"}, []*ts.Tensor{slots}, "", meta)
}

// ReadSlots reads a SaveSlots file onto dev, checking that its slots fit
// this model (width, whole segments).
func (in *Inference) ReadSlots(path string, dev gotch.Device) (*ts.Tensor, error) {
	w, err := torchmods.LoadWeights(path, dev)
	if err != nil {
		return nil, err
	}
	s, ok := w["slots"]
	if !ok {
		return nil, fmt.Errorf("%s: no tensor \"slots\" (write it with repro icae compress)", path)
	}
	sz := s.MustSize()
	if len(sz) != 2 || sz[1] != in.Model.LM.Cfg.HiddenSize || sz[0]%in.Model.Opt.MemSize != 0 {
		return nil, fmt.Errorf("%s: slots of shape %v, want [k·%d, %d] for this model", path, sz, in.Model.Opt.MemSize, in.Model.LM.Cfg.HiddenSize)
	}
	return s, nil
}

// The modes of Generate.
const (
	ModeAE     = "ae"     // [slots] [AE]: reconstruct the context (a pre-trained ICAE)
	ModeLM     = "lm"     // [slots]: continue the context (a pre-trained ICAE; [LM] when trained with it)
	ModePrompt = "prompt" // the fine-tuning format around the prompt (a fine-tuned ICAE)
)

// Generate decodes from slots (as Compress or ReadSlots give them) in a
// mode, with the prompt for ModePrompt, and returns the text.
func (in *Inference) Generate(slots *ts.Tensor, mode, prompt string, lmToken bool, o torchmods.GenerateOptions) (string, error) {
	var before, after []int64
	switch mode {
	case ModeAE:
		after = []int64{in.Model.Layout.AE()}
	case ModeLM:
		if lmToken {
			after = []int64{in.Model.Layout.LM()}
		}
	case ModePrompt:
		if in.Format == nil {
			return "", fmt.Errorf("a prompt needs a fine-tuned ICAE (an icae.finetune run); this one is pre-trained: ask for %q or %q", ModeAE, ModeLM)
		}
		p, err := in.Tok.Encode(prompt)
		if err != nil {
			return "", err
		}
		if in.Format.Format == "v1" {
			after = append(append([]int64{in.Model.Layout.FT()}, p...), in.Model.Layout.FT())
		} else {
			before = in.Format.PrefixIDs
			after = append(append([]int64{in.Model.Layout.FT()}, p...), in.Format.SuffixIDs...)
		}
	default:
		return "", fmt.Errorf("mode %q: want %q, %q or %q", mode, ModeAE, ModeLM, ModePrompt)
	}
	if o.StopTokens == nil {
		o.StopTokens = []int64{in.EOS}
	}
	var out []int64
	err := torchmods.Try(func() {
		ts.NoGrad(func() {
			k := slots.MustSize()[0]
			ids := append(append(slices.Clone(before), slices.Repeat([]int64{in.Model.Layout.MemID(0)}, int(k))...), after...)
			x := in.Model.Embed(ids, 1, int64(len(ids)), slots)
			out = in.Model.GenerateFrom(x, o)[0]
		})
	})
	if err != nil {
		return "", err
	}
	return in.Tok.Decode(out), nil
}
