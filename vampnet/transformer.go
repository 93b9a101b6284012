package vampnet

import (
	"fmt"
	"math"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/torchmods"
)

// Config is VampNet's constructor (transformer.py's VampNet.__init__) under
// the names of conf/vampnet.yml, plus what the official code fixes in
// source: loralib's rank (LORA_R = 8) and the relative position bias's 32
// buckets and maximum distance 128.
type Config struct {
	NHeads                 int64   `toml:"n_heads"`
	NLayers                int64   `toml:"n_layers"`
	NCodebooks             int64   `toml:"n_codebooks"`
	NConditioningCodebooks int64   `toml:"n_conditioning_codebooks"`
	LatentDim              int64   `toml:"latent_dim"`    // the codec's codebook_dim (8 for lac)
	EmbeddingDim           int64   `toml:"embedding_dim"` // the transformer's width
	VocabSize              int64   `toml:"vocab_size"`    // the codec's codebook_size
	Dropout                float64 `toml:"dropout"`
	// LoRARank is the rank of the loralib.Linear that transformer.py uses
	// for w_qs, w_vs, fc, w_1 and w_2 (LORA_R = 8, alpha 1, so the update
	// is scaled by 1/8); 0 builds plain bias-free linears, which a
	// checkpoint without lora_A/lora_B keys needs.
	LoRARank int64 `toml:"lora_rank"`
	// TrainLoRABase trains the base weights of those linears. The official
	// code does not: loralib.Linear sets weight.requires_grad = False in
	// its constructor, so in ismir-2023's train.py (which never undoes it)
	// w_qs, w_vs, fc, w_1 and w_2 keep their random initial weights and
	// only their rank-8 updates, w_ks, the norms, the embeddings, the
	// position bias and the classifier learn. The paper describes a plain
	// transformer; true trains every weight, as the paper reads.
	TrainLoRABase bool  `toml:"train_lora_base"`
	Buckets       int64 `toml:"attention_num_buckets"`  // 32
	MaxDistance   int64 `toml:"attention_max_distance"` // 128
}

// CoarseConfig is conf/vampnet.yml's coarse model: 4 codebooks of 1024, 20
// layers of width 1280 with 20 heads.
func CoarseConfig() Config {
	return Config{NHeads: 20, NLayers: 20, NCodebooks: 4, LatentDim: 8, EmbeddingDim: 1280, VocabSize: 1024,
		Dropout: 0.1, LoRARank: 8, Buckets: 32, MaxDistance: 128}
}

// C2FConfig is conf/c2f.yml's coarse-to-fine model: 14 codebooks, the
// first 4 given (never masked, never predicted), 16 layers.
func C2FConfig() Config {
	c := CoarseConfig()
	c.NCodebooks, c.NConditioningCodebooks, c.NLayers = 14, 4, 16
	return c
}

// Validate names the first key that cannot build a model.
func (c Config) Validate() error {
	switch {
	case c.NHeads <= 0 || c.NLayers <= 0 || c.NCodebooks <= 0 || c.LatentDim <= 0 || c.EmbeddingDim <= 0 || c.VocabSize <= 0:
		return fmt.Errorf("vampnet: n_heads %d, n_layers %d, n_codebooks %d, latent_dim %d, embedding_dim %d and vocab_size %d must all be positive",
			c.NHeads, c.NLayers, c.NCodebooks, c.LatentDim, c.EmbeddingDim, c.VocabSize)
	case c.EmbeddingDim%c.NHeads != 0:
		return fmt.Errorf("vampnet: embedding_dim %d is not a multiple of n_heads %d", c.EmbeddingDim, c.NHeads)
	case c.NConditioningCodebooks < 0 || c.NConditioningCodebooks >= c.NCodebooks:
		return fmt.Errorf("vampnet: n_conditioning_codebooks %d must be in [0, n_codebooks %d)", c.NConditioningCodebooks, c.NCodebooks)
	case c.Dropout < 0 || c.Dropout >= 1:
		return fmt.Errorf("vampnet: dropout %g must be in [0, 1)", c.Dropout)
	case c.LoRARank < 0:
		return fmt.Errorf("vampnet: lora_rank %d must be 0 (plain linears) or positive", c.LoRARank)
	case c.Buckets < 4 || c.Buckets%2 != 0:
		return fmt.Errorf("vampnet: attention_num_buckets %d must be even and at least 4 (half per direction, half of those exact)", c.Buckets)
	case c.MaxDistance <= c.Buckets/4:
		return fmt.Errorf("vampnet: attention_max_distance %d must exceed attention_num_buckets/4 = %d", c.MaxDistance, c.Buckets/4)
	}
	return nil
}

