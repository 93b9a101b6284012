package icae

import (
	"fmt"
	"slices"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/torchmods"
)

// Options configure the ICAE module around its frozen LLM.
type Options struct {
	MemSize     int64 // fixed_mem_size: slots per segment
	Compression int64 // mean_compression_rate: a segment holds at most MemSize·Compression tokens
	// LoRA on the encoder's projections (PEFT's LoraConfig: r, lora_alpha,
	// lora_dropout, target_modules). Targets nil or empty means no LoRA at
	// all: the encoder is the frozen LLM and only the memory embeddings
	// train (the ablation).
	Rank    int64
	Alpha   float64
	Dropout float64
	Targets []string
	// MemoryInitStd is the standard deviation of the memory table's
	// normal initialisation; 1 is nn.Embedding's default, which the
	// official module keeps.
	MemoryInitStd float64
}

// Projections are the attention projections LoRA may target.
var Projections = []string{"q_proj", "k_proj", "v_proj", "o_proj"}

// Model is the In-context Autoencoder: a frozen Llama-family LLM used
// twice, as the encoder (with LoRA) and as the decoder (without), and a
// memory table. Only Memory and the LoRA matrices are parameters of the
// store it was built in; the LLM lives in its own store, frozen.
type Model struct {
	LM     *torchmods.LlamaForCausalLM
	Layout Layout
	Opt    Options
	// Memory is memory_token_embed.weight [MemSize+3, hidden], float32:
	// the memory tokens' embeddings, then [AE], [LM], [FT].
	Memory *ts.Tensor
	// LoRA holds, per layer, the adapters by projection name. Each
	// LoRALinear's Base is the LLM's own projection (not copied); A and B
	// are parameters of the ICAE store.
	LoRA []map[string]*torchmods.LoRALinear
}

// loraPrefix is where the adapters are named, as the official ICAE
// module's state_dict names them under PEFT (self.icae =
// get_peft_model(...)): icae.base_model.model.model.layers.N.self_attn.
// q_proj.lora_A.default.weight.
const loraPrefix = "icae.base_model.model"

// NewModel registers the memory table and the adapters under p (the
// ICAE store's root) around lm, whose parameters it freezes. The LLM's
// weights are never copied. Invalid options panic with an error (callers
// validate configs first).
func NewModel(p torchmods.Path, lm *torchmods.LlamaForCausalLM, o Options) *Model {
	if o.MemSize < 1 || o.Compression < 1 {
		panic(fmt.Errorf("icae: memory size %d and compression %d must be positive", o.MemSize, o.Compression))
	}
	if len(o.Targets) > 0 && (o.Rank < 1 || !(o.Alpha > 0) || o.Dropout < 0 || o.Dropout >= 1) {
		panic(fmt.Errorf("icae: LoRA rank %d, alpha %v, dropout %v: want rank and alpha positive, dropout in [0, 1)", o.Rank, o.Alpha, o.Dropout))
	}
	freeze(lm)
	c := lm.Cfg
	m := &Model{LM: lm, Layout: Layout{Vocab: c.VocabSize, Mem: o.MemSize}, Opt: o}
	m.Memory = p.Sub("memory_token_embed").New("weight", []int64{o.MemSize + 3, c.HiddenSize}, torchmods.Normal(o.MemoryInitStd), false)
	for i, layer := range lm.Layers {
		adapters := map[string]*torchmods.LoRALinear{}
		for _, name := range o.Targets {
			base := projection(layer.Attn, name)
			if base == nil {
				panic(fmt.Errorf("icae: LoRA target %q is not one of %v", name, Projections))
			}
			lp := p.Sub(fmt.Sprintf("%s.model.layers.%d.self_attn.%s", loraPrefix, i, name))
			adapters[name] = &torchmods.LoRALinear{
				Base:  base,
				A:     lp.Sub("lora_A.default").New("weight", []int64{o.Rank, base.In}, torchmods.FanInUniform(base.In), false),
				B:     lp.Sub("lora_B.default").New("weight", []int64{base.Out, o.Rank}, torchmods.Const(0), false),
				Rank:  o.Rank,
				Alpha: o.Alpha,
				Drop:  o.Dropout,
			}
		}
		m.LoRA = append(m.LoRA, adapters)
	}
	return m
}

