package vampnet

import (
	"fmt"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/torchmods"
)

// VectorQuantize is one codebook of lac's residual VQ (lac/nn/quantize.py
// VectorQuantize, the same in DAC): the input is projected to
// codebook_dim (factorised codes, ViT-VQGAN), looked up by cosine
// similarity against the L2-normalised codebook, and the raw (not
// normalised) codebook row is projected back. Names: in_proj, out_proj
// (weight-normalised 1x1 convolutions) and codebook.weight
// [codebook_size, codebook_dim], which VampNet's CodebookEmbedding reads.
type VectorQuantize struct {
	InProj, OutProj *WNConv1d
	Codebook        *torchmods.Embedding
	Size, Dim       int64
}

// NewVectorQuantize registers a codebook for inputs of width input.
func NewVectorQuantize(p torchmods.Path, input, size, dim int64) *VectorQuantize {
	return &VectorQuantize{
		InProj:   NewWNConv1d(p.Sub("in_proj"), WNConvOptions{In: input, Out: dim, Kernel: 1}),
		OutProj:  NewWNConv1d(p.Sub("out_proj"), WNConvOptions{In: dim, Out: input, Kernel: 1}),
		Codebook: torchmods.NewEmbedding(p.Sub("codebook"), torchmods.EmbeddingOptions{Num: size, Dim: dim}),
		Size:     size, Dim: dim,
	}
}

// VQOutput is what one codebook makes of its input z [B, D, T].
type VQOutput struct {
	// Z is out_proj of the straight-through codes, z_e + (z_q - z_e)
	// detached: z_q's value, z_e's gradient.
	Z *ts.Tensor
	// CommitmentLoss and CodebookLoss are per item [B]: the mean squared
	// distance between z_e and the chosen codes, with the gradient going to
	// the encoder (commitment) or to the codebook (codebook) only.
	CommitmentLoss, CodebookLoss *ts.Tensor
	Codes                        *ts.Tensor // [B, T] int64
	Latents                      *ts.Tensor // z_e = in_proj(z) [B, codebook_dim, T]
}

// Forward quantizes z [B, input, T] as VectorQuantize.forward.
func (q *VectorQuantize) Forward(z *ts.Tensor) VQOutput {
	ze := q.InProj.Forward(z)
	zq, codes := q.DecodeLatents(ze)
	commitment := ze.MustMseLoss(zq.MustDetach(false), 0, false).MustMeanDim([]int64{1, 2}, false, gotch.Float, true)
	codebook := zq.MustMseLoss(ze.MustDetach(false), 0, false).MustMeanDim([]int64{1, 2}, false, gotch.Float, true)
	st := ze.MustAdd(zq.MustSub(ze, false).MustDetach(true), false)
	return VQOutput{Z: q.OutProj.Forward(st), CommitmentLoss: commitment, CodebookLoss: codebook, Codes: codes, Latents: ze}
}

// DecodeCode looks codes [B, T] up in the codebook, giving [B, codebook_dim, T].
// It does not check the range: a code out of [0, Size) is libtorch's
// index error.
func (q *VectorQuantize) DecodeCode(codes *ts.Tensor) *ts.Tensor {
	return ts.MustEmbedding(q.Codebook.Weight, codes, -1, false, false).MustTranspose(1, 2, true)
}

// DecodeLatents picks, for each frame of latents [B, codebook_dim, T], the
// codebook row nearest in cosine (the Euclidean distance between
// L2-normalised vectors, computed with lac's expression so that near ties
// fall as they do there) and returns the raw rows [B, codebook_dim, T] and
// the codes [B, T]. The search is not differentiable, so it runs without
// the autograd graph; the returned rows carry the codebook's gradient.
func (q *VectorQuantize) DecodeLatents(latents *ts.Tensor) (zq, codes *ts.Tensor) {
	size := latents.MustSize()
	if len(size) != 3 || size[1] != q.Dim {
		panic(fmt.Errorf("VectorQuantize: latents must be [B, %d, T], got %v", q.Dim, size))
	}
	ts.NoGrad(func() {
		enc := vqL2Normalize(latents.MustPermute([]int64{0, 2, 1}, false).MustReshape([]int64{-1, size[1]}, true))
		cb := vqL2Normalize(q.Codebook.Weight)
		dist := enc.MustPowTensorScalar(ts.IntScalar(2), false).MustSumDimIntlist([]int64{1}, true, gotch.Float, true).
			MustSub(enc.MustMatmul(cb.MustT(false), false).MustMulScalar(ts.IntScalar(2), true), true).
			MustAdd(cb.MustPowTensorScalar(ts.IntScalar(2), false).MustSumDimIntlist([]int64{1}, true, gotch.Float, true).MustT(true), true)
		_, idx := dist.MustNeg(true).MustMaxDim(1, false, true)
		codes = idx.MustReshape([]int64{size[0], -1}, true)
	})
	return q.DecodeCode(codes), codes
}

