// Command gobench runs one benchmark workload through gotch and prints one
// JSON line: the median seconds per iteration and the peak RSS. Its twin,
// bench/torch_bench.py, runs the same work in PyTorch on the same libtorch;
// scripts/bench_vs_pytorch.sh runs both and prints the comparison.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/nn"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/internal/memstat"
	"github.com/reprolab/repro/mae"
	"github.com/reprolab/repro/metapt"
	"github.com/reprolab/repro/mlm"
	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/train"
)

type result struct {
	Workload string  `json:"workload"`
	Impl     string  `json:"impl"`
	Device   string  `json:"device"`
	Median   float64 `json:"median_s"`
	PeakRSS  int64   `json:"peak_rss"`
	Check    float64 `json:"check"` // a number the work produced, so it cannot be skipped
	// Precision is "fp32", or "bf16" for autocast to bfloat16 around the
	// forward pass (parameters, gradients and AdamW state stay float32).
	Precision string `json:"precision"`
	// FLOPs is the work of one iteration, counted from the model's shapes
	// (mae_vitb and bert_mlm; 0 where not counted), for TFLOP/s and MFU.
	FLOPs float64 `json:"flops,omitempty"`
}

// precision and benchDev are the run's -precision and -device: the
// training steps run their forward pass under autocast for "bf16".
var (
	precision = "fp32"
	benchDev  = gotch.CPU
	flops     float64
)

// autocastWorkloads are the workloads whose steps honour -precision bf16
// (their PyTorch twins wrap the forward pass in torch.autocast the same way).
var autocastWorkloads = map[string]bool{"mlp": true, "encoder": true, "mae_vitb": true, "bert_mlm": true, "llama_lm": true}

// forward runs fn under the run's precision.
func forward(fn func()) {
	if precision != "bf16" {
		fn()
		return
	}
	if err := ts.Autocast(benchDev.IsCuda(), gotch.BFloat16, fn); err != nil {
		panic(err)
	}
}

func main() {
	workload := flag.String("workload", "smallop", "smallop | mlp | encoder | mae_vitb | bert_mlm | mae_fm_encoder | metapt_first | metapt_second | llama_lm | pmlm | dense_biencoder | monobert | clip | bert_dense_infer | bert_pruned_infer | vqa_step | vampnet_step")
	device := flag.String("device", "cpu", "cpu | cuda")
	reps := flag.Int("reps", 7, "timed repetitions; the median is reported")
	mask := flag.Float64("mask", 0.75, "mae_fm_encoder: the mask ratio (0 runs every patch through the encoder)")
	inputs := flag.String("inputs", "", "pmlm, dense_biencoder, monobert, clip, bert_*_infer, vqa_step, vampnet_step: write the batch to this safetensors file, for bench/torch_bench.py --inputs")
	weights := flag.String("weights", "", "pmlm, dense_biencoder, monobert, clip, bert_*_infer, vqa_step, vampnet_step: write the initial weights to this safetensors file, for bench/torch_bench.py --weights, and print the step-0 loss (bert_*_infer: the pooled output's sums) to stderr (a parity check)")
	prec := flag.String("precision", "fp32", "fp32 | bf16 (autocast to bfloat16 around the forward pass; "+autocastList()+")")
	flag.Parse()

	dev := gotch.CPU
	if *device == "cuda" {
		dev = gotch.CudaBuilder(0)
	}
	switch *prec {
	case "fp32":
	case "bf16":
		if !autocastWorkloads[*workload] {
			fmt.Fprintf(os.Stderr, "gobench: -precision bf16 applies to %s, not %q\n", autocastList(), *workload)
			os.Exit(2)
		}
	default:
		fmt.Fprintf(os.Stderr, "gobench: -precision %q: want fp32 or bf16\n", *prec)
		os.Exit(2)
	}
	precision, benchDev = *prec, dev
	ts.ManualSeed(0)

	var iter func() float64 // runs one timed repetition, returns seconds per iteration
	var check float64
	switch *workload {
	case "smallop":
		iter = smallOp(dev, &check)
	case "mlp":
		iter = trainStep(dev, &check, newMLP)
	case "encoder":
		iter = trainStep(dev, &check, newEncoder)
	case "mae_vitb":
		iter = maeStep(dev, &check)
	case "bert_mlm":
		iter = bertStep(dev, &check)
	case "mae_fm_encoder":
		iter = maeEncoderStep(dev, &check, *mask)
	case "metapt_first":
		iter = metaStep(dev, &check, metapt.FirstOrder)
	case "metapt_second":
		iter = metaStep(dev, &check, metapt.SecondOrder)
	case "llama_lm":
		iter = llamaStep(dev, &check)
	case "pmlm":
		iter = pmlmStep(dev, &check, *inputs, *weights)
	case "dense_biencoder":
		iter = denseStep(dev, &check, *inputs, *weights)
	case "monobert":
		iter = monoBERTStep(dev, &check, *inputs, *weights)
	case "clip":
		iter = clipStep(dev, &check, *inputs, *weights)
	case "bert_dense_infer":
		iter = capInferStep(dev, &check, false, *inputs, *weights)
	case "bert_pruned_infer":
		iter = capInferStep(dev, &check, true, *inputs, *weights)
	case "vqa_step":
		iter = vqaStep(dev, &check, *inputs, *weights)
	case "vampnet_step":
		iter = vampnetStep(dev, &check, *inputs, *weights)
	default:
		fmt.Fprintf(os.Stderr, "gobench: unknown workload %q\n", *workload)
		os.Exit(2)
	}
	iter() // warm-up
	times := make([]float64, *reps)
	for i := range times {
		times[i] = iter()
	}
	sort.Float64s(times)
	peak, _ := memstat.PeakRSS()
	json.NewEncoder(os.Stdout).Encode(result{*workload, "go", *device, times[len(times)/2], peak, check, precision, flops})
}

