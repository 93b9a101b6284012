package icae

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/data"
	"github.com/reprolab/repro/internal/config"
	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/train"
)

// PwC is one prompt-with-context example, a line of the PwC dataset's
// JSON Lines files: the context, a prompt about it, the answer.
type PwC struct {
	Input  string `json:"input"`
	Prompt string `json:"prompt"`
	Answer string `json:"answer"`
}

// ReadPwC reads a JSON Lines file of PwC examples; an error names the file
// and line.
func ReadPwC(path string) ([]PwC, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []PwC
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for line := 1; sc.Scan(); line++ {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var p PwC
		if err := json.Unmarshal(sc.Bytes(), &p); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		if p.Input == "" || p.Answer == "" {
			return nil, fmt.Errorf("%s:%d: an example needs \"input\" and \"answer\"", path, line)
		}
		out = append(out, p)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no examples", path)
	}
	return out, nil
}

// FormatConfig is the fine-tuning input format around the slots.
type FormatConfig struct {
	Format string `toml:"format"` // "v2": prefix_ids [slots] [FT] prompt suffix_ids; "v1": [slots] [FT] prompt [FT]
	// PrefixIDs and SuffixIDs are v2's instruction template as token ids:
	// Mistral-Instruct's "<s>[INST]" = [1, 733, 16289, 28793] and
	// "[/INST]" = [733, 28748, 16289, 28793] in the official code.
	PrefixIDs  []int64 `toml:"prefix_ids"`
	SuffixIDs  []int64 `toml:"suffix_ids"`
	MaxContext int     `toml:"max_context"` // contexts are cut to this many tokens (v2: 5120)
}

// FinetuneData are the PwC files.
type FinetuneData struct {
	Train string `toml:"train"` // JSON Lines, {"input", "prompt", "answer"} per line
	Eval  string `toml:"eval"`
	Vocab string `toml:"vocab"` // the base's tokenizer; empty: the base folder's vocab.txt or tokenizer.json
	Batch int    `toml:"batch"`
}

// FinetuneConfig is "icae.finetune".
type FinetuneConfig struct {
	train.Base
	LLM        string       `toml:"base"`
	BaseDType  string       `toml:"base_dtype"`
	Pretrained string       `toml:"pretrained"` // the pre-trained ICAE (restore_from); empty starts from scratch
	Memory     MemoryConfig `toml:"memory"`
	LoRA       LoRAConfig   `toml:"lora"`
	Format     FormatConfig `toml:"format"`
	Optim      OptimConfig  `toml:"optim"`
	Data       FinetuneData `toml:"data"`
	Eval       struct {
		Samples  int  `toml:"samples"`  // eval examples (0: all)
		Generate bool `toml:"generate"` // decode answers greedily and count exact matches
	} `toml:"eval"`
}

// Validate checks the task's keys, naming the key.
func (c *FinetuneConfig) Validate() error {
	switch {
	case c.LLM == "":
		return config.Field("base", "must name the frozen LLM: a HF Llama or Mistral folder, or hf:ORG/NAME")
	case c.Format.Format != "v2" && c.Format.Format != "v1":
		return config.Field("format.format", `must be "v2" or "v1", got %q`, c.Format.Format)
	case c.Format.Format == "v1" && len(c.Format.PrefixIDs)+len(c.Format.SuffixIDs) > 0:
		return config.Field("format.prefix_ids", "v1's format has no template; leave prefix_ids and suffix_ids empty")
	case c.Format.MaxContext < 1:
		return config.Field("format.max_context", "must be positive, got %d", c.Format.MaxContext)
	case c.Data.Train == "" || c.Data.Eval == "":
		return config.Field("data.train", "data.train and data.eval must name PwC JSON Lines files")
	case c.Data.Batch < 1:
		return config.Field("data.batch", "must be positive, got %d", c.Data.Batch)
	case c.Eval.Samples < 0:
		return config.Field("eval.samples", "must not be negative, got %d", c.Eval.Samples)
	}
	if _, err := torchmods.ParseLlamaDType(c.BaseDType); err != nil && c.BaseDType != "auto" {
		return config.Field("base_dtype", "%v (or \"auto\")", err)
	}
	for _, err := range []error{c.Memory.validate(), c.LoRA.validate(), c.Optim.validate()} {
		if err != nil {
			return err
		}
	}
	return nil
}