// MaskToken is the code that marks a masked position: the first id after
// the codec's vocabulary (CodebookEmbedding.special_idxs["MASK"]).
func (c Config) MaskToken() int64 { return c.VocabSize }

// NPredict is how many codebooks the model predicts: all but the
// conditioning ones.
func (c Config) NPredict() int64 { return c.NCodebooks - c.NConditioningCodebooks }

// proj is a bias-free linear that may carry loralib's low-rank update:
// y = x Wᵀ + x Aᵀ Bᵀ / r. loralib names A and B lora_A and lora_B (no
// ".weight", unlike PEFT's torchmods.LoRALinear), initialises A as a
// Linear weight and B to zero, and freezes W.
type proj struct {
	W, A, B *ts.Tensor
	scale   float64
}

func newProj(p torchmods.Path, in, out int64, c Config) *proj {
	l := &proj{W: p.New("weight", []int64{out, in}, torchmods.FanInUniform(in), false)}
	if c.LoRARank > 0 {
		l.A = p.New("lora_A", []int64{c.LoRARank, in}, torchmods.FanInUniform(in), false)
		l.B = p.New("lora_B", []int64{out, c.LoRARank}, torchmods.Const(0), false)
		l.scale = 1 / float64(c.LoRARank) // loralib's lora_alpha 1 over r
		if !c.TrainLoRABase {
			l.W.MustRequiresGrad_(false)
		}
	}
	return l
}

// forward is loralib.Linear's: in training x Wᵀ + (x Aᵀ) Bᵀ s; in
// evaluation, where loralib has merged the update into the weight
// (weight += B A s on .eval()), x (W + B A s)ᵀ, computed the same way so
// that the numbers are the same to the bit.
func (l *proj) forward(x *ts.Tensor, train bool) *ts.Tensor {
	if l.A == nil {
		return x.MustMatmul(l.W.MustT(false), false)
	}
	if !train {
		w := l.W.MustAdd(l.B.MustMatmul(l.A, false).MustMulScalar(ts.FloatScalar(l.scale), true), false)
		return x.MustMatmul(w.MustT(true), false)
	}
	y := x.MustMatmul(l.W.MustT(false), false)
	u := x.MustMatmul(l.A.MustT(false), false).MustMatmul(l.B.MustT(false), true)
	return y.MustAdd(u.MustMulScalar(ts.FloatScalar(l.scale), true), true)
}

// Layer is one TransformerLayer (no cross-attention: VampNet's stack is an
// encoder; the FiLM layers are identities at r_cond_dim 0 and have no
// parameters).
type Layer struct {
	Norm1, Norm3 *torchmods.RMSNorm
	Q, K, V, O   *proj // self_attn.w_qs, w_ks (a plain nn.Linear), w_vs, fc
	W1, W2       *proj // feed_forward.w_1 (to 4 d), w_2 (from 2 d)
}

