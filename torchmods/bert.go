package torchmods

import (
	"fmt"
	"sort"
	"strings"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// BertConfig is HF's BertConfig (config.json), the fields BERT uses.
type BertConfig struct {
	VocabSize             int64   `json:"vocab_size" toml:"vocab_size"`
	HiddenSize            int64   `json:"hidden_size" toml:"hidden_size"`
	NumHiddenLayers       int64   `json:"num_hidden_layers" toml:"num_hidden_layers"`
	NumAttentionHeads     int64   `json:"num_attention_heads" toml:"num_attention_heads"`
	IntermediateSize      int64   `json:"intermediate_size" toml:"intermediate_size"`
	HiddenAct             string  `json:"hidden_act" toml:"hidden_act"`
	HiddenDropout         float64 `json:"hidden_dropout_prob" toml:"hidden_dropout_prob"`
	AttentionDropout      float64 `json:"attention_probs_dropout_prob" toml:"attention_probs_dropout_prob"`
	MaxPositionEmbeddings int64   `json:"max_position_embeddings" toml:"max_position_embeddings"`
	TypeVocabSize         int64   `json:"type_vocab_size" toml:"type_vocab_size"`
	LayerNormEps          float64 `json:"layer_norm_eps" toml:"layer_norm_eps"`
	InitializerRange      float64 `json:"initializer_range" toml:"initializer_range"`
	PadTokenID            int64   `json:"pad_token_id" toml:"pad_token_id"`
	// RelPosBins > 0 adds UniLMv2's learned relative position bias
	// (bert.rel_pos_bias.weight): the key-minus-query position difference
	// falls into one of RelPosBins buckets, logarithmic beyond a short exact
	// range and saturating at MaxRelPos (RelativePositionBucket), and each
	// bucket has a bias per head. The names are s2s-ft's config keys.
	RelPosBins int64 `json:"rel_pos_bins,omitempty" toml:"rel_pos_bins,omitempty"`
	MaxRelPos  int64 `json:"max_rel_pos,omitempty" toml:"max_rel_pos,omitempty"`
	// CrossAttention adds a cross-attention block (crossattention.self.
	// {query,key,value}, crossattention.output.{dense,LayerNorm}) between
	// the self-attention and the feed-forward of every layer from
	// FusionLayer on, attending to BertInput.Context. HF's
	// add_cross_attention is FusionLayer 0; ALBEF's xbert (and so MUMC,
	// BLIP) reads fusion_layer: layers below it form the text encoder,
	// those from it on the multimodal encoder. EncoderWidth is the
	// context's width (encoder_width); 0 means hidden_size.
	CrossAttention bool  `json:"add_cross_attention,omitempty" toml:"add_cross_attention,omitempty"`
	FusionLayer    int64 `json:"fusion_layer,omitempty" toml:"fusion_layer,omitempty"`
	EncoderWidth   int64 `json:"encoder_width,omitempty" toml:"encoder_width,omitempty"`
	// Pruned, if set, is the shape of a model whose heads and
	// feed-forward neurons were removed (cap's structured pruning), read
	// from and written to config.json; nil for a full model. A pointer so
	// that BertConfig stays comparable.
	Pruned *BertPruned `json:"-" toml:"-"`
}

// BertPruned is what was removed from a BERT: per layer, the heads (HF's
// pruned_heads, by their index in the unpruned layer, so that HF's
// from_pretrained rebuilds the same shapes) and the feed-forward width
// that is left (intermediate_sizes, repro's own key: HF has no pruning of
// feed-forward neurons, so a model with narrower feed-forwards loads in
// repro only). A layer may lose all its heads or all its neurons: what is
// left of that block is its output bias.
type BertPruned struct {
	Heads        map[int][]int64 // layer -> pruned head indices
	Intermediate []int64         // per layer; empty: intermediate_size everywhere
}

// HasCross says whether layer i has a cross-attention block.
func (c BertConfig) HasCross(i int) bool { return c.CrossAttention && int64(i) >= c.FusionLayer }

// ContextWidth is the width of what the cross-attention reads: encoder_width, or hidden_size.
func (c BertConfig) ContextWidth() int64 {
	if c.EncoderWidth > 0 {
		return c.EncoderWidth
	}
	return c.HiddenSize
}

// LayerHeads is layer i's number of heads.
func (c BertConfig) LayerHeads(i int) int64 {
	if c.Pruned == nil {
		return c.NumAttentionHeads
	}
	return c.NumAttentionHeads - int64(len(c.Pruned.Heads[i]))
}

// LayerIntermediate is layer i's feed-forward width.
func (c BertConfig) LayerIntermediate(i int) int64 {
	if c.Pruned == nil || len(c.Pruned.Intermediate) == 0 {
		return c.IntermediateSize
	}
	return c.Pruned.Intermediate[i]
}

// prunedErr checks the pruned shape fits the model: known layers, head
// indices in range and distinct, feed-forward widths between 0 and
// intermediate_size.
func (c BertConfig) prunedErr() error {
	if c.Pruned == nil {
		return nil
	}
	if c.RelPosBins > 0 {
		return fmt.Errorf("bert: pruned shapes with a relative position bias (rel_pos_bins) are not implemented: the bias is shared by all layers, the heads are not")
	}
	if c.CrossAttention {
		return fmt.Errorf("bert: pruned shapes with cross-attention layers are not implemented")
	}
	for l, heads := range c.Pruned.Heads {
		if l < 0 || int64(l) >= c.NumHiddenLayers {
			return fmt.Errorf("bert: pruned_heads names layer %d of %d", l, c.NumHiddenLayers)
		}
		seen := map[int64]bool{}
		for _, h := range heads {
			if h < 0 || h >= c.NumAttentionHeads || seen[h] {
				return fmt.Errorf("bert: pruned_heads of layer %d: %v: indices must be distinct and in [0, %d)", l, heads, c.NumAttentionHeads)
			}
			seen[h] = true
		}
	}
	if n := len(c.Pruned.Intermediate); n > 0 {
		if int64(n) != c.NumHiddenLayers {
			return fmt.Errorf("bert: intermediate_sizes has %d entries for %d layers", n, c.NumHiddenLayers)
		}
		for l, w := range c.Pruned.Intermediate {
			if w < 0 || w > c.IntermediateSize {
				return fmt.Errorf("bert: intermediate_sizes[%d] = %d, outside [0, intermediate_size %d]", l, w, c.IntermediateSize)
			}
		}
	}
	return nil
}

// BertBase is bert-base-uncased's configuration.
func BertBase() BertConfig {
	return BertConfig{VocabSize: 30522, HiddenSize: 768, NumHiddenLayers: 12, NumAttentionHeads: 12, IntermediateSize: 3072,
		HiddenAct: "gelu", HiddenDropout: 0.1, AttentionDropout: 0.1, MaxPositionEmbeddings: 512, TypeVocabSize: 2,
		LayerNormEps: 1e-12, InitializerRange: 0.02}
}

// BertLarge is bert-large-uncased's configuration.
func BertLarge() BertConfig {
	c := BertBase()
	c.HiddenSize, c.NumHiddenLayers, c.NumAttentionHeads, c.IntermediateSize = 1024, 24, 16, 4096
	return c
}

// ReadBertConfig reads a HF config.json (4.x or 5.x spelling); keys it
// lacks take HF's defaults (BertConfigFromHF).
func ReadBertConfig(path string) (BertConfig, error) {
	c, err := ReadHFConfig(path)
	if err != nil {
		return BertBase(), err
	}
	return BertConfigFromHF(c)
}

// Validate checks the sizes fit together.
func (c BertConfig) Validate() error {
	switch {
	case c.VocabSize <= 0 || c.HiddenSize <= 0 || c.NumHiddenLayers <= 0 || c.IntermediateSize <= 0 || c.MaxPositionEmbeddings <= 0 || c.TypeVocabSize <= 0:
		return fmt.Errorf("bert: vocab_size, hidden_size, num_hidden_layers, intermediate_size, max_position_embeddings and type_vocab_size must be positive")
	case c.NumAttentionHeads <= 0 || c.HiddenSize%c.NumAttentionHeads != 0:
		return fmt.Errorf("bert: hidden_size %d is not a multiple of num_attention_heads %d", c.HiddenSize, c.NumAttentionHeads)
	case c.HiddenAct != "gelu" && c.HiddenAct != "gelu_new" && c.HiddenAct != "gelu_pytorch_tanh" && c.HiddenAct != "relu":
		return fmt.Errorf("bert: hidden_act %q is not supported (gelu, gelu_new, gelu_pytorch_tanh, relu)", c.HiddenAct)
	case c.CrossAttention && (c.FusionLayer < 0 || c.FusionLayer > c.NumHiddenLayers):
		return fmt.Errorf("bert: fusion_layer %d outside [0, num_hidden_layers %d]", c.FusionLayer, c.NumHiddenLayers)
	case c.EncoderWidth < 0:
		return fmt.Errorf("bert: encoder_width %d is negative", c.EncoderWidth)
	}
	if err := c.prunedErr(); err != nil {
		return err
	}
	return c.relPosErr()
}

func (c BertConfig) relPosErr() error {
	switch {
	case c.RelPosBins < 0 || c.RelPosBins > 0 && c.RelPosBins < 4:
		return fmt.Errorf("bert: rel_pos_bins %d: 0 (no relative position bias) or at least 4", c.RelPosBins)
	case c.RelPosBins > 0 && c.MaxRelPos <= c.RelPosBins/4:
		// The logarithmic buckets divide by log(max_rel_pos / exact range).
		return fmt.Errorf("bert: max_rel_pos %d must exceed the exact range of the buckets, rel_pos_bins/4 = %d", c.MaxRelPos, c.RelPosBins/4)
	}
	return nil
}

// Activation is hidden_act as an Activation.
func (c BertConfig) Activation() Activation { return c.act() }

func (c BertConfig) act() Activation {
	switch c.HiddenAct {
	case "gelu_new", "gelu_pytorch_tanh": // the same tanh approximation, in Python and in C++
		return GELUTanh
	case "relu":
		return ReLU
	}
	return GELU
}

// BertLayer is HF's BertLayer: post-norm self-attention (attention.self.
// {query,key,value}, attention.output.dense and LayerNorm), optionally
// cross-attention (crossattention.*, the same layout, keys and values
// read from the context), and feed-forward (intermediate.dense,
// output.dense and LayerNorm).
type BertLayer struct {
	Attn                 *Attention
	AttnNorm, OutNorm    *LayerNorm
	Cross                *Attention // nil in a layer without cross-attention
	CrossNorm            *LayerNorm
	Intermediate, Output *Linear
	Act                  Activation
	// HiddenDrop is the dropout of hidden_dropout_prob; the attention's
	// (attention_probs_dropout_prob) is Attn.Opt.Dropout.
	HiddenDrop float64
	// FFNBias is output.dense.bias of a layer pruned to no feed-forward
	// neuron (Intermediate and Output nil): all that is left of its
	// feed-forward is that bias. AttnBias likewise is
	// attention.output.dense.bias of a layer pruned to no head (Attn nil).
	FFNBias, AttnBias *ts.Tensor
}

// Bert is HF's BertModel (bert.*): embeddings, encoder and an optional pooler.
type Bert struct {
	Word, Position, TokenType *Embedding
	EmbNorm                   *LayerNorm
	Layers                    []*BertLayer
	Pooler                    *Linear // nil without pooling
	// RelPosBias is rel_pos_bias.weight [heads, rel_pos_bins], nil when
	// Cfg.RelPosBins is 0. It is a Linear, as UniLMv2's bias-free
	// nn.Linear, for its name, layout and initialisation; ForwardInput
	// looks the buckets up in its transpose, which equals the official
	// product with one-hot buckets without the [B, L, L, bins] tensor.
	RelPosBias *Linear
	Cfg        BertConfig
}

// NewBert registers a BertModel under p (p = root.Sub("bert") for HF's
// names), initialised as HF does: N(0, initializer_range²) weights, zero
// biases, LayerNorms 1 and 0.
func NewBert(p Path, c BertConfig, pooler bool) *Bert {
	if c.LayerNormEps == 0 {
		c.LayerNormEps = 1e-12
	}
	if c.InitializerRange == 0 {
		c.InitializerRange = 0.02
	}
	if err := c.relPosErr(); err != nil {
		panic(err)
	}
	if err := c.prunedErr(); err != nil {
		panic(err)
	}
	b := &Bert{Cfg: c}
	e := p.Sub("embeddings")
	b.Word = NewEmbedding(e.Sub("word_embeddings"), EmbeddingOptions{Num: c.VocabSize, Dim: c.HiddenSize})
	if c.PadTokenID < 0 || c.PadTokenID >= c.VocabSize {
		panic(fmt.Errorf("bert: pad_token_id %d outside the vocabulary of %d", c.PadTokenID, c.VocabSize))
	}
	b.Word.PaddingIdx = c.PadTokenID
	b.Position = NewEmbedding(e.Sub("position_embeddings"), EmbeddingOptions{Num: c.MaxPositionEmbeddings, Dim: c.HiddenSize})
	b.TokenType = NewEmbedding(e.Sub("token_type_embeddings"), EmbeddingOptions{Num: c.TypeVocabSize, Dim: c.HiddenSize})
	b.EmbNorm = NewLayerNorm(e.Sub("LayerNorm"), NormOptions{Dim: c.HiddenSize, Eps: c.LayerNormEps})
	var linears []*Linear
	for i := range c.NumHiddenLayers {
		l := p.Sub(fmt.Sprintf("encoder.layer.%d", i))
		layer := &BertLayer{
			AttnNorm: NewLayerNorm(l.Sub("attention.output.LayerNorm"), NormOptions{Dim: c.HiddenSize, Eps: c.LayerNormEps}),
			Act:      c.act(), HiddenDrop: c.HiddenDropout,
		}
		if heads := c.LayerHeads(int(i)); heads > 0 {
			layer.Attn = NewAttention(l.Sub("attention"), AttentionOptions{Dim: c.HiddenSize, Heads: heads, HeadDim: c.HiddenSize / c.NumAttentionHeads,
				Bias: true, Names: AttentionNames{Q: "self.query", K: "self.key", V: "self.value", Out: "output.dense"}, Dropout: c.AttentionDropout})
			linears = append(linears, layer.Attn.Q, layer.Attn.K, layer.Attn.V, layer.Attn.Out)
		} else {
			layer.AttnBias = l.Sub("attention.output.dense").New("bias", []int64{c.HiddenSize}, Const(0), true)
		}
		if c.HasCross(int(i)) {
			layer.Cross = NewAttention(l.Sub("crossattention"), AttentionOptions{Dim: c.HiddenSize, Heads: c.NumAttentionHeads, ContextDim: c.ContextWidth(),
				Bias: true, Names: AttentionNames{Q: "self.query", K: "self.key", V: "self.value", Out: "output.dense"}, Dropout: c.AttentionDropout})
			layer.CrossNorm = NewLayerNorm(l.Sub("crossattention.output.LayerNorm"), NormOptions{Dim: c.HiddenSize, Eps: c.LayerNormEps})
			linears = append(linears, layer.Cross.Q, layer.Cross.K, layer.Cross.V, layer.Cross.Out)
		}
		if inter := c.LayerIntermediate(int(i)); inter > 0 {
			layer.Intermediate = NewLinear(l.Sub("intermediate.dense"), LinearOptions{In: c.HiddenSize, Out: inter})
			layer.Output = NewLinear(l.Sub("output.dense"), LinearOptions{In: inter, Out: c.HiddenSize})
			linears = append(linears, layer.Intermediate, layer.Output)
		} else {
			layer.FFNBias = l.Sub("output.dense").New("bias", []int64{c.HiddenSize}, Const(0), true)
		}
		layer.OutNorm = NewLayerNorm(l.Sub("output.LayerNorm"), NormOptions{Dim: c.HiddenSize, Eps: c.LayerNormEps})
		b.Layers = append(b.Layers, layer)
	}
	if pooler {
		b.Pooler = NewLinear(p.Sub("pooler.dense"), LinearOptions{In: c.HiddenSize, Out: c.HiddenSize})
		linears = append(linears, b.Pooler)
	}
	if c.RelPosBins > 0 {
		// Last, so that the other parameters draw the same initial values
		// as in a model without it.
		b.RelPosBias = NewLinear(p.Sub("rel_pos_bias"), LinearOptions{In: c.RelPosBins, Out: c.NumAttentionHeads, NoBias: true})
		linears = append(linears, b.RelPosBias)
	}
	BertInit(c.InitializerRange, []*Embedding{b.Word, b.Position, b.TokenType}, linears...)
	return b
}

// BertInit is HF's _init_weights for BERT: Linear and Embedding weights
// N(0, std²), Linear biases zero (LayerNorms are already 1 and 0).
func BertInit(std float64, embeddings []*Embedding, linears ...*Linear) {
	ts.NoGrad(func() {
		for _, e := range embeddings {
			e.Weight.Copy_(Normal(std)(e.Weight.MustSize(), e.Weight.MustDevice()))
			if e.PaddingIdx >= 0 {
				e.Weight.MustSelect(0, e.PaddingIdx, false).MustZero_()
			}
		}
		for _, l := range linears {
			l.Weight.Copy_(Normal(std)(l.Weight.MustSize(), l.Weight.MustDevice()))
			if l.Bias != nil {
				l.Bias.MustZero_()
			}
		}
	})
}

// Forward runs the encoder on ids [B, L] with typeIDs (nil for zeros) and
// mask (nil for none; else [B, L], nonzero = a real token, as HF's
// attention_mask) and returns the hidden states [B, L, H].
func (b *Bert) Forward(ids, typeIDs, mask *ts.Tensor, train bool) *ts.Tensor {
	return b.ForwardInput(BertInput{IDs: ids, TypeIDs: typeIDs, Mask: mask}, train)
}

// BertInput is what ForwardInput takes beyond Forward's ids, types and
// padding mask: the explicit positions and per-example attention patterns
// of UniLM's sequence-to-sequence and pseudo-masked inputs, where target
// and [MASK] tokens share positions and each token sees only part of the
// sequence.
type BertInput struct {
	IDs     *ts.Tensor // [B, L] token ids
	TypeIDs *ts.Tensor // [B, L]; nil for zeros
	// Positions are int64 [B, L] (or [1, L]) position ids, in
	// [0, max_position_embeddings); nil for 0..L-1. The relative position
	// bias, if any, is computed from them too.
	Positions *ts.Tensor
	// Mask is nil (attend everywhere); [B, L], nonzero = a real token
	// (HF's attention_mask: keys that are zero are not attended); or
	// [B, L, L] (or [1, L, L]), nonzero at (i, j) = query i may attend key
	// j (UniLM's convention). A 3-D mask is applied as UniLM does, adding
	// -10000 to the scores of forbidden keys, so that a row that allows no
	// key averages over all of them instead of making NaNs.
	Mask *ts.Tensor
	// HeadMask [layers, heads] and FFNMask [layers, intermediate_size],
	// if set, multiply each head's output and each feed-forward neuron's
	// activation (HF's head_mask; CAP's intermediate_mask, applied after
	// the activation): 1 keeps, 0 removes. Pruning reads their gradients
	// as importance. Only for a model without pruned shapes.
	HeadMask, FFNMask *ts.Tensor
	// Embeds [B, L, H], if set, replaces the embedding layer: the layers
	// run on these hidden states (ALBEF's encoder_embeds, which feeds the
	// text encoder's output to the fusion layers). IDs may then be nil;
	// TypeIDs and Positions are not used.
	Embeds *ts.Tensor
	// Context [B, S, encoder_width] is what the cross-attention layers
	// attend to (the image tokens); ContextMask [B, S], nonzero = attend,
	// nil for all. A layer with cross-attention refuses to run without it.
	Context, ContextMask *ts.Tensor
	// Causal lets each token attend only to itself and earlier tokens
	// (ALBEF's is_decoder=True at call time, the answer decoder), on top
	// of Mask, which must then be nil or [B, L].
	Causal bool
	// From and To select the layers [From, To) to run; To 0 means all.
	// ALBEF's modes: "text" is [0, fusion_layer), "fusion" is
	// [fusion_layer, layers) on Embeds, "multi_modal" is all.
	From, To int
}

// ForwardInput runs the encoder and returns the hidden states [B, L, H].
func (b *Bert) ForwardInput(in BertInput, train bool) *ts.Tensor {
	from, to := b.layerRange(in)
	var x *ts.Tensor
	var s []int64
	if in.Embeds != nil {
		if es := in.Embeds.MustSize(); len(es) != 3 || es[2] != b.Cfg.HiddenSize {
			panic(fmt.Errorf("bert: input embeddings of shape %v, want [batch, length, hidden_size %d]", es, b.Cfg.HiddenSize))
		}
		x, s = in.Embeds, in.Embeds.MustSize()[:2]
	} else {
		x, s = b.embed(in, train)
	}
	mask := attentionMask(in.Mask, s, x.DType())
	if in.Causal {
		mask = causalMask(in.Mask, s, x.MustDevice())
	}
	var bias *ts.Tensor // [B or 1, heads, L, L]
	if b.RelPosBias != nil {
		if in.Embeds != nil {
			panic(fmt.Errorf("bert: input embeddings with a relative position bias: the bias needs the positions"))
		}
		pos := in.Positions
		if pos == nil {
			pos = ts.MustArange(ts.IntScalar(s[1]), gotch.Int64, x.MustDevice()).MustUnsqueeze(0, true)
		}
		v := ts.MustEmbedding(b.RelPosBias.Weight.MustT(false), b.relPosBuckets(pos), -1, false, false) // [B, L, L, heads]
		bias = v.MustPermute([]int64{0, 3, 1, 2}, true)
	}
	cross := b.crossInputs(in, s, from, to)
	b.checkLayerMasks(in.HeadMask, in.FFNMask)
	for i := from; i < to; i++ {
		x = b.layer(i, b.Layers[i], x, mask, bias, cross, in, train)
	}
	return x
}

// layerRange is BertInput's [From, To), checked against the model.
func (b *Bert) layerRange(in BertInput) (from, to int) {
	from, to = in.From, in.To
	if to == 0 {
		to = len(b.Layers)
	}
	if from < 0 || from > to || to > len(b.Layers) {
		panic(fmt.Errorf("bert: layers [%d, %d) of a model with %d", in.From, in.To, len(b.Layers)))
	}
	return from, to
}

// crossContext is what the cross-attention layers read: the context and
// its additive mask [B, 1, 1, S].
type crossContext struct{ ctx, mask *ts.Tensor }

// crossInputs checks the context against the layers that will run: a
// cross-attention layer needs one, and its batch must match.
func (b *Bert) crossInputs(in BertInput, s []int64, from, to int) crossContext {
	need := -1
	for i := from; i < to; i++ {
		if b.Layers[i].Cross != nil {
			need = i
			break
		}
	}
	if in.Context == nil {
		if need >= 0 {
			panic(fmt.Errorf("bert: layer %d has cross-attention (fusion_layer %d) but no context (image tokens) was given", need, b.Cfg.FusionLayer))
		}
		return crossContext{}
	}
	cs := in.Context.MustSize()
	if len(cs) != 3 || cs[0] != s[0] {
		panic(fmt.Errorf("bert: context of shape %v for a batch of %d, want [batch, tokens, encoder_width]", cs, s[0]))
	}
	c := crossContext{ctx: in.Context}
	if in.ContextMask != nil {
		if ms := in.ContextMask.MustSize(); len(ms) != 2 || ms[0] != cs[0] || ms[1] != cs[1] {
			panic(fmt.Errorf("bert: context mask of shape %v for a context of %v, want [batch, tokens]", ms, cs))
		}
		c.mask = in.ContextMask.MustEq(ts.IntScalar(0), false).MustView([]int64{cs[0], 1, 1, cs[1]}, true)
	}
	return c
}

// causalMask is ALBEF's decoder mask (get_extended_attention_mask with
// is_decoder): query i sees key j <= i that the padding mask [B, L] (nil
// for none) allows; bool [B or 1, 1, L, L], true = not attended.
func causalMask(pad *ts.Tensor, s []int64, dev gotch.Device) *ts.Tensor {
	l := s[1]
	future := ts.MustOnes([]int64{l, l}, gotch.Bool, dev).MustTriu(1, true).MustView([]int64{1, 1, l, l}, true)
	if pad == nil {
		return future
	}
	if ps := pad.MustSize(); len(ps) != 2 || (ps[0] != s[0] && ps[0] != 1) || ps[1] != l {
		panic(fmt.Errorf("bert: a causal model takes a padding mask [batch, length], got shape %v for input of %v", ps, s))
	}
	return future.MustLogicalOr(attentionMask(pad, s, gotch.Float), true)
}

// embed is the embedding layer on IDs, TypeIDs and Positions: [B, L, H]
// and the input's [B, L].
func (b *Bert) embed(in BertInput, train bool) (*ts.Tensor, []int64) {
	ids := in.IDs
	if ids == nil {
		panic(fmt.Errorf("bert: neither input ids nor input embeddings were given"))
	}
	s := ids.MustSize()
	if len(s) != 2 {
		panic(fmt.Errorf("bert: input ids of shape %v, want [batch, length]", s))
	}
	dev := ids.MustDevice()
	pos := in.Positions
	if pos == nil {
		if s[1] > b.Cfg.MaxPositionEmbeddings {
			panic(fmt.Errorf("bert: sequence of %d tokens, longer than max_position_embeddings %d", s[1], b.Cfg.MaxPositionEmbeddings))
		}
		pos = ts.MustArange(ts.IntScalar(s[1]), gotch.Int64, dev).MustUnsqueeze(0, true)
	} else {
		b.checkPositions(pos, s)
	}
	typeIDs := in.TypeIDs
	if typeIDs == nil {
		typeIDs = ids.MustZerosLike(false)
	}
	x := b.Word.Forward(ids).MustAdd(b.TokenType.Forward(typeIDs), true).MustAdd(b.Position.Forward(pos), true)
	return Dropout(b.EmbNorm.Forward(x), b.Cfg.HiddenDropout, train), s
}

// layer runs encoder layer i in a scope of its own, keeping only its
// output: its intermediates (attention scores and probabilities, the
// feed-forward's activations) are freed when it returns, not when the
// caller's scope closes. Autograd holds its own references to what the
// backward pass needs, so training is unchanged; what goes is the Go
// handles that kept every layer's intermediates alive at once (inference
// of BERT-base at 8 x 128 tokens peaked at 2.2x PyTorch's memory).
func (b *Bert) layer(i int, l *BertLayer, x, mask, bias *ts.Tensor, cross crossContext, in BertInput, train bool) *ts.Tensor {
	sc := ts.NewScope()
	defer sc.Close()
	var hm *ts.Tensor
	if in.HeadMask != nil {
		hm = in.HeadMask.MustSelect(0, int64(i), false)
	}
	var a *ts.Tensor
	if l.Attn == nil {
		a = l.AttnBias.MustExpandAs(x, false)
	} else {
		a = l.Attn.Forward(AttentionInput{Query: x, Mask: mask, Bias: bias, HeadMask: hm}, train)
	}
	x = l.AttnNorm.Forward(Dropout(a, l.HiddenDrop, train).MustAdd(x, true))
	if l.Cross != nil {
		c := l.Cross.Forward(AttentionInput{Query: x, Context: cross.ctx, Mask: cross.mask}, train)
		x = l.CrossNorm.Forward(Dropout(c, l.HiddenDrop, train).MustAdd(x, true))
	}
	var h *ts.Tensor
	if l.Intermediate == nil {
		h = l.FFNBias.MustExpandAs(x, false)
	} else {
		act := l.Act.Apply(l.Intermediate.Forward(x))
		if in.FFNMask != nil {
			act = act.MustMul(in.FFNMask.MustSelect(0, int64(i), false), true)
		}
		h = l.Output.Forward(act)
	}
	out := l.OutNorm.Forward(Dropout(h, l.HiddenDrop, train).MustAdd(x, true))
	sc.Keep(out)
	return out
}

// checkLayerMasks refuses head and feed-forward masks whose shapes do not
// match the model, naming both.
func (b *Bert) checkLayerMasks(head, ffn *ts.Tensor) {
	c := b.Cfg
	if (head != nil || ffn != nil) && c.Pruned != nil {
		panic(fmt.Errorf("bert: head or feed-forward masks on a model with pruned shapes; mask the unpruned model"))
	}
	if head != nil {
		if s := head.MustSize(); len(s) != 2 || s[0] != c.NumHiddenLayers || s[1] != c.NumAttentionHeads {
			panic(fmt.Errorf("bert: head mask of shape %v, want [layers %d, heads %d]", s, c.NumHiddenLayers, c.NumAttentionHeads))
		}
	}
	if ffn != nil {
		if s := ffn.MustSize(); len(s) != 2 || s[0] != c.NumHiddenLayers || s[1] != c.IntermediateSize {
			panic(fmt.Errorf("bert: feed-forward mask of shape %v, want [layers %d, intermediate_size %d]", s, c.NumHiddenLayers, c.IntermediateSize))
		}
	}
}

// checkPositions refuses position ids the embedding table does not have,
// naming the limit, rather than letting libtorch fail with "index out of
// range".
func (b *Bert) checkPositions(pos *ts.Tensor, ids []int64) {
	p := pos.MustSize()
	if len(p) != 2 || (p[0] != ids[0] && p[0] != 1) || p[1] != ids[1] {
		panic(fmt.Errorf("bert: position ids of shape %v for input ids %v, want [batch, length]", p, ids))
	}
	if pos.DType() != gotch.Int64 {
		panic(fmt.Errorf("bert: position ids of dtype %v, want int64", pos.DType()))
	}
	if pos.Numel() == 0 {
		return
	}
	lo, hi := pos.MustMin(false).Int64Values()[0], pos.MustMax(false).Int64Values()[0]
	if lo < 0 || hi >= b.Cfg.MaxPositionEmbeddings {
		panic(fmt.Errorf("bert: position ids in [%d, %d], outside [0, max_position_embeddings %d)", lo, hi, b.Cfg.MaxPositionEmbeddings))
	}
}

// attentionMask turns BertInput.Mask into Attention's: a key padding mask
// [B, L] into bool [B, 1, 1, L] (true = not attended), a 2-D mask
// [B, L, L] into UniLM's additive (1 - mask) * -10000 [B, 1, L, L].
func attentionMask(m *ts.Tensor, ids []int64, dtype gotch.DType) *ts.Tensor {
	if m == nil {
		return nil
	}
	s := m.MustSize()
	switch {
	case len(s) == 2 && (s[0] == ids[0] || s[0] == 1) && s[1] == ids[1]:
		return m.MustEq(ts.IntScalar(0), false).MustView([]int64{s[0], 1, 1, s[1]}, true)
	case len(s) == 3 && (s[0] == ids[0] || s[0] == 1) && s[1] == ids[1] && s[2] == ids[1]:
		forbidden := m.MustEq(ts.IntScalar(0), false).MustTotype(dtype, true)
		return forbidden.MustMulScalar(ts.FloatScalar(-10000), true).MustUnsqueeze(1, true)
	}
	panic(fmt.Errorf("bert: attention mask of shape %v for input ids %v, want [batch, length] or [batch, length, length]", s, ids))
}

// relPosBuckets are the buckets [B, L, L] of pos[j] - pos[i] (key minus
// query) for position ids pos [B, L], as UniLMv2's BertModel computes them.
func (b *Bert) relPosBuckets(pos *ts.Tensor) *ts.Tensor {
	rel := pos.MustUnsqueeze(-2, false).MustSub(pos.MustUnsqueeze(-1, false), true)
	return RelativePositionBucket(rel, true, b.Cfg.RelPosBins, b.Cfg.MaxRelPos)
}

// Pool is BertPooler: tanh(dense(first token)).
func (b *Bert) Pool(hidden *ts.Tensor) *ts.Tensor {
	return b.Pooler.Forward(hidden.MustSelect(1, 0, false)).MustTanh(true)
}

// BertForMaskedLM is HF's BertForMaskedLM: bert.* without pooler and the
// MLM head cls.predictions.transform.{dense,LayerNorm}, with the decoder
// tied to the word embeddings plus cls.predictions.bias.
type BertForMaskedLM struct {
	Bert      *Bert
	Transform *Linear
	Norm      *LayerNorm
	Bias      *ts.Tensor // [vocab]
}

// NewBertForMaskedLM registers the model under p with HF's names.
func NewBertForMaskedLM(p Path, c BertConfig) *BertForMaskedLM {
	m := &BertForMaskedLM{Bert: NewBert(p.Sub("bert"), c, false)}
	h := p.Sub("cls.predictions")
	m.Transform = NewLinear(h.Sub("transform.dense"), LinearOptions{In: c.HiddenSize, Out: c.HiddenSize})
	m.Norm = NewLayerNorm(h.Sub("transform.LayerNorm"), NormOptions{Dim: c.HiddenSize, Eps: m.Bert.Cfg.LayerNormEps})
	m.Bias = h.New("bias", []int64{c.VocabSize}, Const(0), true)
	BertInit(m.Bert.Cfg.InitializerRange, nil, m.Transform)
	return m
}

// Logits are the vocabulary scores [B, L, V] for every position.
func (m *BertForMaskedLM) Logits(hidden *ts.Tensor) *ts.Tensor {
	h := m.Norm.Forward(m.Bert.Cfg.act().Apply(m.Transform.Forward(hidden)))
	return ts.MustLinear(h, m.Bert.Word.Weight, m.Bias)
}

// Forward is hidden states then logits.
func (m *BertForMaskedLM) Forward(ids, typeIDs, mask *ts.Tensor, train bool) *ts.Tensor {
	return m.Logits(m.Bert.Forward(ids, typeIDs, mask, train))
}

// ForwardInput is Bert.ForwardInput then logits.
func (m *BertForMaskedLM) ForwardInput(in BertInput, train bool) *ts.Tensor {
	return m.Logits(m.Bert.ForwardInput(in, train))
}

// BertForSequenceClassification is HF's: bert.* with its pooler, dropout
// and classifier.{weight,bias}.
type BertForSequenceClassification struct {
	Bert       *Bert
	Classifier *Linear
}

// NewBertForSequenceClassification registers the model under p.
func NewBertForSequenceClassification(p Path, c BertConfig, classes int64) *BertForSequenceClassification {
	m := &BertForSequenceClassification{Bert: NewBert(p.Sub("bert"), c, true)}
	m.Classifier = NewLinear(p.Sub("classifier"), LinearOptions{In: c.HiddenSize, Out: classes})
	BertInit(m.Bert.Cfg.InitializerRange, nil, m.Classifier)
	return m
}

// Forward returns the class logits [B, classes].
func (m *BertForSequenceClassification) Forward(ids, typeIDs, mask *ts.Tensor, train bool) *ts.Tensor {
	pooled := m.Bert.Pool(m.Bert.Forward(ids, typeIDs, mask, train))
	return m.Classifier.Forward(Dropout(pooled, m.Bert.Cfg.HiddenDropout, train))
}

// BertStateDict prepares a HF BERT state dict for Store.Load: it drops
// what HF saves but a Store does not hold (the decoder tied to the word
// embeddings, its bias tied to cls.predictions.bias, the position_ids
// buffer) and renames the legacy LayerNorm.gamma/beta. It returns the
// dropped names.
func BertStateDict(w map[string]*ts.Tensor) (dropped []string) {
	for name, t := range w {
		switch {
		case strings.HasSuffix(name, "cls.predictions.decoder.weight"), strings.HasSuffix(name, "cls.predictions.decoder.bias"),
			strings.HasSuffix(name, "embeddings.position_ids"):
			t.MustDrop()
			delete(w, name)
			dropped = append(dropped, name)
		default:
			if n := RenameLegacyBert([]string{name})[0]; n != name {
				delete(w, name)
				w[n] = t
			}
		}
	}
	sort.Strings(dropped)
	return dropped
}

// RenameLegacyBert renames the older names in Google's converted
// checkpoints (bert-base-uncased's pytorch_model.bin has LayerNorm.gamma
// and .beta) to HF's current weight and bias, as transformers does on load.
func RenameLegacyBert(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		switch {
		case strings.HasSuffix(n, "LayerNorm.gamma"):
			n = strings.TrimSuffix(n, "gamma") + "weight"
		case strings.HasSuffix(n, "LayerNorm.beta"):
			n = strings.TrimSuffix(n, "beta") + "bias"
		}
		out[i] = n
	}
	return out
}

// BertAddedKeys are the BertConfig keys added after runs were saved, under
// a task's [model] table, with the value their absence stood for: no
// relative position bias and no cross-attention layers (ALBEF's
// fusion_layer and encoder_width came with vqa). Tasks with a BertConfig list them in
// train.TaskSpec.Added, so that repro exp and -resume treat an older run
// as the same experiment.
func BertAddedKeys(added map[string]any) map[string]any {
	out := map[string]any{"model.rel_pos_bins": int64(0), "model.max_rel_pos": int64(0),
		"model.add_cross_attention": false, "model.fusion_layer": int64(0), "model.encoder_width": int64(0)}
	for k, v := range added {
		out[k] = v
	}
	return out
}