// vqL2Normalize is F.normalize(x) over dim 1: x / max(||x||, 1e-12).
func vqL2Normalize(x *ts.Tensor) *ts.Tensor {
	n := x.MustNormScalaroptDim(ts.FloatScalar(2), []int64{1}, true, false).MustClampMin(ts.FloatScalar(1e-12), true)
	return x.MustDiv(n.MustExpandAs(x, true), false)
}

// ResidualVQ is lac's ResidualVectorQuantize (SoundStream's residual VQ):
// codebook i quantizes what codebooks 0..i-1 left, and the quantized
// signal is the sum of their outputs. Names: quantizers.N.
type ResidualVQ struct {
	Quantizers []*VectorQuantize
	// Dropout is lac's quantizer_dropout (a bool there; DAC's is the
	// fraction of the batch it applies to): in training, each item uses
	// only its first n codebooks, n drawn uniformly from 1..N.
	Dropout bool
}

// NewResidualVQ registers n codebooks for inputs of width input.
func NewResidualVQ(p torchmods.Path, input, n, size, dim int64, dropout bool) *ResidualVQ {
	r := &ResidualVQ{Dropout: dropout}
	for i := range n {
		r.Quantizers = append(r.Quantizers, NewVectorQuantize(p.Sub(fmt.Sprintf("quantizers.%d", i)), input, size, dim))
	}
	return r
}

// Quantized is the residual VQ's output, as lac's dict.
type Quantized struct {
	Z       *ts.Tensor // the quantized signal [B, input, T]
	Codes   *ts.Tensor // [B, N, T] int64, every codebook's codes, even those n_quantizers leaves out of Z
	Latents *ts.Tensor // [B, N*codebook_dim, T], every codebook's z_e
	// CommitmentLoss and CodebookLoss are scalars: over codebooks, the sum
	// of the batch mean of each item's loss, an item's loss counting only
	// for the codebooks it uses (the others count as 0 but stay in the
	// mean's denominator).
	CommitmentLoss, CodebookLoss *ts.Tensor
}

// Forward quantizes z [B, input, T] with the first nQuantizers codebooks
// (0 or more than N means all). In training with Dropout, each item draws
// its own number instead, and nQuantizers is ignored, as in lac.
func (r *ResidualVQ) Forward(z *ts.Tensor, nQuantizers int64, train bool) Quantized {
	b := z.MustSize()[0]
	n := int64(len(r.Quantizers))
	if nQuantizers <= 0 || nQuantizers > n {
		nQuantizers = n
	}
	var perItem *ts.Tensor
	if train && r.Dropout {
		perItem = ts.MustRandintLow(1, n+1, []int64{b}, gotch.Int64, z.MustDevice())
	} else {
		perItem = ts.MustFull([]int64{b}, ts.IntScalar(nQuantizers), gotch.Int64, z.MustDevice())
	}
	return r.ForwardPerItem(z, perItem)
}