// VampNet is the masked token model: codes go in as the codec's codebook
// vectors (a learned MASK vector per codebook for masked positions),
// concatenated over codebooks and projected to the width by a 1x1 conv;
// a pre-norm transformer with a T5 relative position bias (owned by layer
// 0, shared by all) mixes them; a weight-normalised 1x1 conv gives the
// logits of every predicted codebook at every frame.
type VampNet struct {
	Cfg          Config
	Mask         *ts.Tensor // embedding.special.MASK [n_codebooks, latent_dim]
	InW, InB     *ts.Tensor // embedding.out_proj, Conv1d(n_codebooks*latent_dim, d, 1)
	Layers       []*Layer
	Bias         *torchmods.T5Bias  // transformer.layers.0.self_attn.relative_attention_bias
	Norm         *torchmods.RMSNorm // transformer.norm
	OutG, OutV   *ts.Tensor         // classifier.layers.0.weight_g [vocab*p, 1, 1], weight_v [vocab*p, d, 1]
	OutB         *ts.Tensor         // classifier.layers.0.bias
	store        *torchmods.Store
	trainDropout bool
}

// New registers VampNet's parameters under p with PyTorch's default
// initialisation, as the official model has no init of its own: linears
// and convs uniform in ±1/sqrt(fan_in) (biases too), the position bias
// and the MASK vectors standard normal, RMSNorm weights one, and the
// classifier's weight_g set to the norm of its initial weight_v, as
// torch.nn.utils.weight_norm does.
func New(p torchmods.Path, c Config) *VampNet {
	if err := c.Validate(); err != nil {
		panic(err)
	}
	d := c.EmbeddingDim
	in := c.NCodebooks * c.LatentDim
	m := &VampNet{Cfg: c, store: p.Store()}
	emb := p.Sub("embedding")
	m.Mask = emb.Sub("special").New("MASK", []int64{c.NCodebooks, c.LatentDim}, torchmods.Normal(1), false)
	m.InW = emb.Sub("out_proj").New("weight", []int64{d, in, 1}, torchmods.FanInUniform(in), false)
	m.InB = emb.Sub("out_proj").New("bias", []int64{d}, torchmods.FanInUniform(in), true)
	tr := p.Sub("transformer")
	for i := int64(0); i < c.NLayers; i++ {
		lp := tr.Sub("layers").Sub(fmt.Sprint(i))
		at, ff := lp.Sub("self_attn"), lp.Sub("feed_forward")
		l := &Layer{
			Norm1: torchmods.NewRMSNorm(lp.Sub("norm_1"), torchmods.NormOptions{Dim: d}),
			Q:     newProj(at.Sub("w_qs"), d, d, c),
			K:     newProj(at.Sub("w_ks"), d, d, Config{}), // nn.Linear in transformer.py: no LoRA
			V:     newProj(at.Sub("w_vs"), d, d, c),
			O:     newProj(at.Sub("fc"), d, d, c),
			Norm3: torchmods.NewRMSNorm(lp.Sub("norm_3"), torchmods.NormOptions{Dim: d}),
			W1:    newProj(ff.Sub("w_1"), d, 4*d, c),
			W2:    newProj(ff.Sub("w_2"), 2*d, d, c), // GEGLU halves the width
		}
		if i == 0 {
			m.Bias = torchmods.NewT5Bias(at, torchmods.T5BiasOptions{Heads: c.NHeads, Buckets: c.Buckets, MaxDistance: c.MaxDistance, Bidirectional: true})
		}
		m.Layers = append(m.Layers, l)
	}
	m.Norm = torchmods.NewRMSNorm(tr.Sub("norm"), torchmods.NormOptions{Dim: d})
	out := c.VocabSize * c.NPredict()
	cl := p.Sub("classifier").Sub("layers").Sub("0")
	m.OutB = cl.New("bias", []int64{out}, torchmods.FanInUniform(d), true)
	m.OutV = cl.New("weight_v", []int64{out, d, 1}, torchmods.FanInUniform(d), false)
	m.OutG = cl.New("weight_g", []int64{out, 1, 1}, torchmods.Const(1), true)
	ts.NoGrad(func() {
		n := vNorm(m.OutV)
		m.OutG.Copy_(n)
		n.MustDrop()
	})
	return m
}

// vNorm is ‖v‖ over every dimension but the first, keeping them (weight
// norm's norm_except_dim(v, 2, 0)).
func vNorm(v *ts.Tensor) *ts.Tensor {
	return v.MustSquare(false).MustSumDimIntlist([]int64{1, 2}, true, gotch.Float, true).MustSqrt(true)
}

