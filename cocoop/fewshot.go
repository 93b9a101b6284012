package cocoop

import (
	"fmt"
	"image"
	"slices"
)

// This file is the protocol's bookkeeping on a dataset's items, as CoOp's
// datasets do it through Dassl: K-shot sampling (DatasetBase.
// generate_fewshot_dataset), the base-to-new split (subsample_classes in
// datasets/oxford_pets.py, which every dataset calls) and the class names
// a split's prompts are built from (DatasetBase.get_lab2cname).

// Datum is one labelled image, Dassl's Datum: a file, or an image held in
// memory (the generated scenes).
type Datum struct {
	ImPath    string
	Label     int
	ClassName string
	Image     image.Image // nil for a file
}

// FewShot is Dassl's generate_fewshot_dataset(items, num_shots=k) with
// random.seed(seed) just before, as train.py's set_random_seed leaves
// Python's generator when a dataset is built: items grouped by label in
// the order labels first appear (split_dataset_by_label's dict), then per
// label random.sample(group, k), or the whole group when it has fewer than
// k (repeat=False, the default every CoOp dataset uses: no item is
// repeated). k < 1 returns the items as they are. The generator continues
// across labels, so the draws depend on the items' order, which is the
// split file's.
func FewShot(items []Datum, k int, seed int64) []Datum {
	if k < 1 {
		return items
	}
	return FewShotFrom(NewPyRandom(seed), items, k)
}

// FewShotFrom is FewShot drawing from r, for a caller that samples more
// than one split from one generator (the official code samples train,
// then val with min(k, 4) shots).
func FewShotFrom(r *PyRandom, items []Datum, k int) []Datum {
	var order []int
	groups := map[int][]Datum{}
	for _, it := range items {
		if _, ok := groups[it.Label]; !ok {
			order = append(order, it.Label)
		}
		groups[it.Label] = append(groups[it.Label], it)
	}
	var out []Datum
	for _, label := range order {
		g := groups[label]
		if len(g) < k {
			out = append(out, g...)
			continue
		}
		for _, i := range r.Sample(len(g), k) {
			out = append(out, g[i])
		}
	}
	return out
}

// The subsample modes of DATASET.SUBSAMPLE_CLASSES.
const (
	SubsampleAll  = "all"
	SubsampleBase = "base"
	SubsampleNew  = "new"
)

// Subsample is subsample_classes(*splits, subsample=mode): the labels
// present in the first split, sorted; base is the first ceil(n/2) of them
// and new the rest; every split keeps the items of the chosen labels,
// relabelled 0, 1, ... in that sorted order. "all" returns the splits as
// they are.
func Subsample(mode string, splits ...[]Datum) ([][]Datum, error) {
	switch mode {
	case SubsampleAll:
		return splits, nil
	case SubsampleBase, SubsampleNew:
	default:
		return nil, fmt.Errorf("subsample %q: want all, base or new", mode)
	}
	if len(splits) == 0 {
		return nil, nil
	}
	var labels []int
	for _, it := range splits[0] {
		if !slices.Contains(labels, it.Label) {
			labels = append(labels, it.Label)
		}
	}
	slices.Sort(labels)
	m := (len(labels) + 1) / 2 // math.ceil(n / 2)
	selected := labels[:m]
	if mode == SubsampleNew {
		selected = labels[m:]
	}
	relabel := make(map[int]int, len(selected))
	for i, y := range selected {
		relabel[y] = i
	}
	out := make([][]Datum, len(splits))
	for s, split := range splits {
		out[s] = []Datum{}
		for _, it := range split {
			if y, ok := relabel[it.Label]; ok {
				it.Label = y
				out[s] = append(out[s], it)
			}
		}
	}
	return out, nil
}

// ClassNames is get_lab2cname's class list: the name of each label found
// in items, in label order. Labels must run 0..n-1 without a gap (Dassl
// takes num_classes = max label + 1) and each must have one name; a split
// that breaks this, or one with no items at all, is an error naming the
// label.
func ClassNames(items []Datum) ([]string, error) {
	names := map[int]string{}
	top := -1
	for _, it := range items {
		if it.Label < 0 {
			return nil, fmt.Errorf("label %d of %q is negative", it.Label, it.ImPath)
		}
		if n, ok := names[it.Label]; ok && n != it.ClassName {
			return nil, fmt.Errorf("label %d has two class names, %q and %q", it.Label, n, it.ClassName)
		}
		names[it.Label] = it.ClassName
		top = max(top, it.Label)
	}
	if len(items) == 0 {
		return nil, fmt.Errorf("no items, so no classes: the split or class folders hold no images")
	}
	out := make([]string, top+1)
	for y := range out {
		n, ok := names[y]
		if !ok {
			return nil, fmt.Errorf("no item has label %d (labels run to %d): every class needs a training item", y, top)
		}
		out[y] = n
	}
	return out, nil
}