func autocastList() string {
	var ws []string
	for w := range autocastWorkloads {
		ws = append(ws, w)
	}
	sort.Strings(ws)
	return strings.Join(ws, ", ")
}

// sync reads one value back, which waits for the device to finish.
func sync(x *ts.Tensor) float64 { return x.Float64Values()[0] }

// smallOp: adds of two 16-float tensors, each result freed at once.
func smallOp(dev gotch.Device, check *float64) func() float64 {
	a := ts.MustOnes([]int64{16}, gotch.Float, dev)
	b := ts.MustOnes([]int64{16}, gotch.Float, dev)
	const n = 20000
	return func() float64 {
		start := time.Now()
		for i := 0; i < n; i++ {
			c := a.MustAdd(b, false)
			c.MustDrop()
		}
		*check = sync(a)
		return time.Since(start).Seconds() / n
	}
}

type model interface {
	forward(x *ts.Tensor) *ts.Tensor
}

// trainStep: forward, MSE loss, backward and an AdamW step, in a scope.
func trainStep(dev gotch.Device, check *float64, build func(*nn.Path, gotch.Device) (model, []int64, []int64)) func() float64 {
	vs := nn.NewVarStore(dev)
	m, inShape, outShape := build(vs.Root(), dev)
	opt, err := nn.DefaultAdamWConfig().Build(vs, 1e-4)
	if err != nil {
		panic(err)
	}
	x := ts.MustRandn(inShape, gotch.Float, dev)
	y := ts.MustRandn(outShape, gotch.Float, dev)
	steps := 5
	if dev.IsCuda() {
		steps = 50
	}
	return func() float64 {
		start := time.Now()
		for i := 0; i < steps; i++ {
			s := ts.NewScope()
			var loss *ts.Tensor
			forward(func() { loss = m.forward(x).MustMseLoss(y, 1, true) })
			if err := opt.BackwardStep(loss); err != nil {
				panic(err)
			}
			if i == steps-1 {
				*check = sync(loss)
			}
			s.Close()
		}
		return time.Since(start).Seconds() / float64(steps)
	}
}

