package pmlm

import "fmt"

// Ignore is the label of a position without a prediction (the default
// ignore index of cross-entropy).
const Ignore = -100

// Specials are the token ids Pack writes itself.
type Specials struct {
	Mask   int64 // [M], the conventional mask (also what Corrupt writes)
	Pseudo int64 // [P], the pseudo mask
	Pad    int64 // written after the packed tokens up to the padded length
}

// Kind says what a packed token is.
type Kind uint8

const (
	KindContext Kind = iota // an unmasked token of the corrupted sequence
	KindMasked              // a masked slot of the corrupted sequence: [M], a random id or the kept token
	KindTrue                // an appended copy of a masked token's original id
	KindPseudo              // an appended [P]
	KindPad                 // padding after the packed tokens
)

func (k Kind) String() string {
	switch k {
	case KindContext:
		return "context"
	case KindMasked:
		return "masked"
	case KindTrue:
		return "true"
	case KindPseudo:
		return "pseudo"
	case KindPad:
		return "pad"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Layout is the packed pre-training input of one sequence of n tokens with
// K masked tokens (paper Figure 4):
//
//	[0, n)      the corrupted sequence, position i at index i
//	then, for each factorisation step s = 1.. (block b = Blocks[Order[s-1]]):
//	            |b| [P]s, then b's |b| original tokens
//	[N, Len)    padding, N = n + 2K
//
// Both appended copies reuse the masked slots' position ids and segment
// ids, so the model sees them "as if they have the same position" (Section
// 3.2). The order of the appended groups is a convention only: attention
// is permutation-equivariant once position ids are explicit.
type Layout struct {
	Len    int // padded length: the side of AttnMask
	N      int // packed tokens before padding
	SeqLen int // n, the original sequence's length

	IDs       []int64
	Positions []int64 // original index of the token (0 for padding)
	TypeIDs   []int64 // the original token's segment id (0 for padding)
	Kind      []Kind

	// Weight is create_attention_mask's w: 0 for context and masked slots
	// (and padding), +s for the true tokens of step s, -s for its [P]s.
	Weight []int

	// AttnMask is Len x Len, row-major: AttnMask[i*Len+j] is true when
	// query i may attend to key j. Among the N packed tokens:
	//   - w_i >= 0 (context, masked slot, true token): keys with 0 <= w_j <= w_i;
	//   - w_i = -s ([P] of step s): keys with 0 <= w_j < s, or w_j = -s.
	// So context and masked slots see only each other (w = 0); a true token
	// of step s sees them, the true tokens of steps <= s (its own block
	// bidirectionally), and no [P]; a [P] of step s sees them, the true
	// tokens of earlier steps, and the [P]s of its own block. Nothing but
	// the [P]s of the same step attends to a [P].
	//
	// Masked slots count as context: Figure 5's caption says "Both
	// conventional masks [M] and given context can be attended by all the
	// tokens", and the abstract that they "provide global masking
	// information, so that all the position embeddings are accessible" to
	// PAR. A [P] therefore sees the masked slot at its own position. When
	// Corrupt kept the original token there (10%), the [P] can read its
	// answer, as BERT's [M] does for its own 10% kept tokens; the paper
	// accepts this, and so do we.
	//
	// Padding: no packed row attends to a pad key, and each pad row attends
	// to itself only, so every row has a key (no all -inf softmax row, no
	// NaN) and pad outputs influence nothing.
	AttnMask []bool

	// AELabels hold the original id at every masked slot of the corrupted
	// sequence (whatever Corrupt wrote there) and Ignore elsewhere;
	// PARLabels the original id at every [P] and Ignore elsewhere. Either
	// loss is switched off by not computing it.
	AELabels  []int64
	PARLabels []int64
}

// Allowed reports AttnMask for query i, key j.
func (l *Layout) Allowed(i, j int) bool { return l.AttnMask[i*l.Len+j] }

// attends is create_attention_mask's rule for two packed tokens' weights.
func attends(wq, wk int) bool {
	if wq >= 0 {
		return 0 <= wk && wk <= wq
	}
	return (0 <= wk && wk < -wq) || wk == wq
}

// checkMasking refuses a Masking that does not fit tokens: blocks out of
// range, empty or overlapping, an order that is not a permutation, or a
// corrupted sequence that differs from tokens outside the blocks.
func checkMasking(tokens, typeIDs []int64, m Masking) error {
	n := len(tokens)
	if typeIDs != nil && len(typeIDs) != n {
		return fmt.Errorf("pmlm: %d segment ids for %d tokens", len(typeIDs), n)
	}
	if len(m.Corrupted) != n {
		return fmt.Errorf("pmlm: corrupted sequence of %d tokens for %d tokens", len(m.Corrupted), n)
	}
	masked := make([]bool, n)
	for k, b := range m.Blocks {
		if b.Start < 0 || b.End > n || b.Start >= b.End {
			return fmt.Errorf("pmlm: block %d %v outside [0, %d) or empty", k, b, n)
		}
		for i := b.Start; i < b.End; i++ {
			if masked[i] {
				return fmt.Errorf("pmlm: block %d %v overlaps another at %d", k, b, i)
			}
			masked[i] = true
		}
	}
	seen := make([]bool, len(m.Blocks))
	if len(m.Order) != len(m.Blocks) {
		return fmt.Errorf("pmlm: order %v is not a permutation of %d blocks", m.Order, len(m.Blocks))
	}
	for _, b := range m.Order {
		if b < 0 || b >= len(seen) || seen[b] {
			return fmt.Errorf("pmlm: order %v is not a permutation of %d blocks", m.Order, len(m.Blocks))
		}
		seen[b] = true
	}
	for i := range n {
		if !masked[i] && m.Corrupted[i] != tokens[i] {
			return fmt.Errorf("pmlm: corrupted token %d (%d) differs from the original (%d) outside the blocks", i, m.Corrupted[i], tokens[i])
		}
	}
	return nil
}

// Pack lays out tokens (with segment ids typeIDs, nil for all 0) and their
// Masking as one PMLM input, padded to padTo (0: no padding). Position ids
// are the token indices 0..n-1. It errors when m does not fit tokens or
// padTo is below the packed length n + 2K.
func Pack(tokens, typeIDs []int64, m Masking, sp Specials, padTo int) (*Layout, error) {
	if err := checkMasking(tokens, typeIDs, m); err != nil {
		return nil, err
	}
	n := len(tokens)
	k := 0
	for _, b := range m.Blocks {
		k += b.Len()
	}
	N := n + 2*k
	L := N
	if padTo > 0 {
		if padTo < N {
			return nil, fmt.Errorf("pmlm: %d tokens and %d masked pack to %d, over the padded length %d", n, k, N, padTo)
		}
		L = padTo
	}
	typ := func(i int) int64 {
		if typeIDs == nil {
			return 0
		}
		return typeIDs[i]
	}
	l := &Layout{
		Len: L, N: N, SeqLen: n,
		IDs: make([]int64, L), Positions: make([]int64, L), TypeIDs: make([]int64, L),
		Kind: make([]Kind, L), Weight: make([]int, L), AttnMask: make([]bool, L*L),
		AELabels: make([]int64, L), PARLabels: make([]int64, L),
	}
	put := func(at int, id int64, pos int, kind Kind, w int) {
		l.IDs[at], l.Positions[at], l.TypeIDs[at] = id, int64(pos), typ(pos)
		l.Kind[at], l.Weight[at] = kind, w
		l.AELabels[at], l.PARLabels[at] = Ignore, Ignore
	}
	for i := range n {
		put(i, m.Corrupted[i], i, KindContext, 0)
	}
	for _, b := range m.Blocks {
		for i := b.Start; i < b.End; i++ {
			l.Kind[i], l.AELabels[i] = KindMasked, tokens[i]
		}
	}
	at := n
	for s0, bi := range m.Order {
		s, b := s0+1, m.Blocks[bi]
		for i := b.Start; i < b.End; i++ {
			put(at, sp.Pseudo, i, KindPseudo, -s)
			l.PARLabels[at] = tokens[i]
			at++
		}
		for i := b.Start; i < b.End; i++ {
			put(at, tokens[i], i, KindTrue, s)
			at++
		}
	}
	for i := N; i < L; i++ {
		l.IDs[i], l.Kind[i], l.AELabels[i], l.PARLabels[i] = sp.Pad, KindPad, Ignore, Ignore
		l.AttnMask[i*L+i] = true
	}
	for i := range N {
		for j := range N {
			l.AttnMask[i*L+j] = attends(l.Weight[i], l.Weight[j])
		}
	}
	return l, nil
}

// Naive is the input of a separate forward that predicts one factorisation
// step on its own: see NaiveBlocks.
type Naive struct {
	Step  int   // s, 1-based
	Block Block // the block predicted at step s

	Len       int
	IDs       []int64
	Positions []int64
	TypeIDs   []int64
	AttnMask  []bool // Len x Len, row-major, query i key j

	// PackedIndex[i] is the index in Pack's layout of the token naive
	// token i stands for (same id, position and segment).
	PackedIndex []int
	// Pseudo are the naive indices of the step's [P]s in slot order; the
	// matching packed [P]s are PackedIndex[Pseudo[k]], and their PAR
	// labels Labels[k].
	Pseudo []int
	Labels []int64
}

// NaiveBlocks returns, for each factorisation step s, the input of a naive
// forward that predicts block s by itself with only the context the PMLM
// mask allows it. A standard BERT forward (ids, position ids, segment ids,
// a 2-D attention mask; absolute position embeddings and/or a relative
// bias computed from position ids; dropout off) on it gives at Pseudo the
// same logits, up to float rounding, as the one packed forward of Pack at
// the step's [P]s. That is the key correctness test: one pass with the
// weight mask equals |Order| separate cloze passes.
//
// What "only the allowed context" means is fixed by the mask, not by
// Figure 3's cloze instances. The packed [P]s of step s attend to the
// context and masked slots (w = 0), to the true tokens of steps < s, and to
// each other. Those keys' own hidden states depend, layer by layer, on:
// the w = 0 tokens only (for context and slots), and the w = 0 tokens plus
// the true tokens of steps <= r (for a true token of step r < s). This set
// is closed: nothing in it attends outside it. So the naive input for step
// s is exactly that set:
//
//	[0, n)  the corrupted sequence (with its [M]s), positions 0..n-1
//	then    the true tokens of steps 1..s-1, in step order, at their positions
//	then    the [P]s of step s, at block s's positions
//
// with the mask built group by group (not copied from Pack's weights):
// corrupted tokens see the whole corrupted sequence, bidirectionally; a
// true token of step r sees the corrupted sequence and the true tokens of
// steps <= r; a [P] sees the corrupted sequence, all the earlier true
// tokens and its block's [P]s. Every naive token's visible keys are then
// the packed row's visible keys mapped through PackedIndex, so by induction
// over layers all hidden states agree.
//
// A plain cloze instance (the sequence with earlier blocks filled in and
// block s onwards masked, all bidirectional) would not give the packed
// logits, by design: there the context would attend to the filled-in
// tokens, and the slots of earlier blocks would hold their true ids instead
// of [M]. PMLM computes the context once for all steps (its encodings are
// "reused"), so the context may never see any true masked token, and the
// [M]s stay visible to every step. The same holds for the AE half: the
// corrupted sequence's outputs (the [M] logits) equal those of a plain
// bidirectional forward of Corrupted alone, which is every Naive's first n
// tokens.
func NaiveBlocks(tokens, typeIDs []int64, m Masking, sp Specials) ([]Naive, error) {
	if err := checkMasking(tokens, typeIDs, m); err != nil {
		return nil, err
	}
	n := len(tokens)
	typ := func(i int) int64 {
		if typeIDs == nil {
			return 0
		}
		return typeIDs[i]
	}
	// start[s] is where step s+1's [P]s begin in the packed layout; its
	// true tokens follow them.
	start := make([]int, len(m.Order))
	at := n
	for s, bi := range m.Order {
		start[s] = at
		at += 2 * m.Blocks[bi].Len()
	}
	const corrupted, truth, pseudo = 0, 1, 2
	out := make([]Naive, len(m.Order))
	for s0, bi := range m.Order {
		nv := Naive{Step: s0 + 1, Block: m.Blocks[bi]}
		var group, step []int // per naive token: which group, and its step (0 for corrupted)
		add := func(id int64, pos, packed, g, st int) {
			nv.IDs = append(nv.IDs, id)
			nv.Positions = append(nv.Positions, int64(pos))
			nv.TypeIDs = append(nv.TypeIDs, typ(pos))
			nv.PackedIndex = append(nv.PackedIndex, packed)
			group, step = append(group, g), append(step, st)
		}
		for i := range n {
			add(m.Corrupted[i], i, i, corrupted, 0)
		}
		for r0 := range s0 {
			b := m.Blocks[m.Order[r0]]
			for i := b.Start; i < b.End; i++ {
				add(tokens[i], i, start[r0]+b.Len()+(i-b.Start), truth, r0+1)
			}
		}
		b := nv.Block
		for i := b.Start; i < b.End; i++ {
			nv.Pseudo = append(nv.Pseudo, len(nv.IDs))
			nv.Labels = append(nv.Labels, tokens[i])
			add(sp.Pseudo, i, start[s0]+(i-b.Start), pseudo, s0+1)
		}
		L := len(nv.IDs)
		nv.Len, nv.AttnMask = L, make([]bool, L*L)
		for q := range L {
			for k := range L {
				var ok bool
				switch group[q] {
				case corrupted:
					ok = group[k] == corrupted
				case truth:
					ok = group[k] == corrupted || (group[k] == truth && step[k] <= step[q])
				case pseudo:
					ok = group[k] != pseudo || step[k] == step[q]
				}
				nv.AttnMask[q*L+k] = ok
			}
		}
		out[s0] = nv
	}
	return out, nil
}
