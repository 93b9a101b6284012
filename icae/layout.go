package icae

import "fmt"

// Layout is where ICAE's extra tokens sit above the LLM's vocabulary, as
// modeling_icae_multi_span.py numbers them: memory token j at Vocab+j
// (j < Mem), then [AE], [LM] and [FT]. An extra token's row in the memory
// table, Embedding(Mem+3, dim), is its id minus Vocab, so every extra
// token, specials included, takes its vector from that table and never from
// the LLM's embed_tokens.
//
// The official v2 sets Vocab to the LLM's vocabulary plus one, a [PAD] row
// its batch-size-1 training never reads; here Vocab is the LLM's own
// vocabulary size and padding reuses a real token (README, "Code and this
// package").
type Layout struct {
	Vocab int64 // the LLM's vocabulary size
	Mem   int64 // memory tokens per segment (fixed_mem_size)
}

// MemID is memory token j's id.
func (l Layout) MemID(j int64) int64 { return l.Vocab + j }

// AE is the id of [AE], the token after the slots that asks the decoder to
// reconstruct the context.
func (l Layout) AE() int64 { return l.Vocab + l.Mem }

// LM is the id of [LM], put after the slots of an LM sample only when
// add_special_token_for_lm is set.
func (l Layout) LM() int64 { return l.Vocab + l.Mem + 1 }

// FT is the id of [FT], which separates the slots from the prompt in
// fine-tuning and inference.
func (l Layout) FT() int64 { return l.Vocab + l.Mem + 2 }

// Size is the number of ids in use: the vocabulary and the Mem+3 extras.
func (l Layout) Size() int64 { return l.Vocab + l.Mem + 3 }

// IsSlot says whether id is a memory token: in the encoder its vector is a
// memory embedding, in a decoder input it is a placeholder for the next
// slot.
func (l Layout) IsSlot(id int64) bool { return id >= l.Vocab && id < l.Vocab+l.Mem }

// IsExtra says whether id is one of the Mem+3 extra tokens.
func (l Layout) IsExtra(id int64) bool { return id >= l.Vocab && id < l.Size() }

// NumSegments is compute_num_segments: a context of length tokens is cut
// into ceil(length / (mem·rate)) segments, each compressed to mem slots, so
// that the mean compression is at most rate.
func NumSegments(length, mem, rate int) int {
	if length <= 0 || mem <= 0 || rate <= 0 {
		panic(fmt.Errorf("icae: %d tokens in segments of %d slots at compression %d: all must be positive", length, mem, rate))
	}
	per := mem * rate
	return (length + per - 1) / per
}

// Segments are the [start, end) spans of a context of length tokens, as
// the encoder loop of modeling_icae_multi_span.py cuts it: n = NumSegments
// segments of ceil(length/n) tokens, the last one shorter. None is empty.
func Segments(length, mem, rate int) [][2]int {
	n := NumSegments(length, mem, rate)
	seg := (length + n - 1) / n
	out := make([][2]int, n)
	for i := range out {
		out[i] = [2]int{i * seg, min((i+1)*seg, length)}
	}
	return out
}