// linear is nn.Linear with PyTorch's initialisation, U(±1/sqrt(in)): gotch's
// default KaimingUniform draws weights about 13x larger, and a diverging
// model would not be the same work as PyTorch's.
func linear(p *nn.Path, in, out int64) *nn.Linear {
	c := nn.DefaultLinearConfig()
	bound := 1 / math.Sqrt(float64(in))
	c.WsInit = nn.NewUniformInit(-bound, bound)
	return nn.NewLinear(p, in, out, c)
}

// mlp: 512x1024 -> 4096 -> 1024 -> 1024 with ReLU.
type mlp struct{ l1, l2, l3 *nn.Linear }

func newMLP(p *nn.Path, dev gotch.Device) (model, []int64, []int64) {
	return &mlp{linear(p.Sub("l1"), 1024, 4096), linear(p.Sub("l2"), 4096, 1024), linear(p.Sub("l3"), 1024, 1024)},
		[]int64{512, 1024}, []int64{512, 1024}
}

func (m *mlp) forward(x *ts.Tensor) *ts.Tensor {
	h := m.l1.Forward(x).MustRelu(true)
	h = m.l2.Forward(h).MustRelu(true)
	return m.l3.Forward(h)
}

// encoder: one post-norm transformer encoder layer as PyTorch's
// nn.TransformerEncoderLayer(256, 4, 1024, dropout=0, batch_first=True):
// batch 32, sequence 128, width 256, 4 heads, ReLU feed-forward.
type encoder struct {
	qkv, out, ff1, ff2 *nn.Linear
	ln1, ln2           *nn.LayerNorm
	heads, d           int64
}

func newEncoder(p *nn.Path, dev gotch.Device) (model, []int64, []int64) {
	const d = 256
	e := &encoder{
		qkv: linear(p.Sub("qkv"), d, 3*d), out: linear(p.Sub("out"), d, d),
		ff1: linear(p.Sub("ff1"), d, 1024), ff2: linear(p.Sub("ff2"), 1024, d),
		ln1:   nn.NewLayerNorm(p.Sub("ln1"), []int64{d}, nn.DefaultLayerNormConfig()),
		ln2:   nn.NewLayerNorm(p.Sub("ln2"), []int64{d}, nn.DefaultLayerNormConfig()),
		heads: 4, d: d,
	}
	return e, []int64{32, 128, d}, []int64{32, 128, d}
}

func (e *encoder) forward(x *ts.Tensor) *ts.Tensor {
	// The layout of PyTorch 1.13's multi_head_attention_forward: sequence-first,
	// so [L, B*H, hd] is a free view and bmm takes the transposed operands as they are.
	b, l, hd := int64(32), int64(128), e.d/e.heads
	xt := x.MustTranspose(0, 1, false) // [L, B, D]
	qkv := e.qkv.Forward(xt).MustChunk(3, -1, true)
	heads := func(t *ts.Tensor) *ts.Tensor {
		return t.MustContiguous(true).MustView([]int64{l, b * e.heads, hd}, true).MustTranspose(0, 1, true) // [B*H, L, hd]
	}
	q, k, v := heads(qkv[0]), heads(qkv[1]), heads(qkv[2])
	// PyTorch 1.13 scales q, not the larger score matrix.
	q = q.MustMulScalar(ts.FloatScalar(1/math.Sqrt(float64(hd))), true)
	att := q.MustBmm(k.MustTranspose(1, 2, true), true).MustSoftmax(-1, gotch.Float, true)
	o := att.MustBmm(v, true).MustTranspose(0, 1, true).MustContiguous(true).MustView([]int64{l * b, e.d}, true)
	o = e.out.Forward(o).MustView([]int64{l, b, e.d}, true).MustTranspose(0, 1, true) // [B, L, D]
	h := e.ln1.Forward(x.MustAdd(o, false))
	f := e.ff2.Forward(e.ff1.Forward(h).MustRelu(true))
	return e.ln2.Forward(h.MustAdd(f, false))
}