// FinetuneResult is what icae.finetune reports on the eval examples.
type FinetuneResult struct {
	AnswerLoss     float64 `json:"answer_loss"`      // per answer token (and EOS), teacher-forced
	AnswerTokenAcc float64 `json:"answer_token_acc"` // teacher-forced argmax accuracy on the same tokens
	ExactMatch     float64 `json:"exact_match,omitempty"`
	Samples        int     `json:"eval_samples"`
	Steps          int64   `json:"steps"`
}

// FinetuneTask is "icae.finetune".
var FinetuneTask = train.TaskSpec[*FinetuneConfig, *FinetuneResult]{
	Name: "icae.finetune",
	Doc:  "ICAE instruction fine-tuning on prompt-with-context (PwC) data: the loss on the answer only",
	Default: func() *FinetuneConfig {
		c := &FinetuneConfig{Base: train.Base{Task: "icae.finetune", Trainer: train.DefaultTrainer()}, BaseDType: "float32",
			Memory: MemoryConfig{Size: 128, Compression: 4, InitStd: 1},
			LoRA:   LoRAConfig{Enabled: true, Rank: 128, Alpha: 32, Dropout: 0.05, Targets: []string{"q_proj", "v_proj"}},
			Format: FormatConfig{Format: "v2", MaxContext: 5120},
			Optim:  defaultOptim(5e-5, 0),
			Data:   FinetuneData{Batch: 1}}
		c.Eval.Generate = true
		return c
	},
	Run: Finetune,
}

// finetuneSamples tokenises PwC examples into FT samples.
func finetuneSamples(ex []PwC, tok Tokenizer, o FinetuneOptions, l Layout) ([]Sample, [][]int64, error) {
	var out []Sample
	var answers [][]int64
	for i, e := range ex {
		var ids [3][]int64
		for j, text := range []string{e.Input, e.Prompt, e.Answer} {
			var err error
			if ids[j], err = tok.Encode(text); err != nil {
				return nil, nil, fmt.Errorf("example %d: %w", i, err)
			}
		}
		if len(ids[0]) == 0 {
			return nil, nil, fmt.Errorf("example %d: the input tokenises to nothing", i)
		}
		out = append(out, FinetuneSample(ids[0], ids[1], ids[2], o, l))
		answers = append(answers, ids[2])
	}
	return out, answers, nil
}