// FromCodes is CodebookEmbedding.from_codes: codes [B, n_codebooks, T]
// (ids below vocab_size, or MaskToken) looked up in each codebook's table
// of the codec (codebooks[i] is quantizer.quantizers[i].codebook.weight
// [vocab, latent_dim]) extended by that codebook's MASK vector, giving
// latents [B, n_codebooks*latent_dim, T].
func (m *VampNet) FromCodes(codes *ts.Tensor, codebooks []*ts.Tensor) *ts.Tensor {
	c := m.Cfg
	shape := codes.MustSize()
	if len(shape) != 3 || shape[1] != c.NCodebooks {
		panic(fmt.Errorf("vampnet: codes of shape %v, want [batch, %d codebooks, frames]", shape, c.NCodebooks))
	}
	if int64(len(codebooks)) < c.NCodebooks {
		panic(fmt.Errorf("vampnet: %d codec codebooks for a model of %d", len(codebooks), c.NCodebooks))
	}
	if lo, hi := codes.MustMin(false).Int64Values()[0], codes.MustMax(false).Int64Values()[0]; lo < 0 || hi > c.MaskToken() {
		panic(fmt.Errorf("vampnet: codes range over [%d, %d], want [0, %d] (%d is MASK)", lo, hi, c.MaskToken(), c.MaskToken()))
	}
	parts := make([]*ts.Tensor, c.NCodebooks)
	for i := int64(0); i < c.NCodebooks; i++ {
		cb := codebooks[i]
		if s := cb.MustSize(); len(s) != 2 || s[0] != c.VocabSize || s[1] != c.LatentDim {
			panic(fmt.Errorf("vampnet: codebook %d has shape %v, want [%d, %d] (vocab_size, latent_dim)", i, s, c.VocabSize, c.LatentDim))
		}
		table := ts.MustCat([]*ts.Tensor{cb, m.Mask.MustNarrow(0, i, 1, false)}, 0)
		ids := codes.MustSelect(1, i, false)
		parts[i] = ts.MustEmbedding(table, ids, -1, false, false).MustTranspose(1, 2, true)
	}
	return ts.MustCat(parts, 1)
}

// Forward is VampNet.forward: latents [B, n_codebooks*latent_dim, T] to
// logits [B, vocab, T*n_predict], the frames major and the predicted
// codebooks minor ("b (p c) t -> b p (t c)"), the layout that
// CodebookFlatten gives the targets. train turns dropout on.
func (m *VampNet) Forward(latents *ts.Tensor, train bool) *ts.Tensor {
	c := m.Cfg
	if s := latents.MustSize(); len(s) != 3 || s[1] != c.NCodebooks*c.LatentDim {
		panic(fmt.Errorf("vampnet: latents of shape %v, want [batch, %d, frames]", s, c.NCodebooks*c.LatentDim))
	}
	x := ts.MustConv1d(latents, m.InW, m.InB, []int64{1}, []int64{0}, []int64{1}, 1).MustTranspose(1, 2, true) // [B, T, d]
	T := x.MustSize()[1]
	bias := m.Bias.Forward(T, T)
	for _, l := range m.Layers {
		x = m.layer(l, x, bias, train)
	}
	x = m.Norm.Forward(x).MustTranspose(1, 2, true)                           // [B, d, T]
	w := m.OutV.MustMul(m.OutG.MustDiv(vNorm(m.OutV), false), false)          // weight_norm: g v / ‖v‖
	out := ts.MustConv1d(x, w, m.OutB, []int64{1}, []int64{0}, []int64{1}, 1) // [B, vocab*p, T]
	B, np := out.MustSize()[0], c.NPredict()
	return out.MustView([]int64{B, c.VocabSize, np, T}, true).MustPermute([]int64{0, 1, 3, 2}, true).MustReshape([]int64{B, c.VocabSize, T * np}, true)
}

