package pmlm

import (
	"errors"
	"fmt"
	"math"
	"slices"
)

// StepFunc scores the next token for a set of target prefixes. It returns,
// for each prefix, one log-probability per vocabulary entry. The search never
// calls the model itself so that it can be tested without tensors, and it
// hands over all live prefixes at once so the caller can run them as one
// batch. A prefix holds only generated target ids (empty at the first step);
// the caller adds the source, [SOS] (pos_shift) or [MASK] positions that its
// model needs. The prefixes are shared with the search and must not be
// modified.
type StepFunc func(prefixes [][]int64) ([][]float32, error)

// BeamOptions are the decoding flags of s2s-ft's decode_seq2seq.py that
// change the search (the others — mode, pos_shift, fp16 — only change how the
// model is run and belong to the StepFunc).
type BeamOptions struct {
	// BeamSize is --beam_size. BeamSearch runs the beam algorithm for any
	// size >= 1; DecodeLikeS2SFT switches to plain greedy decoding for sizes
	// <= 1 as decode_seq2seq.py does.
	BeamSize int `toml:"beam_size"`
	// LengthPenalty is --length_penalty (alpha). When > 0 a candidate
	// hypothesis of L steps (its [SEP], if any, included) is ranked by
	// score / ((5+L)/6)^alpha (the GNMT form used in
	// BertForSeq2SeqDecoder.beam_search); 0, the s2s-ft default and the value
	// in all its recipes, ranks by the raw summed log-probability.
	LengthPenalty float64 `toml:"length_penalty"`
	// ForbidDuplicateNgrams is --forbid_duplicate_ngrams: a token that would
	// repeat an n-gram already in the same hypothesis gets -10000 added to
	// its log-probability (a soft ban, as in the official code).
	ForbidDuplicateNgrams bool `toml:"forbid_duplicate_ngrams"`
	// NgramSize is --ngram_size (official default 3). N-grams are over token
	// ids, i.e. WordPiece pieces, not words: the official code has no
	// word-level handling.
	NgramSize int `toml:"ngram_size"`
	// ForbidIgnoreIDs is --forbid_ignore_word mapped to ids (the s2s-ft
	// recipes pass "." so that sentence ends may repeat): an n-gram whose
	// (n-1)-token context contains one of them, or whose last token is one of
	// them, is never banned.
	ForbidIgnoreIDs []int64 `toml:"forbid_ignore_ids"`
	// ForbidIgnoreWords are --forbid_ignore_word as vocabulary entries
	// ("."); pmlm.s2s adds their ids to ForbidIgnoreIDs, so that a config
	// need not know the vocabulary's numbering. The search itself reads
	// only the ids.
	ForbidIgnoreWords []string `toml:"forbid_ignore_words"`
	// MinLen is --min_len: while generating token t (1-based) with
	// t <= MinLen the EOS log-probability is set to -10000, so an output
	// has at least MinLen tokens before [SEP] unless nothing else is left.
	// 0 disables it. BeamSearch and Greedy always apply it and the n-gram
	// ban; decode_seq2seq.py does only when beam_size > 1 (see
	// DecodeLikeS2SFT).
	MinLen int `toml:"min_len"`
	// MaxTgtLength is --max_tgt_length: the number of decoding steps,
	// [SEP] included. A hypothesis still open after it competes unfinished.
	MaxTgtLength int `toml:"max_tgt_length"`
	// EOSID is the id of the token that ends a hypothesis ([SEP] in s2s-ft,
	// which uses the tokenizer's sep_token as both eos and sos).
	EOSID int64 `toml:"eos_id"`
}

// DefaultBeamOptions returns decode_seq2seq.py's argparse defaults, so that a
// TOML file only has to list what a recipe changes. EOSID is [SEP] (102) in
// the BERT vocabularies that the unilm uncased checkpoints use.
func DefaultBeamOptions() BeamOptions {
	return BeamOptions{
		BeamSize:     1,
		NgramSize:    3,
		MinLen:       1,
		MaxTgtLength: 128,
		EOSID:        102,
	}
}

// BeamHypothesis is one decoded output.
type BeamHypothesis struct {
	// Tokens are the generated ids up to, not including, the first EOS —
	// what decode_seq2seq.py turns into text after cutting at [SEP]. (It
	// also cuts at [PAD], which a trained model practically never emits;
	// a caller that wants that too cuts at its pad id.)
	Tokens []int64
	// Finished reports whether the hypothesis produced EOS within
	// MaxTgtLength steps.
	Finished bool
	// Steps is the number of decoding steps the hypothesis spans (its EOS
	// included): the L of the length penalty.
	Steps int
	// Score is the summed log-probability (float32, as the official
	// total_scores), including any -10000 penalties it incurred.
	Score float64
	// NormScore is Score after the length penalty: the ranking key.
	NormScore float64
}