// freeze stops every parameter of the LLM from training.
func freeze(lm *torchmods.LlamaForCausalLM) {
	var ps []*ts.Tensor
	ps = append(ps, lm.Embed.Weight, lm.Norm.Weight)
	if lm.LMHead != nil {
		ps = append(ps, lm.LMHead.Weight)
	}
	for _, l := range lm.Layers {
		for _, lin := range []*torchmods.Linear{l.Attn.Q, l.Attn.K, l.Attn.V, l.Attn.O, l.MLP.Gate, l.MLP.Up, l.MLP.Down} {
			ps = append(ps, lin.Weight)
			if lin.Bias != nil {
				ps = append(ps, lin.Bias)
			}
		}
		ps = append(ps, l.InputNorm.Weight, l.PostAttentionNorm.Weight)
	}
	for _, t := range ps {
		t.MustRequiresGrad_(false)
	}
}

func projection(a *torchmods.LlamaAttention, name string) *torchmods.Linear {
	switch name {
	case "q_proj":
		return a.Q
	case "k_proj":
		return a.K
	case "v_proj":
		return a.V
	case "o_proj":
		return a.O
	}
	return nil
}

// HasLoRA says whether the encoder has adapters.
func (m *Model) HasLoRA() bool { return len(m.Opt.Targets) > 0 }

// SlotCount is the number of slots a context of n tokens compresses to.
func (m *Model) SlotCount(n int) int {
	return NumSegments(n, int(m.Opt.MemSize), int(m.Opt.Compression)) * int(m.Opt.MemSize)
}

// padID is the token that fills padded positions: pad_token_id, else the
// first EOS, else 0. Padded positions are masked (encoder) or after every
// real position with no loss (decoder), so which token it is changes
// nothing.
func (m *Model) padID() int64 {
	c := m.LM.Cfg
	if c.PadTokenID >= 0 {
		return c.PadTokenID
	}
	if len(c.EOSTokenIDs) > 0 {
		return c.EOSTokenIDs[0]
	}
	return 0
}

// Embed builds input embeddings [B, L, hidden] in the LLM's compute dtype
// for ids [B, L] (row-major) laid out as m.Layout says. LLM tokens come
// from embed_tokens and extra tokens from the memory table, except that
// when slots [S, hidden] are given (a decoder input), memory-token ids are
// placeholders that take the slots in row-major order, as
// modeling_icae_multi_span.py's prompt_answer_embs[mem_flag] =
// compress_outputs does. The number of placeholders must be S.
func (m *Model) Embed(ids []int64, b, l int64, slots *ts.Tensor) *ts.Tensor {
	if int64(len(ids)) != b*l {
		panic(fmt.Errorf("icae: %d ids for a [%d, %d] input", len(ids), b, l))
	}
	lay := m.Layout
	tok := make([]int64, len(ids))
	row := make([]int64, len(ids))
	isExtra := make([]bool, len(ids))
	isSlot := make([]bool, len(ids))
	slotIdx := make([]int64, len(ids))
	n := int64(0)
	for i, id := range ids {
		switch {
		case id < 0 || id >= lay.Size():
			panic(fmt.Errorf("icae: id %d outside [0, %d) (vocabulary %d and %d extra tokens)", id, lay.Size(), lay.Vocab, lay.Mem+3))
		case slots != nil && lay.IsSlot(id):
			isSlot[i], slotIdx[i] = true, n
			n++
		case lay.IsExtra(id):
			isExtra[i], row[i] = true, id-lay.Vocab
		default:
			tok[i] = id
		}
	}
	dev := m.Memory.MustDevice()
	dt := m.LM.ComputeDType()
	shape := []int64{b, l}
	x := m.LM.Embed.Forward(torchmods.FromSlice(tok, shape, dev))
	if x.DType() != dt {
		x = x.MustTotype(dt, true)
	}
	mem := m.Memory.MustTotype(dt, false).MustIndexSelect(0, torchmods.FromSlice(row, []int64{b * l}, dev), true).MustView([]int64{b, l, -1}, true)
	x = mem.MustWhereSelf(mask(isExtra, shape, dev), x, true)
	if slots == nil {
		return x
	}
	if s := slots.MustSize(); len(s) != 2 || s[0] != n {
		panic(fmt.Errorf("icae: %d slot placeholders in the decoder ids, slots of shape %v", n, s))
	}
	sl := slots.MustTotype(dt, false).MustIndexSelect(0, torchmods.FromSlice(slotIdx, []int64{b * l}, dev), true).MustView([]int64{b, l, -1}, true)
	return sl.MustWhereSelf(mask(isSlot, shape, dev), x, true)
}