// maeStep: one MAE ViT-B/16 pre-training step at 224x224, mask ratio 0.75,
// norm_pix_loss (the paper's model and its 512-wide, 8-deep decoder):
// forward with fresh random masking, backward, AdamW (betas 0.9/0.95, wd
// 0.05). Batch 4 and 2 steps per repetition on CPU, batch 64 and 10 on CUDA.
func maeStep(dev gotch.Device, check *float64) func() float64 {
	store := torchmods.NewStore(dev)
	m, err := mae.New(store.Root(), mae.ViTBase16())
	if err != nil {
		panic(err)
	}
	opt := train.NewAdamW(store, 0.9, 0.95, 1e-8, 0.05)
	batch, steps := int64(4), 2
	if dev.IsCuda() {
		batch, steps = 64, 10
	}
	x := ts.MustRandn([]int64{batch, 3, 224, 224}, gotch.Float, dev)
	// Matmul work per image: the patch embedding of all 196 patches, the
	// encoder on the 49 kept patches and the class token, the decoder's
	// embedding, its 8 layers on all 197 tokens and its pixel prediction.
	const d, dd, patchIn = 768, 512, 16 * 16 * 3
	perImage := 2*196*patchIn*d + transformerFLOPs(50, 12, d, 4*d) + 2*50*d*dd + transformerFLOPs(197, 8, dd, 4*dd) + 2*197*dd*patchIn
	flops = 3 * perImage * float64(batch)
	return timedSteps(steps, check, opt, func() *ts.Tensor { return m.Forward(x, 0.75, nil, true).Loss })
}

// maeEncoderStep: forward and backward through the encoder of the
// Fashion-MNIST MAE (configs/mae/fmnist_pretrain.toml: 49 patches, 128 wide,
// 6 deep) at batch 256, seeing the patches a mask ratio leaves: the
// paper's claim is that encoding only the visible quarter makes
// pre-training about 3x cheaper. Go only; mae/RESULTS.md has the numbers.
func maeEncoderStep(dev gotch.Device, check *float64, ratio float64) func() float64 {
	store := torchmods.NewStore(dev)
	m, err := mae.New(store.Root(), mae.Options{ImgSize: 28, Patch: 4, InChans: 1, Dim: 128, Depth: 6, Heads: 4,
		DecoderDim: 64, DecoderDepth: 2, DecoderHeads: 4, MLPRatio: 4, NormPixLoss: true, Eps: 1e-6})
	if err != nil {
		panic(err)
	}
	x := ts.MustRandn([]int64{256, 1, 28, 28}, gotch.Float, dev)
	const steps = 5
	return func() float64 {
		start := time.Now()
		for i := 0; i < steps; i++ {
			s := ts.NewScope()
			latent, _, _ := m.ForwardEncoder(x, ratio, nil, true)
			loss := latent.MustMul(latent, false).MustMean(gotch.Float, true)
			if err := loss.Backward(); err != nil {
				panic(err)
			}
			if i == steps-1 {
				*check = sync(loss)
			}
			s.Close()
		}
		return time.Since(start).Seconds() / steps
	}
}

// bertStep: one masked-LM step of torchmods' BERT with bert-base-uncased's
// vocabulary (30,522) and no dropout: on CPU 4 layers of width 256 (4
// heads, feed-forward 1024), batch 16 x 128 tokens; on CUDA BERT-base
// (12 x 768), batch 32 x 128. The loss covers every 7th position (about
// 15%), projected to the vocabulary at those positions only; AdamW step.
func bertStep(dev gotch.Device, check *float64) func() float64 {
	cfg, batch, steps := benchBert(dev, 20)
	const seq = 128
	store := torchmods.NewStore(dev)
	m := torchmods.NewBertForMaskedLM(store.Root(), cfg)
	opt := train.NewAdamW(store, 0.9, 0.999, 1e-8, 0.01)
	ids := ts.MustRandint(cfg.VocabSize, []int64{batch, seq}, gotch.Int64, dev)
	var pos []int64
	for i := int64(0); i < batch*seq; i += 7 {
		pos = append(pos, i)
	}
	posT := ts.MustOfSlice(pos).MustTo(dev, true)
	labels := ids.MustView([]int64{-1}, false).MustIndexSelect(0, posT, false)
	// Matmul work: the encoder on every sequence, then the MLM head's
	// transform and vocabulary projection at the loss positions only.
	h, p := float64(cfg.HiddenSize), float64(len(pos))
	flops = 3 * (float64(batch)*transformerFLOPs(seq, cfg.NumHiddenLayers, cfg.HiddenSize, cfg.IntermediateSize) +
		2*p*h*h + 2*p*h*float64(cfg.VocabSize))
	return timedSteps(steps, check, opt, func() *ts.Tensor {
		h := m.Bert.Forward(ids, nil, nil, true).MustView([]int64{-1, cfg.HiddenSize}, true).MustIndexSelect(0, posT, true)
		return torchmods.CrossEntropy(m.Logits(h), labels, torchmods.CEOptions{})
	})
}

