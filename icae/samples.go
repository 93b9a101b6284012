package icae

import (
	"fmt"
	"math/rand/v2"
	"slices"
)

// IgnoreLabel marks a decoder position that adds no loss (PyTorch's
// ignore_index).
const IgnoreLabel = -100

// The objectives of a sample.
const (
	ObjectiveAE = "ae" // autoencoding: reconstruct the context from its slots
	ObjectiveLM = "lm" // language modelling: continue the context from its slots
	ObjectiveFT = "ft" // fine-tuning: answer a prompt about the context from its slots
)

// Sample is one training example as training_utils.py builds it: the
// encoder's context (input_ids), the decoder's ids with a placeholder
// memory token where each slot goes (prompt_answer_ids), and the labels,
// IgnoreLabel where no loss is taken. Labels align with PromptAnswer; the
// loss shifts them (position i predicts label i+1).
type Sample struct {
	Context      []int64
	PromptAnswer []int64
	Labels       []int64
	Objective    string
}

// Check verifies the invariants every sample must hold: a context, labels
// as long as the decoder ids, one placeholder per slot of the context's
// segments, ids within the layout.
func (s Sample) Check(l Layout, rate int) error {
	if len(s.Context) == 0 {
		return fmt.Errorf("sample: empty context")
	}
	if len(s.Labels) != len(s.PromptAnswer) {
		return fmt.Errorf("sample: %d labels for %d decoder ids", len(s.Labels), len(s.PromptAnswer))
	}
	for _, id := range s.Context {
		if id < 0 || id >= l.Vocab {
			return fmt.Errorf("sample: context token %d outside the vocabulary of %d", id, l.Vocab)
		}
	}
	slots := 0
	for i, id := range s.PromptAnswer {
		if id < 0 || id >= l.Size() {
			return fmt.Errorf("sample: decoder id %d outside [0, %d)", id, l.Size())
		}
		if l.IsSlot(id) {
			slots++
		}
		if lab := s.Labels[i]; lab != IgnoreLabel && (lab < 0 || lab >= l.Vocab) {
			return fmt.Errorf("sample: label %d outside the vocabulary of %d", lab, l.Vocab)
		}
	}
	if want := NumSegments(len(s.Context), int(l.Mem), rate) * int(l.Mem); slots != want {
		return fmt.Errorf("sample: %d slot placeholders for a %d-token context (%d slots)", slots, len(s.Context), want)
	}
	return nil
}

// Extract is text_extraction (v2 training_utils.py): with probability
// 1-lmRatio (random() >= lm_ratio) an AE example, the whole text if it has
// at most length tokens, else a uniform window of length tokens; otherwise
// an LM example, a context a and its continuation b: a random prefix (with
// its remainder) of a short text, or a uniform window of length tokens
// and everything after it. randint's bounds are inclusive, as in Python.
func Extract(ids []int64, length int, lmRatio float64, rng *rand.Rand) (a, b []int64) {
	n := len(ids)
	if n < 1 {
		panic(fmt.Errorf("icae: text_extraction of an empty text"))
	}
	if rng.Float64() >= lmRatio { // ae
		if n <= length {
			return ids, nil
		}
		start := rng.IntN(n - length + 1)
		return ids[start : start+length], nil
	}
	if n <= length { // lm
		r := rng.IntN(n)
		return ids[:r+1], ids[r+1:]
	}
	start := rng.IntN(n - length + 1)
	return ids[start : start+length], ids[start+length:]
}

// PretrainOptions are pretrain_tokenize_function's settings.
type PretrainOptions struct {
	MaxLen         int     // model_max_length: the extraction window, and the cap on an LM continuation
	LMRatio        float64 // lm_ratio
	MinTokensForLM int     // min_tokens_for_lm: an LM example needs a longer continuation, else it is AE
	LeaveTokens    int     // leave_tokens_for_lm: continuation tokens without loss
	LMSpecialToken bool    // add_special_token_for_lm: [LM] after the slots
	Compression    int     // mean_compression_rate
	EOS            int64
}

// PretrainSample is pretrain_tokenize_function for one text:
//
//	a, b = text_extraction(text)
//	LM if len(b) > min_tokens_for_lm (b cut to max_len), else AE on a
//	AE: prompt [m]·k [AE],        answer a [EOS], loss on the answer
//	LM: prompt [m]·k ([LM]),      answer b,       no loss on its first leave_tokens_for_lm
//
// where k = segments(a)·mem placeholders. An LM draw whose continuation is
// too short falls back to AE on its prefix a, as the code does.
func PretrainSample(ids []int64, o PretrainOptions, l Layout, rng *rand.Rand) Sample {
	a, b := Extract(ids, o.MaxLen, o.LMRatio, rng)
	k := NumSegments(len(a), int(l.Mem), o.Compression) * int(l.Mem)
	prompt := slices.Repeat([]int64{l.MemID(0)}, k)
	if len(b) <= o.MinTokensForLM {
		prompt = append(prompt, l.AE())
		answer := append(slices.Clone(a), o.EOS)
		return Sample{Context: slices.Clone(a), PromptAnswer: append(prompt, answer...),
			Labels: append(ignored(len(prompt)), answer...), Objective: ObjectiveAE}
	}
	b = b[:min(len(b), o.MaxLen)]
	if o.LMSpecialToken {
		prompt = append(prompt, l.LM())
	}
	labels := append(ignored(len(prompt)+o.LeaveTokens), b[o.LeaveTokens:]...)
	return Sample{Context: slices.Clone(a), PromptAnswer: append(prompt, b...), Labels: labels, Objective: ObjectiveLM}
}

// FinetuneOptions are instruct_ft_tokenize_function's settings.
type FinetuneOptions struct {
	// Format is "v2" (Prefix [m]·k [FT] prompt Suffix, then answer [EOS]:
	// v2's instruction format around the slots) or "v1" ([m]·k [FT] prompt
	// [FT], then answer [EOS], the format of v1's inference code).
	Format         string
	Prefix, Suffix []int64 // v2 only: Mistral's "<s>[INST]" and "[/INST]" ids in the official code
	MaxContext     int     // the context is cut to this many tokens (v2: 5120)
	Compression    int
	EOS            int64
}

// FinetuneSample is instruct_ft_tokenize_function for one (context,
// prompt, answer) triple of PwC: the loss is on the answer and its EOS
// only.
func FinetuneSample(context, prompt, answer []int64, o FinetuneOptions, l Layout) Sample {
	if len(context) > o.MaxContext {
		context = context[:o.MaxContext]
	}
	k := NumSegments(len(context), int(l.Mem), o.Compression) * int(l.Mem)
	var p []int64
	if o.Format == "v1" {
		p = append(slices.Repeat([]int64{l.MemID(0)}, k), l.FT())
		p = append(append(p, prompt...), l.FT())
	} else {
		p = append(slices.Clone(o.Prefix), slices.Repeat([]int64{l.MemID(0)}, k)...)
		p = append(append(append(p, l.FT()), prompt...), o.Suffix...)
	}
	ans := append(slices.Clone(answer), o.EOS)
	return Sample{Context: slices.Clone(context), PromptAnswer: append(p, ans...), Labels: append(ignored(len(p)), ans...), Objective: ObjectiveFT}
}

func ignored(n int) []int64 { return slices.Repeat([]int64{IgnoreLabel}, n) }