// ForwardPerItem is Forward with each item's number of codebooks given,
// n [B] int64 (what quantizer dropout draws). Every codebook still runs on
// every item: its codes and latents come back and its output leaves the
// residual, but an item's Z and losses take only its first n[i].
func (r *ResidualVQ) ForwardPerItem(z, n *ts.Tensor) Quantized {
	if len(r.Quantizers) == 0 {
		panic(fmt.Errorf("ResidualVQ: no codebooks"))
	}
	if size, in := z.MustSize(), r.Quantizers[0].InProj.In; len(size) != 3 || size[1] != in {
		panic(fmt.Errorf("ResidualVQ: z must be [B, %d, T], got %v", in, size))
	}
	var out Quantized
	var codes, latents []*ts.Tensor
	residual := z
	for i, q := range r.Quantizers {
		o := q.Forward(residual)
		// lac: torch.full((B,), i) < n_quantizers, a bool mask; as 0/1
		// floats it multiplies the same.
		mask := n.MustGt(ts.IntScalar(int64(i)), false).MustTotype(o.Z.DType(), true)
		zi := o.Z.MustMul(mask.MustView([]int64{-1, 1, 1}, false), false)
		out.Z = vqAddOrFirst(out.Z, zi)
		residual = residual.MustSub(o.Z, false)
		out.CommitmentLoss = vqAddOrFirst(out.CommitmentLoss, o.CommitmentLoss.MustMul(mask, false).MustMean(gotch.Float, true))
		out.CodebookLoss = vqAddOrFirst(out.CodebookLoss, o.CodebookLoss.MustMul(mask, false).MustMean(gotch.Float, true))
		codes = append(codes, o.Codes)
		latents = append(latents, o.Latents)
	}
	out.Codes = ts.MustStack(codes, 1)
	out.Latents = ts.MustCat(latents, 1)
	return out
}

// vqAddOrFirst is lac's running sum that starts from the literal 0: the
// first term itself, then sums.
func vqAddOrFirst(sum, x *ts.Tensor) *ts.Tensor {
	if sum == nil {
		return x
	}
	return sum.MustAdd(x, false)
}

// FromCodes turns codes [B, n, T] (n <= N: the first n codebooks) into the
// quantized signal [B, input, T] and the codebook rows [B, n*codebook_dim,
// T], as ResidualVectorQuantize.from_codes. Codes out of range panic.
func (r *ResidualVQ) FromCodes(codes *ts.Tensor) (z, zp *ts.Tensor) {
	size := codes.MustSize()
	if len(size) != 3 || size[1] < 1 || size[1] > int64(len(r.Quantizers)) {
		panic(fmt.Errorf("ResidualVQ.FromCodes: codes must be [B, n, T] with 1 <= n <= %d, got %v", len(r.Quantizers), size))
	}
	var parts []*ts.Tensor
	for i := range size[1] {
		q := r.Quantizers[i]
		// Embedding.Forward checks the range, its error naming the bad code.
		zpi := q.Codebook.Forward(codes.MustSelect(1, i, false)).MustTranspose(1, 2, true)
		parts = append(parts, zpi)
		z = vqAddOrFirst(z, q.OutProj.Forward(zpi))
	}
	return z, ts.MustCat(parts, 1)
}

// FromLatents re-quantizes latents [B, C, T], the concatenated z_e of the
// first n = min(C / codebook_dim, N) codebooks (lac: the largest n whose
// dimensions fit in C; channels past them are ignored), giving the
// quantized signal, the codebook rows and the codes [B, n, T], as
// ResidualVectorQuantize.from_latents. VampNet decodes its generated
// codes this way, from its embedding's latents.
func (r *ResidualVQ) FromLatents(latents *ts.Tensor) (z, zp, codes *ts.Tensor) {
	size := latents.MustSize()
	var n, start int64
	for _, q := range r.Quantizers {
		if len(size) != 3 || start+q.Dim > size[1] {
			break
		}
		start += q.Dim
		n++
	}
	if n == 0 {
		panic(fmt.Errorf("ResidualVQ.FromLatents: latents must be [B, C, T] with C >= codebook_dim %d, got %v", r.Quantizers[0].Dim, size))
	}
	var parts, cs []*ts.Tensor
	start = 0
	for _, q := range r.Quantizers[:n] {
		zpi, ci := q.DecodeLatents(latents.MustNarrow(1, start, q.Dim, false))
		start += q.Dim
		parts, cs = append(parts, zpi), append(cs, ci)
		z = vqAddOrFirst(z, q.OutProj.Forward(zpi))
	}
	return z, ts.MustCat(parts, 1), ts.MustStack(cs, 1)
}