// beamBan is the additive penalty of the official code for banned tokens and
// for extending a beam whose last token is EOS; it is a large finite number,
// not -Inf, so a banned token still wins when nothing else is left.
const beamBan float32 = -10000.0

func (o BeamOptions) validate() error {
	if o.BeamSize < 1 {
		return fmt.Errorf("pmlm: beam size %d < 1", o.BeamSize)
	}
	if o.MaxTgtLength < 1 {
		return fmt.Errorf("pmlm: max_tgt_length %d < 1", o.MaxTgtLength)
	}
	if o.ForbidDuplicateNgrams && o.NgramSize < 1 {
		return fmt.Errorf("pmlm: ngram_size %d < 1 with forbid_duplicate_ngrams", o.NgramSize)
	}
	if o.MinLen < 0 {
		return fmt.Errorf("pmlm: min_len %d < 0", o.MinLen)
	}
	return nil
}

// beamScoreRows calls step and checks the shape of its answer, since a
// wrong row count or ragged vocabulary would otherwise surface as an index
// panic far from the model code that caused it.
func beamScoreRows(step StepFunc, prefixes [][]int64, k int, eos int64) ([][]float32, error) {
	if step == nil {
		return nil, errors.New("pmlm: nil StepFunc")
	}
	rows, err := step(prefixes)
	if err != nil {
		return nil, err
	}
	if len(rows) != len(prefixes) {
		return nil, fmt.Errorf("pmlm: step returned %d rows for %d prefixes", len(rows), len(prefixes))
	}
	v := len(rows[0])
	for i, r := range rows {
		if len(r) != v {
			return nil, fmt.Errorf("pmlm: step row %d has %d entries, row 0 has %d", i, len(r), v)
		}
	}
	if v < k {
		return nil, fmt.Errorf("pmlm: vocabulary of %d < beam size %d", v, k)
	}
	if eos < 0 || eos >= int64(v) {
		return nil, fmt.Errorf("pmlm: eos id %d outside vocabulary of %d", eos, v)
	}
	return rows, nil
}

// beamPenalize applies the official order of penalties to one row: first
// -10000 added to each duplicate-n-gram token, then EOS overwritten with
// -10000 while the min length is not reached. The row is copied only when it
// changes, because it belongs to the caller.
func beamPenalize(row []float32, banned []int64, blockEOS bool, eos int64) []float32 {
	if len(banned) == 0 && !blockEOS {
		return row
	}
	out := slices.Clone(row)
	for _, w := range banned {
		out[w] += beamBan
	}
	if blockEOS {
		out[eos] = beamBan
	}
	return out
}

// beamTopK returns the indices of the k largest values, largest first.
// torch.topk leaves the order of ties unspecified; ties go to the lower index
// here so that results are reproducible.
func beamTopK(vals []float32, k int) []int {
	top := make([]int, 0, k)
	for i, v := range vals {
		if len(top) == k && !(v > vals[top[k-1]]) {
			continue
		}
		// Insert after every kept entry that is >= v (they have lower index).
		pos := len(top)
		for pos > 0 && v > vals[top[pos-1]] {
			pos--
		}
		if len(top) < k {
			top = append(top, 0)
		}
		copy(top[pos+1:], top[pos:len(top)-1])
		top[pos] = i
	}
	return top
}

// beamDupNgrams lists the tokens that would complete an n-gram already in
// seq, following get_dup_ngram_candidates in s2s_ft/modeling_decoding.py:
// the context is the last n-1 tokens; nothing is banned when the context
// holds an ignored token, and an ignored token is never banned. For n == 1
// the official slice seq[-0:] is the whole sequence, so every earlier token
// is banned and any ignored token anywhere lifts the ban; that is kept.
func beamDupNgrams(seq []int64, n int, ignore map[int64]bool) []int64 {
	if len(seq) < n {
		return nil
	}
	tail := seq
	if n > 1 {
		tail = seq[len(seq)-(n-1):]
	}
	for _, t := range tail {
		if ignore[t] {
			return nil
		}
	}
	var out []int64
	for i := 0; i < len(seq)-(n-1); i++ {
		match := true
		for j := 0; j < n-1; j++ {
			if tail[j] != seq[i+j] {
				match = false
				break
			}
		}
		if w := seq[i+n-1]; match && !ignore[w] && !slices.Contains(out, w) {
			out = append(out, w)
		}
	}
	return out
}