// layer is TransformerLayer.forward without cross-attention, in its own
// scope (torchmods' rule for a stack's layers: only the output leaves it,
// autograd keeps what backward needs).
func (m *VampNet) layer(l *Layer, x, bias *ts.Tensor, train bool) (out *ts.Tensor) {
	s := ts.NewScope()
	defer s.Close()
	c := m.Cfg
	drop := func(t *ts.Tensor) *ts.Tensor { return torchmods.Dropout(t, c.Dropout, train) }
	y := m.attention(l, l.Norm1.Forward(x), bias, train)
	x = x.MustAdd(drop(y), false)
	h := l.W1.forward(l.Norm3.Forward(x), train)
	parts := h.MustChunk(2, -1, true)
	h = parts[0].MustMul(parts[1].MustGelu("tanh", false), false) // GatedGELU: p1 * NewGELU(p2)
	y = l.W2.forward(drop(h), train)
	out = x.MustAdd(drop(y), false)
	s.Keep(out)
	return out
}

// attention is MultiHeadRelativeAttention.forward with q = k = v = y and
// every position visible (VampNet's x_mask is all ones).
func (m *VampNet) attention(l *Layer, y, bias *ts.Tensor, train bool) *ts.Tensor {
	c := m.Cfg
	s := y.MustSize()
	B, T, H := s[0], s[1], c.NHeads
	dh := c.EmbeddingDim / H
	heads := func(t *ts.Tensor) *ts.Tensor {
		return t.MustView([]int64{B, T, H, dh}, true).MustTranspose(1, 2, true) // [B, H, T, dh]
	}
	q, k, v := heads(l.Q.forward(y, train)), heads(l.K.forward(y, train)), heads(l.V.forward(y, train))
	att := q.MustMatmul(k.MustTranspose(2, 3, false), false).MustDivScalar(ts.FloatScalar(math.Sqrt(float64(dh))), true)
	att = att.MustAdd(bias, true).MustSoftmax(-1, gotch.Float, true)
	att = torchmods.Dropout(att, c.Dropout, train)
	o := att.MustMatmul(v, false).MustTranspose(1, 2, true).MustReshape([]int64{B, T, c.EmbeddingDim}, true)
	return l.O.forward(o, train)
}

// CodebookFlatten is util.codebook_flatten: [B, C, T] to [B, T*C], frames
// major ("b c t -> b (t c)").
func CodebookFlatten(x *ts.Tensor) *ts.Tensor {
	s := x.MustSize()
	return x.MustPermute([]int64{0, 2, 1}, false).MustReshape([]int64{s[0], s[1] * s[2]}, true)
}

// CodebookUnflatten is util.codebook_unflatten: [B, T*C] to [B, C, T].
func CodebookUnflatten(x *ts.Tensor, nCodebooks int64) *ts.Tensor {
	s := x.MustSize()
	if len(s) != 2 || nCodebooks <= 0 || s[1]%nCodebooks != 0 {
		panic(fmt.Errorf("vampnet: cannot unflatten shape %v into %d codebooks", s, nCodebooks))
	}
	return x.MustView([]int64{s[0], s[1] / nCodebooks, nCodebooks}, false).MustPermute([]int64{0, 2, 1}, true)
}

// Loss is train.py's objective: cross-entropy with label smoothing over
// the masked positions of the predicted codebooks only. codes are the
// true codes [B, n_codebooks, T], mask [B, n_codebooks, T] (1 = masked),
// logits Forward's; the mean is over the masked targets.
func (m *VampNet) Loss(logits, codes, mask *ts.Tensor, labelSmoothing float64) *ts.Tensor {
	nc := m.Cfg.NConditioningCodebooks
	n := m.Cfg.NPredict()
	target := CodebookFlatten(codes.MustNarrow(1, nc, n, false))
	flat := CodebookFlatten(mask.MustNarrow(1, nc, n, false))
	ignored := target.MustMaskedFill(flat.MustEq(ts.IntScalar(0), true), ts.IntScalar(-100), true)
	return torchmods.CrossEntropy(logits, ignored, torchmods.CEOptions{LabelSmoothing: labelSmoothing})
}