// Finetune trains the ICAE on PwC examples (instruct_ft_tokenize_function's
// samples) and evaluates the answers.
func Finetune(s *train.Session, c *FinetuneConfig) (*FinetuneResult, error) {
	se, err := open(s, c.LLM, c.BaseDType, c.Pretrained, c.Data.Vocab, options(c.Memory, c.LoRA))
	if err != nil {
		return nil, err
	}
	defer se.llmStore.Drop()
	m := se.m
	fo := FinetuneOptions{Format: c.Format.Format, Prefix: c.Format.PrefixIDs, Suffix: c.Format.SuffixIDs, MaxContext: c.Format.MaxContext,
		Compression: int(c.Memory.Compression), EOS: se.eos}
	var sets [2][]Sample
	var evalAnswers [][]int64
	for i, path := range []string{c.Data.Train, c.Data.Eval} {
		ex, err := ReadPwC(path)
		if err != nil {
			return nil, fmt.Errorf("data: %w", err)
		}
		if i == 1 && c.Eval.Samples > 0 {
			ex = ex[:min(len(ex), c.Eval.Samples)]
		}
		samples, answers, err := finetuneSamples(ex, se.tok, fo, m.Layout)
		if err != nil {
			return nil, fmt.Errorf("data: %s: %w", path, err)
		}
		sets[i] = samples
		if i == 1 {
			evalAnswers = answers
		}
	}
	trainSet, evalSet := sets[0], sets[1]
	loader, err := data.NewSliceLoader(trainSet, data.LoaderOptions{Batch: c.Data.Batch, Shuffle: true, DropLast: true, Seed: uint64(c.Trainer.Seed)})
	if err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	defer loader.Close()
	rp, err := c.Optim.plan(s, loader.PerEpoch())
	if err != nil {
		return nil, err
	}
	perEpoch, steps, opt, sched := rp.perEpoch, rp.steps, rp.opt, rp.sched
	fmt.Fprintf(s.W, "icae.finetune: %d training and %d eval examples, format %s, LoRA %s, %d trainable parameters; %d steps\n",
		len(trainSet), len(evalSet), c.Format.Format, loraSummary(c.LoRA), se.trainable(s), steps)
	var res *FinetuneResult
	evaluate := func() (map[string]float64, error) {
		r, err := evalFinetune(m, evalSet, evalAnswers, c.Data.Batch, c.Eval.Generate, se.eos)
		if err != nil {
			return nil, err
		}
		res = r
		out := map[string]float64{"answer_loss": r.AnswerLoss, "answer_token_acc": r.AnswerTokenAcc}
		if c.Eval.Generate {
			out["exact_match"] = r.ExactMatch
		}
		return out, nil
	}
	err = s.Train(train.Plan{Steps: steps, PerEpoch: perEpoch, Opt: opt, LR: sched, Clip: c.Optim.Clip,
		Loss: func(int64, int) (*ts.Tensor, error) {
			samples, err := loader.Next()
			if err != nil {
				return nil, err
			}
			return m.Loss(m.NewBatch(samples), true), nil
		},
		State: map[string]train.State{"loader": train.LoaderState(loader)},
		Eval:  func(int64) (map[string]float64, error) { return evaluate() },
	})
	if err != nil {
		return nil, err
	}
	if res == nil {
		var eerr error
		if err := torchmods.Try(func() { ts.NoGrad(func() { _, eerr = evaluate() }) }); err != nil {
			return nil, err
		}
		if eerr != nil {
			return nil, eerr
		}
	}
	res.Steps = steps
	fmt.Fprintf(s.W, "answers: loss %.4f, teacher-forced token accuracy %.2f%%", res.AnswerLoss, 100*res.AnswerTokenAcc)
	if c.Eval.Generate {
		fmt.Fprintf(s.W, ", exact match %.2f%% (greedy)", 100*res.ExactMatch)
	}
	fmt.Fprintf(s.W, " over %d examples\n", res.Samples)
	return res, nil
}

// evalFinetune scores the answers teacher-forced, and with generate
// decodes each answer greedily (one example at a time: prompts differ in
// length) and counts those equal to the reference.
func evalFinetune(m *Model, set []Sample, answers [][]int64, batch int, generate bool, eos int64) (*FinetuneResult, error) {
	var sum, hit, n, exact float64
	err := data.Sequential(len(set), batch, func(idx []int) error {
		sc := ts.NewScope()
		defer sc.Close()
		return torchmods.Try(func() {
			ts.NoGrad(func() {
				part := set[idx[0] : idx[len(idx)-1]+1]
				bt := m.NewBatch(part)
				slots, counts := m.Compress(bt.Contexts, false)
				l, h, k := scoreLabels(m.Decode(bt, slots), bt.Labels, bt.B, bt.L)
				sum, hit, n = sum+l, hit+h, n+k
				if !generate {
					return
				}
				offset := int64(0)
				for i, smp := range part {
					ans := answers[idx[0]+i]
					prompt := smp.PromptAnswer[:len(smp.PromptAnswer)-len(ans)-1]
					own := slots.MustNarrow(0, offset, int64(counts[i]), false)
					offset += int64(counts[i])
					prefix := m.Embed(prompt, 1, int64(len(prompt)), own)
					gen := m.GenerateFrom(prefix, torchmods.GenerateOptions{MaxNewTokens: len(ans) + 1, StopTokens: []int64{eos}})
					if slices.Equal(gen[0], ans) {
						exact++
					}
				}
			})
		})
	})
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, fmt.Errorf("evaluation: no answer tokens")
	}
	r := &FinetuneResult{AnswerLoss: sum / n, AnswerTokenAcc: hit / n, Samples: len(set)}
	if generate {
		r.ExactMatch = exact / float64(len(set))
	}
	return r, nil
}