// mask is a boolean [B, L, 1] tensor from host flags.
func mask(flags []bool, shape []int64, dev gotch.Device) *ts.Tensor {
	v := make([]int64, len(flags))
	for i, f := range flags {
		if f {
			v[i] = 1
		}
	}
	return torchmods.FromSlice(v, shape, dev).MustGe(ts.IntScalar(1), true).MustUnsqueeze(-1, true)
}

// Compress is the encoder (forward's encoder part, and _compress): each
// context is cut into Segments, each segment followed by the memory
// tokens is one encoder row run with LoRA on, and the segment's slots are
// the row's final hidden states (after the last RMSNorm,
// hidden_states[-1]) at the memory positions. Rows are left-padded to the
// longest with an attention mask, so a row computes what it would alone.
// It returns the slots of every context, context by context and segment
// by segment, [Σ segments·MemSize, hidden], and each context's slot count.
func (m *Model) Compress(contexts [][]int64, train bool) (*ts.Tensor, []int) {
	mem := m.Opt.MemSize
	var rows [][]int64
	counts := make([]int, len(contexts))
	for c, ctx := range contexts {
		for _, sp := range Segments(len(ctx), int(mem), int(m.Opt.Compression)) {
			rows = append(rows, ctx[sp[0]:sp[1]])
		}
		counts[c] = m.SlotCount(len(ctx))
	}
	width := 0
	for _, r := range rows {
		width = max(width, len(r))
	}
	t := int64(width) + mem
	ids := make([]int64, 0, int64(len(rows))*t)
	att := make([]int64, 0, cap(ids))
	padded := false
	for _, r := range rows {
		for range width - len(r) {
			ids, att = append(ids, m.padID()), append(att, 0)
			padded = true
		}
		ids = append(ids, r...)
		for range r {
			att = append(att, 1)
		}
		for j := range mem {
			ids, att = append(ids, m.Layout.MemID(j)), append(att, 1)
		}
	}
	b := int64(len(rows))
	x := m.Embed(ids, b, t, nil)
	var am *ts.Tensor
	if padded {
		am = torchmods.FromSlice(att, []int64{b, t}, x.MustDevice())
	}
	h := m.Hidden(x, am, true, train)
	return h.MustNarrow(1, t-mem, mem, true).MustReshape([]int64{b * mem, -1}, true), counts
}

// Batch is a batch of samples as tensors-to-be: the decoder ids and labels
// right-padded to the longest (padding adds no loss, and a causal decoder
// never lets a real position see the padding after it).
type Batch struct {
	Contexts [][]int64
	IDs      []int64 // [B, L] row-major
	Labels   []int64 // [B, L], IgnoreLabel at padding
	B, L     int64
}

// NewBatch lays samples out for Loss.
func (m *Model) NewBatch(samples []Sample) Batch {
	var bt Batch
	for _, s := range samples {
		bt.L = max(bt.L, int64(len(s.PromptAnswer)))
		bt.Contexts = append(bt.Contexts, s.Context)
	}
	bt.B = int64(len(samples))
	for _, s := range samples {
		pad := int(bt.L) - len(s.PromptAnswer)
		bt.IDs = append(append(bt.IDs, s.PromptAnswer...), slices.Repeat([]int64{m.padID()}, pad)...)
		bt.Labels = append(append(bt.Labels, s.Labels...), ignored(pad)...)
	}
	return bt
}

// Decode runs the decoder, the frozen LLM with LoRA off and in eval mode
// (the official freezes it and calls .eval()), on the batch's ids with
// slots [S, hidden] at the placeholders: logits [B, L, vocab].
func (m *Model) Decode(bt Batch, slots *ts.Tensor) *ts.Tensor {
	x := m.Embed(bt.IDs, bt.B, bt.L, slots)
	return m.LM.Logits(m.Hidden(x, nil, false, false))
}

// Loss is forward's loss: the batch's contexts compressed, then the
// token-mean cross-entropy of the decoder's logits against the labels one
// position later, over every labelled token of the batch.
func (m *Model) Loss(bt Batch, train bool) *ts.Tensor {
	slots, _ := m.Compress(bt.Contexts, train)
	return m.DecodeLoss(bt, slots)
}

// DecodeLoss is Loss's decoder half, for given slots.
func (m *Model) DecodeLoss(bt Batch, slots *ts.Tensor) *ts.Tensor {
	return torchmods.LlamaLoss(m.Decode(bt, slots), torchmods.FromSlice(bt.Labels, []int64{bt.B, bt.L}, m.Memory.MustDevice()))
}