// metaStep: one meta step of metapt with k = 1 (the paper's meta-learning
// step at its smallest depth) in the given order, on torchmods'
// BertForPreTraining sized as bertStep's BERT (no dropout): an inner SGD
// step (lr 1e-3) on the MLM loss of batch 1, the meta-test MLM + NSP loss
// on batch 2 at the adapted weights, backward through the inner step
// (second order) or at the adapted weights (first order), and an AdamW
// step. Token types are 0 for the first 64 positions and 1 after, every
// 7th position is masked, NSP labels alternate. bench/torch_bench.py's
// twin uses torch.autograd.grad and functional_call.
func metaStep(dev gotch.Device, check *float64, order metapt.Order) func() float64 {
	cfg, batch, steps := benchBert(dev, 10)
	const seq = 128
	store := torchmods.NewStore(dev)
	m := metapt.Model{BertForPreTraining: torchmods.NewBertForPreTraining(store.Root(), cfg)}
	opt := train.NewAdamW(store, 0.9, 0.999, 1e-8, 0.01)
	makeBatch := func() metapt.Tensors {
		ids := ts.MustRandint(cfg.VocabSize, []int64{batch, seq}, gotch.Int64, dev)
		types, labels := make([]int64, batch*seq), make([]int64, batch*seq)
		for i := range types {
			if i%seq >= seq/2 {
				types[i] = 1
			}
			labels[i] = mlm.Ignore
		}
		nsp := make([]int64, batch)
		for i := range nsp {
			nsp[i] = int64(i % 2)
		}
		idv := ids.Int64Values()
		for i := 0; i < len(labels); i += 7 {
			labels[i] = idv[i]
		}
		shape := []int64{batch, seq}
		return metapt.Tensors{IDs: ids, Types: torchmods.FromSlice(types, shape, dev),
			Mask: ts.MustOnes(shape, gotch.Int64, dev), Labels: torchmods.FromSlice(labels, shape, dev),
			NSP: torchmods.FromSlice(nsp, []int64{batch}, dev)}
	}
	b1, b2 := makeBatch(), makeBatch()
	return timedSteps(steps, check, opt, func() *ts.Tensor {
		loss, _, err := metapt.MetaLoss(store,
			[]metapt.LossFn{func() (*ts.Tensor, error) { return m.Loss(b1, []string{"mlm"}, true), nil }},
			func() (*ts.Tensor, error) { return m.Loss(b2, metapt.Objectives, true), nil },
			1e-3, order)
		if err != nil {
			panic(err)
		}
		return loss
	})
}