func beamIgnoreSet(ids []int64) map[int64]bool {
	if len(ids) == 0 {
		return nil
	}
	m := make(map[int64]bool, len(ids))
	for _, id := range ids {
		m[id] = true
	}
	return m
}

// beamLengthNorm is the ranking key of the official back-tracking: the score
// divided by ((5+L)/6)^alpha when alpha > 0, computed in float64 as Python
// does after .tolist().
func beamLengthNorm(score float32, steps int, alpha float64) float64 {
	s := float64(score)
	if alpha > 0 {
		s /= math.Pow(float64(5+steps)/6.0, alpha)
	}
	return s
}

// beamCut splits a raw hypothesis at its first EOS, as decode_seq2seq.py cuts
// the text at the first [SEP].
func beamCut(seq []int64, eos int64) ([]int64, bool) {
	if i := slices.Index(seq, eos); i >= 0 {
		return slices.Clone(seq[:i]), true
	}
	return slices.Clone(seq), false
}

type beamFrame struct {
	ids    []int64
	ptrs   []int
	scores []float32
}

// BeamSearch runs BertForSeq2SeqDecoder.beam_search (s2s-ft) for one source
// and returns its hypotheses best first; the first is what the official code
// outputs. It keeps the official semantics, which differ from the usual
// "set finished hypotheses aside" beam search:
//
//   - step 1 takes the top BeamSize tokens of the single empty prefix; each
//     later step takes the top BeamSize tokens of every beam (after the
//     n-gram and min-length penalties), adds the beam's score, and keeps the
//     top BeamSize of the BeamSize² candidates (ties: lower index first);
//   - a beam that just emitted EOS stays in the beam for that step and is
//     extended at the next one with -10000 added, so it normally drops out;
//   - the search stops at the first step where every beam ends in EOS, or
//     after MaxTgtLength steps;
//   - the candidates are every beam that ended in EOS at any step, plus
//     every beam of the last step, finished or not (this is what happens when
//     no beam finished); they are ranked by NormScore, ties to the earlier
//     step and lower beam slot.
//
// The returned list has each distinct Tokens once, at its best rank. If no
// candidate has a finite score the official code returns [0] (empty text);
// here that is a single empty, unfinished hypothesis with -Inf scores.
func BeamSearch(step StepFunc, opt BeamOptions) ([]BeamHypothesis, error) {
	if err := opt.validate(); err != nil {
		return nil, err
	}
	k := opt.BeamSize
	eos := opt.EOSID
	ignore := beamIgnoreSet(opt.ForbidIgnoreIDs)

	prefixes := [][]int64{{}}
	var banned [][]int64 // per beam, from the previous step's sequences
	var frames []beamFrame
	for t := 1; t <= opt.MaxTgtLength; t++ {
		rows, err := beamScoreRows(step, prefixes, k, eos)
		if err != nil {
			return nil, err
		}
		blockEOS := opt.MinLen > 0 && t <= opt.MinLen
		f := beamFrame{ids: make([]int64, k), ptrs: make([]int, k), scores: make([]float32, k)}
		if t == 1 {
			row := beamPenalize(rows[0], nil, blockEOS, eos)
			for i, w := range beamTopK(row, k) {
				f.ids[i], f.scores[i] = int64(w), row[w]
			}
		} else {
			prev := frames[len(frames)-1]
			cand := make([]float32, k*k)
			candTok := make([]int, k*k)
			for b := 0; b < k; b++ {
				var ban []int64
				if banned != nil {
					ban = banned[b]
				}
				row := beamPenalize(rows[b], ban, blockEOS, eos)
				// kk_scores += last_eos*(-10000) + last_seq_scores, in float32
				// and in that order.
				var finished float32
				if prev.ids[b] == eos {
					finished = beamBan
				}
				carry := finished + prev.scores[b]
				for j, w := range beamTopK(row, k) {
					cand[b*k+j] = row[w] + carry
					candTok[b*k+j] = w
				}
			}
			for i, c := range beamTopK(cand, k) {
				f.ids[i], f.ptrs[i], f.scores[i] = int64(candTok[c]), c/k, cand[c]
			}
		}
		frames = append(frames, f)

		allEOS := true
		next := make([][]int64, k)
		for i := range k {
			if f.ids[i] != eos {
				allEOS = false
			}
			parent := prefixes[0]
			if t > 1 {
				parent = prefixes[f.ptrs[i]]
			}
			next[i] = append(slices.Clip(parent), f.ids[i])
		}
		prefixes = next
		if allEOS {
			break
		}
		if opt.ForbidDuplicateNgrams && t >= opt.NgramSize {
			banned = make([][]int64, k)
			for i, s := range prefixes {
				banned[i] = beamDupNgrams(s, opt.NgramSize, ignore)
			}
		}
	}
	return beamBacktrack(frames, opt), nil
}

