package torchmods

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// RelativePositionBucket is UniLMv2's relative_position_bucket (Mesh
// TensorFlow's, as T5's) on int64 relative positions, key minus query:
// with bidirectional, half the buckets are for positive distances; of each
// half, the first half are exact distances and the rest logarithmic bins
// up to maxDistance, beyond which everything shares the last bucket.
//
// It runs the official sequence of libtorch ops (float32 log, truncation
// to int64) rather than T5Bucket's Go arithmetic, so that distances on a
// bin boundary (16, 32 and 64 for 32 buckets and 128) land where PyTorch
// puts them, on any device.
func RelativePositionBucket(relPos *ts.Tensor, bidirectional bool, numBuckets, maxDistance int64) *ts.Tensor {
	if relPos.DType() != gotch.Int64 {
		panic(fmt.Errorf("RelativePositionBucket: relative positions of dtype %v, want int64", relPos.DType()))
	}
	half := numBuckets
	if bidirectional {
		half /= 2
	}
	exact := half / 2
	if exact < 1 || maxDistance <= exact {
		panic(fmt.Errorf("RelativePositionBucket: %d buckets (bidirectional %v) and max distance %d: need an exact range of at least 1 below the max distance", numBuckets, bidirectional, maxDistance))
	}
	var n *ts.Tensor
	if bidirectional {
		n = relPos.MustAbs(false)
	} else {
		n = relPos.MustNeg(false).MustClampMin(ts.IntScalar(0), true)
	}
	// log(0) is -inf for the exact range; where discards it.
	large := n.MustTotype(gotch.Float, false).MustDivScalar(ts.IntScalar(exact), true).MustLog(true).
		MustDivScalar(ts.FloatScalar(math.Log(float64(maxDistance)/float64(exact))), true).
		MustMulScalar(ts.IntScalar(half-exact), true).MustTotype(gotch.Int64, true).
		MustAddScalar(ts.IntScalar(exact), true).MustClampMax(ts.IntScalar(half-1), true)
	out := n.MustWhereSelf(n.MustLt(ts.IntScalar(exact), false), large, true)
	if bidirectional {
		out = out.MustAdd(relPos.MustGt(ts.IntScalar(0), false).MustTotype(gotch.Int64, true).MustMulScalar(ts.IntScalar(half), true), true)
	}
	return out
}

// UniLMReport is what UniLMStateDict changed: old name -> new name, and
// the names it dropped, sorted.
type UniLMReport struct {
	Renamed map[string]string
	Dropped []string
}

// unilmPrefixes wrap a model's names in checkpoints UniLM's code writes:
// DataParallel's module., and s2s-ft's base_model_prefix (unilm_for_seq2seq
// now, bert_for_seq2seq before), which transformers' from_pretrained strips.
var unilmPrefixes = []string{"module.", "unilm_for_seq2seq.", "bert_for_seq2seq."}

// unilmDrop are names UniLM checkpoints hold that BertForMaskedLM does not.
var unilmDrop = []string{
	// s2s-ft's BertLMPredictionHead keeps the tied word embeddings as an
	// attribute, so save_pretrained writes them a second time.
	"cls.predictions.decoder_weight",
	// modeling_decoding's (and HF's) tied decoder.
	"cls.predictions.decoder.weight", "cls.predictions.decoder.bias",
	// The pre-training checkpoints' next-sentence head and pooler.
	"cls.seq_relationship.{*}", "bert.pooler.{*}",
	// LabelSmoothingLoss's persistent buffer in fine-tuned checkpoints.
	"crit_mask_lm_smoothed.one_hot",
	"bert.embeddings.position_ids", "bert.embeddings.token_type_ids",
}

// UniLMStateDict prepares, in place, a state dict written by UniLM's
// pre-training or s2s-ft fine-tuning (BertForSequenceToSequence, whose
// bert.* and cls.predictions.* are HF BERT's names plus
// bert.rel_pos_bias.weight) for Store.Load into NewBertForMaskedLM with
// the checkpoint's config: wrapper prefixes are removed, a bare BertModel's
// names get bert., LayerNorm gamma/beta become weight/bias (as
// modeling_decoding's from_pretrained does), and tied copies, buffers, the
// pooler and the next-sentence head are dropped. convert_state_dict.py
// maps "unilm" checkpoints by identity; its RoBERTa and DistilBERT
// conversions are not done here. An error (two names becoming one) leaves
// w unchanged.
func UniLMStateDict(w map[string]*ts.Tensor) (UniLMReport, error) {
	drop := make([]pattern, len(unilmDrop))
	for i, p := range unilmDrop {
		drop[i] = compile(p)
	}
	names := make([]string, 0, len(w))
	for n := range w {
		names = append(names, n)
	}
	sort.Strings(names)
	r := UniLMReport{Renamed: map[string]string{}}
	to := map[string]string{} // new name -> old name
	for _, old := range names {
		n := old
		for _, p := range unilmPrefixes {
			n = strings.TrimPrefix(n, p)
		}
		for _, bare := range []string{"embeddings.", "encoder.", "pooler.", "rel_pos_bias."} {
			if strings.HasPrefix(n, bare) {
				n = "bert." + n
			}
		}
		n = RenameLegacyBert([]string{n})[0]
		dropped := false
		for _, p := range drop {
			if _, ok := p.match(n); ok {
				dropped = true
				break
			}
		}
		if dropped {
			r.Dropped = append(r.Dropped, old)
			continue
		}
		if prev, dup := to[n]; dup {
			return UniLMReport{}, fmt.Errorf("unilm state dict: %s and %s both name %s", prev, old, n)
		}
		to[n] = old
		if n != old {
			r.Renamed[old] = n
		}
	}
	for _, old := range r.Dropped {
		w[old].MustDrop()
		delete(w, old)
	}
	moved := map[string]*ts.Tensor{}
	for old, n := range r.Renamed {
		moved[n] = w[old]
		delete(w, old)
	}
	for n, t := range moved {
		w[n] = t
	}
	return r, nil
}