// llamaStep: one causal-LM step of torchmods' Llama (the decoder ICAE
// compresses into), grouped-query attention, no padding, AdamW. On CPU 4
// layers of width 256 (8 heads, 4 key/value heads, SwiGLU 688) with
// Llama 2's vocabulary (32,000), batch 8 x 128; on CUDA TinyLlama-1.1B's
// shape (22 layers of width 2048, 32 heads, 4 key/value heads, SwiGLU
// 5632), batch 4 x 512, 10 steps. bench/torch_bench.py runs the
// transcription of HF's LlamaForCausalLM that the parity tests use
// (torchmods/testdata/gen_llama.py).
func llamaStep(dev gotch.Device, check *float64) func() float64 {
	cfg := torchmods.LlamaConfig{ModelType: "llama", VocabSize: 32000, HiddenSize: 256, IntermediateSize: 688, NumHiddenLayers: 4,
		NumAttentionHeads: 8, NumKeyValueHeads: 4, HeadDim: 32, RMSNormEps: 1e-6, Rope: torchmods.LlamaRope{Type: "default", Theta: 10000},
		InitializerRange: 0.02, BOSTokenID: -1, PadTokenID: -1}
	batch, seq, steps := int64(8), int64(128), 2
	if dev.IsCuda() {
		cfg.HiddenSize, cfg.IntermediateSize, cfg.NumHiddenLayers, cfg.NumAttentionHeads, cfg.HeadDim = 2048, 5632, 22, 32, 64
		batch, seq, steps = 4, 512, 10
	}
	store := torchmods.NewStore(dev)
	m := torchmods.NewLlamaForCausalLM(store.Root(), cfg, torchmods.LlamaBuild{})
	opt := train.NewAdamW(store, 0.9, 0.999, 1e-8, 0.01)
	ids := ts.MustRandint(cfg.VocabSize, []int64{batch, seq}, gotch.Int64, dev)
	return timedSteps(steps, check, opt, func() *ts.Tensor {
		return torchmods.LlamaLoss(m.Forward(torchmods.LlamaInput{IDs: ids}, true), ids)
	})
}

// transformerFLOPs is the forward matmul work of n pre- or post-norm
// encoder layers over one sequence of t tokens of width d with a
// feed-forward of width ff: the q, k, v and output projections (8td²),
// the feed-forward (4t·d·ff) and the scores and weighted sum (4t²d).
// A training step is counted as 3 forwards (backward does twice the
// forward's matmuls), the convention MFU figures use; element-wise work
// (norms, softmax, GELU) is not counted.
func transformerFLOPs[T int | int64](t, n, d, ff T) float64 {
	tt, dd := float64(t), float64(d)
	return float64(n) * (8*tt*dd*dd + 4*tt*dd*float64(ff) + 4*tt*tt*dd)
}

// benchBert is the BERT of bert_mlm and the metapt workloads, without
// dropout: on CPU 4 layers of width 256 (4 heads, feed-forward 1024) with
// bert-base-uncased's vocabulary and batch 16, 2 steps a repetition; on
// CUDA BERT-base, batch 32, cudaSteps steps.
func benchBert(dev gotch.Device, cudaSteps int) (torchmods.BertConfig, int64, int) {
	if dev.IsCuda() {
		cfg := torchmods.BertBase()
		cfg.HiddenDropout, cfg.AttentionDropout = 0, 0
		return cfg, 32, cudaSteps
	}
	return torchmods.BertConfig{VocabSize: 30522, HiddenSize: 256, NumHiddenLayers: 4, NumAttentionHeads: 4, IntermediateSize: 1024,
		HiddenAct: "gelu", MaxPositionEmbeddings: 512, TypeVocabSize: 2, LayerNormEps: 1e-12}, 16, 2
}

// timedSteps is one timed repetition of a repro training step as
// train.Session runs one: loss() in a forward scope of its own, closed
// before backward (so autograd alone keeps what backward needs), backward,
// an optimizer step at lr 1e-4, the step's scope closed; it returns seconds
// per step and reads the last loss back.
func timedSteps(steps int, check *float64, opt interface{ Step(float64) error }, loss func() *ts.Tensor) func() float64 {
	return func() float64 {
		start := time.Now()
		for i := 0; i < steps; i++ {
			s := ts.NewScope()
			fwd := ts.NewScope()
			var l *ts.Tensor
			forward(func() { l = loss() })
			fwd.Keep(l)
			fwd.Close()
			if err := l.Backward(); err != nil {
				panic(err)
			}
			if err := opt.Step(1e-4); err != nil {
				panic(err)
			}
			if i == steps-1 {
				*check = sync(l)
			}
			s.Close()
		}
		return time.Since(start).Seconds() / float64(steps)
	}
}