type beamCand struct {
	fid, pos int
	norm     float64
}

func beamBacktrack(frames []beamFrame, opt BeamOptions) []BeamHypothesis {
	last := len(frames) - 1
	var cands []beamCand
	for fid, f := range frames {
		for i, w := range f.ids {
			if w != opt.EOSID && fid != last {
				continue
			}
			s := beamLengthNorm(f.scores[i], fid+1, opt.LengthPenalty)
			// The official loop keeps a candidate only if s > max_score,
			// which starts at -inf: -Inf and NaN can never be chosen.
			if s > math.Inf(-1) {
				cands = append(cands, beamCand{fid, i, s})
			}
		}
	}
	if len(cands) == 0 {
		inf := math.Inf(-1)
		return []BeamHypothesis{{Tokens: []int64{}, Score: inf, NormScore: inf}}
	}
	// Stable, so equal keys keep the official scan order (step, then slot).
	slices.SortStableFunc(cands, func(a, b beamCand) int {
		switch {
		case a.norm > b.norm:
			return -1
		case a.norm < b.norm:
			return 1
		}
		return 0
	})
	var out []BeamHypothesis
	for _, c := range cands {
		seq := make([]int64, c.fid+1)
		pos := c.pos
		for fid := c.fid; fid >= 0; fid-- {
			seq[fid] = frames[fid].ids[pos]
			pos = frames[fid].ptrs[pos]
		}
		toks, fin := beamCut(seq, opt.EOSID)
		if slices.ContainsFunc(out, func(h BeamHypothesis) bool { return slices.Equal(h.Tokens, toks) }) {
			continue
		}
		out = append(out, BeamHypothesis{
			Tokens:    toks,
			Finished:  fin,
			Steps:     c.fid + 1,
			Score:     float64(frames[c.fid].scores[c.pos]),
			NormScore: c.norm,
		})
	}
	return out
}

// Greedy decodes by taking the highest-scoring token at each step (ties to
// the lower id) until EOS or MaxTgtLength, applying the same MinLen and
// duplicate-n-gram penalties as BeamSearch so that it is exactly BeamSearch
// with BeamSize 1 (tokens, score and length penalty); BeamSize is ignored.
// It exists as the cheap path and as the reference that beam size 1 is
// tested against.
func Greedy(step StepFunc, opt BeamOptions) (BeamHypothesis, error) {
	opt.BeamSize = 1
	if err := opt.validate(); err != nil {
		return BeamHypothesis{}, err
	}
	ignore := beamIgnoreSet(opt.ForbidIgnoreIDs)
	seq := []int64{}
	var banned []int64
	var score float32
	for t := 1; t <= opt.MaxTgtLength; t++ {
		rows, err := beamScoreRows(step, [][]int64{seq}, 1, opt.EOSID)
		if err != nil {
			return BeamHypothesis{}, err
		}
		row := beamPenalize(rows[0], banned, opt.MinLen > 0 && t <= opt.MinLen, opt.EOSID)
		w := beamTopK(row, 1)[0]
		score += row[w]
		seq = append(seq, int64(w))
		if int64(w) == opt.EOSID {
			break
		}
		if opt.ForbidDuplicateNgrams && t >= opt.NgramSize {
			banned = beamDupNgrams(seq, opt.NgramSize, ignore)
		}
	}
	toks, fin := beamCut(seq, opt.EOSID)
	return BeamHypothesis{
		Tokens:    toks,
		Finished:  fin,
		Steps:     len(seq),
		Score:     float64(score),
		NormScore: beamLengthNorm(score, len(seq), opt.LengthPenalty),
	}, nil
}

// DecodeLikeS2SFT returns what decode_seq2seq.py would output for one source:
// with --beam_size > 1 the best BeamSearch hypothesis; otherwise
// BertForSeq2SeqDecoder.forward's plain argmax loop, which ignores min_len
// and forbid_duplicate_ngrams (they live only in beam_search), so those are
// switched off here. Use BeamSearch or Greedy directly to keep them.
func DecodeLikeS2SFT(step StepFunc, opt BeamOptions) (BeamHypothesis, error) {
	if opt.BeamSize > 1 {
		hyps, err := BeamSearch(step, opt)
		if err != nil {
			return BeamHypothesis{}, err
		}
		return hyps[0], nil
	}
	opt.MinLen = 0
	opt.ForbidDuplicateNgrams = false
	return Greedy(step, opt)
}
