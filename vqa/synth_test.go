package vqa

import (
	"bytes"
	"encoding/json"
	"errors"
	"hash/fnv"
	"image"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/reprolab/repro/internal/config"
)

// synthDefaultSet is the default set, generated once for the tests that
// only read it.
var synthDefaultSet = sync.OnceValues(func() (*SynthSet, error) { return Synthesize(DefaultSynthOptions()) })

func synthDefault(t *testing.T) *SynthSet {
	t.Helper()
	s, err := synthDefaultSet()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// synthSmall is a set small enough to write to disk in a test.
func synthSmall() SynthOptions {
	return SynthOptions{Size: 48, Train: 20, Val: 5, Test: 12, PretrainExtra: 6, QuestionsPerImage: 5, Seed: 7}
}

func synthSplitItems(s *SynthSet) map[string][]Item {
	return map[string][]Item{SynthTrain: s.Train, SynthVal: s.Val, SynthTest: s.Test}
}

func TestSynthDeterministic(t *testing.T) {
	a := synthDefault(t)
	b, err := Synthesize(DefaultSynthOptions())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a.Images, b.Images) || !reflect.DeepEqual(a.Train, b.Train) || !reflect.DeepEqual(a.Val, b.Val) ||
		!reflect.DeepEqual(a.Test, b.Test) || !reflect.DeepEqual(a.Captions, b.Captions) || !reflect.DeepEqual(a.Answers, b.Answers) {
		t.Fatal("two syntheses with the same options differ")
	}
	o := DefaultSynthOptions()
	o.Seed++
	c, err := Synthesize(o)
	if err != nil {
		t.Fatal(err)
	}
	same := 0
	for i := range a.Images {
		if bytes.Equal(a.Images[i].Pixels, c.Images[i].Pixels) {
			same++
		}
	}
	if same > 0 || reflect.DeepEqual(a.Train, c.Train) {
		t.Fatalf("another seed gives %d identical images (of %d) or identical questions", same, len(a.Images))
	}
}

func TestSynthImagesDoNotDependOnOtherSplits(t *testing.T) {
	o := synthSmall()
	a, err := Synthesize(o)
	if err != nil {
		t.Fatal(err)
	}
	o.Train, o.PretrainExtra, o.QuestionsPerImage = 3, 0, 2
	b, err := Synthesize(o)
	if err != nil {
		t.Fatal(err)
	}
	for _, im := range b.Images {
		other, _ := a.Image(im.Name)
		if !bytes.Equal(im.Pixels, other.Pixels) || im.Caption != other.Caption {
			t.Fatalf("%s changed with the other splits' sizes", im.Name)
		}
	}
}

func TestSynthWriteIsDeterministicAndReadsBack(t *testing.T) {
	s, err := Synthesize(synthSmall())
	if err != nil {
		t.Fatal(err)
	}
	d1, d2 := t.TempDir(), t.TempDir()
	if err := s.Write(d1); err != nil {
		t.Fatal(err)
	}
	s2, _ := Synthesize(synthSmall())
	if err := s2.Write(d2); err != nil {
		t.Fatal(err)
	}
	files := synthFiles(t, d1)
	if !slices.Equal(files, synthFiles(t, d2)) || len(files) != len(s.Images)+6 {
		t.Fatalf("written files differ or miss: %d files for %d images", len(files), len(s.Images))
	}
	for _, f := range files {
		b1, _ := os.ReadFile(filepath.Join(d1, f))
		b2, _ := os.ReadFile(filepath.Join(d2, f))
		if !bytes.Equal(b1, b2) {
			t.Fatalf("%s differs between two writes of the same set", f)
		}
	}

	for split, items := range synthSplitItems(s) {
		var recs []map[string]any
		synthReadJSON(t, filepath.Join(d1, map[string]string{SynthTrain: "trainset.json", SynthVal: "valset.json", SynthTest: "testset.json"}[split]), &recs)
		if len(recs) != len(items) {
			t.Fatalf("%s: %d records for %d items", split, len(recs), len(items))
		}
		for i, r := range recs {
			it := items[i]
			want := map[string]any{"qid": json.Number(it.QID), "image_name": it.Image, "image_organ": it.Organ, "answer": it.Answer,
				"answer_type": it.AnswerType, "question_type": it.QuestionType, "question": it.Question}
			for k, v := range want {
				got := r[k]
				if f, ok := got.(float64); ok {
					got = json.Number(strconv.FormatFloat(f, 'f', -1, 64))
				}
				if got != v {
					t.Fatalf("%s record %d: %s = %v, want %v", split, i, k, r[k], v)
				}
			}
			if _, err := os.Stat(filepath.Join(d1, "images", it.Image)); err != nil {
				t.Fatalf("%s record %d: %v", split, i, err)
			}
		}
	}
	var answers []string
	synthReadJSON(t, filepath.Join(d1, "answer_list.json"), &answers)
	if !slices.Equal(answers, s.Answers) {
		t.Fatal("answer_list.json differs from Answers")
	}
	var caps []struct{ Image, Caption string }
	synthReadJSON(t, filepath.Join(d1, "captions.json"), &caps)
	if len(caps) != s.Opt.Train+s.Opt.PretrainExtra {
		t.Fatalf("%d captions for %d train and %d extra images", len(caps), s.Opt.Train, s.Opt.PretrainExtra)
	}
	for _, c := range caps {
		im, ok := s.Image(c.Image)
		if !ok || c.Caption != im.Caption || (im.Split != SynthTrain && im.Split != SynthExtra) {
			t.Fatalf("caption pair %+v does not match a train or extra image", c)
		}
		f, err := os.Open(filepath.Join(d1, "images", c.Image))
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		g, ok := img.(*image.Gray)
		if !ok || g.Rect != image.Rect(0, 0, s.Opt.Size, s.Opt.Size) || !bytes.Equal(g.Pix, im.Pixels) {
			t.Fatalf("%s does not read back as the %d-pixel grey image generated", c.Image, s.Opt.Size)
		}
	}
	readme, err := os.ReadFile(filepath.Join(d1, "README.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, site := range SynthHeldOutSites() {
		if !strings.Contains(string(readme), site.String()) {
			t.Fatalf("README.txt does not name the held-out site %q", site)
		}
	}
}

func synthFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

func synthReadJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func TestSynthSplitsAreDisjoint(t *testing.T) {
	s := synthDefault(t)
	o := s.Opt
	want := map[string]int{SynthTrain: o.Train, SynthVal: o.Val, SynthTest: o.Test, SynthExtra: o.PretrainExtra}
	got := map[string]int{}
	names := map[string]bool{}
	content := map[uint64]string{}
	for _, im := range s.Images {
		got[im.Split]++
		if names[im.Name] {
			t.Fatalf("image name %s repeats", im.Name)
		}
		names[im.Name] = true
		h := fnv.New64a()
		h.Write(im.Pixels)
		if prev, dup := content[h.Sum64()]; dup {
			t.Fatalf("%s and %s have the same pixels", prev, im.Name)
		}
		content[h.Sum64()] = im.Name
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("images per split %v, want %v", got, want)
	}
	for split, items := range synthSplitItems(s) {
		perImage := map[string]int{}
		for _, it := range items {
			im, ok := s.Image(it.Image)
			if !ok || im.Split != split {
				t.Fatalf("%s item %s is about %s, not an image of the split", split, it.QID, it.Image)
			}
			perImage[it.Image]++
		}
		if len(perImage) != want[split] {
			t.Fatalf("%s: questions about %d images, want all %d", split, len(perImage), want[split])
		}
		for name, n := range perImage {
			if n != o.QuestionsPerImage {
				t.Fatalf("%s has %d questions, want %d", name, n, o.QuestionsPerImage)
			}
		}
	}
	qids := map[string]bool{}
	for _, items := range synthSplitItems(s) {
		for _, it := range items {
			if qids[it.QID] {
				t.Fatalf("qid %s repeats", it.QID)
			}
			qids[it.QID] = true
		}
	}
}

func TestSynthHeldOutSites(t *testing.T) {
	s := synthDefault(t)
	type key struct {
		split string
		site  SynthSite
	}
	seen := map[key]int{}
	for _, im := range s.Images {
		held := false
		for _, l := range im.Lesions {
			seen[key{im.Split, l.Site()}]++
			held = held || synthIsHeldOut(l.Site())
		}
		if held != im.HeldOut {
			t.Fatalf("%s: HeldOut is %v, its lesions say %v", im.Name, im.HeldOut, held)
		}
	}
	for _, site := range SynthHeldOutSites() {
		for _, split := range []string{SynthTrain, SynthVal, SynthExtra} {
			if n := seen[key{split, site}]; n > 0 {
				t.Errorf("%d lesions in the %s in %s images", n, site, split)
			}
		}
		if seen[key{SynthTest, site}] == 0 {
			t.Errorf("no test lesion in the %s", site)
		}
		// The parts are seen in training: the organ with the other side,
		// and the side in some other organ.
		other := map[string]string{"left": "right", "right": "left"}[site.Side]
		if seen[key{SynthTrain, SynthSite{site.Organ, other}}] == 0 {
			t.Errorf("no train lesion in the %s", SynthSite{site.Organ, other})
		}
		sideElsewhere := false
		for k := range seen {
			sideElsewhere = sideElsewhere || (k.split == SynthTrain && k.site.Side == site.Side && k.site.Organ != site.Organ)
		}
		if !sideElsewhere {
			t.Errorf("no train lesion on the %s outside the %s", site.Side, site.Organ)
		}
		// Some test question asks where the lesion of an image whose only
		// lesion is at the held-out site is.
		asked := false
		for _, it := range s.Test {
			im, _ := s.Image(it.Image)
			asked = asked || (it.QuestionType == synthQPos && len(im.Lesions) == 1 && im.Lesions[0].Site() == site)
		}
		if !asked {
			t.Errorf("no test position question about a lone lesion in the %s", site)
		}
	}
	if len(s.HeldOut) != len(SynthHeldOutSites()) {
		t.Fatalf("HeldOut has %d descriptions for %d sites", len(s.HeldOut), len(SynthHeldOutSites()))
	}
	// The answers naming a held-out paired site occur in test only.
	for _, it := range append(slices.Clone(s.Train), s.Val...) {
		if it.Answer == "left kidney" || it.Answer == "right lung" {
			t.Fatalf("train or val item %s answers %q", it.QID, it.Answer)
		}
	}
}

func TestSynthAnswerList(t *testing.T) {
	s := synthDefault(t)
	if !slices.IsSorted(s.Answers) || len(slices.Compact(slices.Clone(s.Answers))) != len(s.Answers) {
		t.Fatal("Answers are not sorted and unique")
	}
	used := map[string]bool{}
	for _, items := range synthSplitItems(s) {
		for _, it := range items {
			if _, ok := slices.BinarySearch(s.Answers, it.Answer); !ok {
				t.Fatalf("answer %q of item %s is not in the answer list", it.Answer, it.QID)
			}
			used[it.Answer] = true
			if it.Answer != strings.ToLower(it.Answer) || it.Question != strings.ToLower(it.Question) {
				t.Fatalf("item %s is not lower-case: %q -> %q", it.QID, it.Question, it.Answer)
			}
		}
	}
	if len(used) != len(s.Answers) {
		t.Fatalf("%d answers listed, %d used", len(s.Answers), len(used))
	}
}

func TestSynthClosedShareAndTypes(t *testing.T) {
	s := synthDefault(t)
	for split, items := range synthSplitItems(s) {
		if f := synthClosedFraction(items); f < 0.52 || f > 0.64 {
			t.Errorf("%s: closed share %.3f, want about VQA-RAD's 0.58", split, f)
		}
		types := map[string]bool{}
		for _, it := range items {
			yesNo := it.Answer == "yes" || it.Answer == "no"
			switch {
			case it.AnswerType != "OPEN" && it.AnswerType != "CLOSED":
				t.Fatalf("item %s: answer type %q", it.QID, it.AnswerType)
			case (it.AnswerType == "CLOSED") != yesNo:
				t.Fatalf("item %s: %s question answered %q", it.QID, it.AnswerType, it.Answer)
			case !slices.Contains(SynthQuestionTypes(), it.QuestionType):
				t.Fatalf("item %s: question type %q", it.QID, it.QuestionType)
			}
			types[it.QuestionType+" "+it.AnswerType] = true
			im, _ := s.Image(it.Image)
			if it.Organ != synthOrganCode(im.Region) {
				t.Fatalf("item %s: organ %q for a %s image", it.QID, it.Organ, im.Region)
			}
		}
		for _, qt := range SynthQuestionTypes() {
			for _, at := range []string{"OPEN", "CLOSED"} {
				if !types[qt+" "+at] && !(qt == synthQPres && at == "OPEN") {
					t.Errorf("%s: no %s %s question", split, at, qt)
				}
			}
		}
	}
}

// synthTruth answers a question from the image's ground truth alone, by
// the words of the question, independently of how the generator chose the
// answer. ok is false for a question it does not recognise.
func synthTruth(im *SynthImage, q string) (answer string, ok bool) {
	yes := func(b bool) (string, bool) { return synthYes(b), true }
	n := len(im.Lesions)
	has := func(label string) bool {
		for _, l := range im.Lesions {
			if im.Organs[l.Part] == label {
				return true
			}
		}
		return false
	}
	// The value among vs that q names; the longest match wins, so that
	// "left kidney" is preferred to "kidney".
	named := func(vs []string) string {
		best := ""
		for _, v := range vs {
			if strings.Contains(q, " "+v+" ") || strings.Contains(q, " "+v+"?") || strings.HasPrefix(q, v+" ") {
				if len(v) > len(best) {
					best = v
				}
			}
		}
		return best
	}
	var one SynthLesion
	if n == 1 {
		one = im.Lesions[0]
	}
	cmp := map[bool]string{true: "brighter", false: "darker"}
	switch {
	case q == "what imaging modality is this?" || q == "what type of imaging is this?" || q == "how was this image taken?":
		return im.Modality, true
	case strings.Contains(q, "ct scan") || strings.Contains(q, "an mri") || strings.Contains(q, "an x-ray"):
		m := map[bool]string{true: "ct"}[strings.Contains(q, "ct scan")] + map[bool]string{true: "mri"}[strings.Contains(q, "mri")] +
			map[bool]string{true: "x-ray"}[strings.Contains(q, "x-ray")]
		return yes(m == im.Modality)
	case q == "in what plane is this image taken?" || q == "which plane is this image in?" || q == "what plane is shown?":
		return im.Plane, true
	case named([]string{"axial", "coronal", "sagittal"}) != "":
		return yes(named([]string{"axial", "coronal", "sagittal"}) == im.Plane)
	case q == "what part of the body is shown?" || q == "what organ system is imaged?" || q == "which body region is this?":
		return im.Region, true
	case strings.HasPrefix(q, "is this an image of the") || strings.HasPrefix(q, "does this image show the"):
		return yes(named(synthRegions) == im.Region)
	case strings.HasPrefix(q, "how many lesions") || q == "what is the number of lesions?":
		return strconv.Itoa(n), true
	case q == "is there more than one lesion?" || q == "are there multiple lesions?":
		return yes(n > 1)
	case q == "are there any lesions?" || q == "is there a lesion in this image?" || q == "is there an abnormality?":
		return yes(n > 0)
	case strings.HasPrefix(q, "is there a lesion in the") || strings.HasPrefix(q, "does the"):
		return yes(has(named(im.Organs)))
	case n == 1 && (q == "where is the lesion?" || q == "where is the lesion located?" || q == "which organ is the lesion in?"):
		return im.Organs[one.Part], true
	case n == 1 && (q == "which side is the lesion on?" || q == "is the lesion on the left or the right?"):
		return one.Side, true
	case n == 1 && strings.HasPrefix(q, "is the lesion in the upper or lower"):
		return one.Level, true
	case n == 1 && strings.HasPrefix(q, "is the lesion on the"):
		return yes(named([]string{"left", "right"}) == one.Side)
	case n == 1 && (strings.HasPrefix(q, "is the lesion in the upper part") || strings.HasPrefix(q, "is the lesion in the lower part")):
		return yes(named([]string{"upper", "lower"}) == one.Level)
	case n == 1 && strings.HasPrefix(q, "is the lesion in the"):
		return yes(named(im.Organs) == im.Organs[one.Part])
	case n == 1 && (q == "is the lesion large?" || q == "is the lesion small?"):
		return yes(named([]string{"large", "small"}) == synthSize(one.Large))
	case n == 1 && (q == "what size is the lesion?" || q == "how large is the lesion?"):
		return synthSize(one.Large), true
	case n == 1 && strings.HasPrefix(q, "is the lesion brighter or darker"):
		return cmp[one.Bright], true
	case n == 1 && (strings.HasPrefix(q, "is the lesion brighter than") || strings.HasPrefix(q, "is the lesion darker than")):
		return yes(named([]string{"brighter", "darker"}) == cmp[one.Bright])
	case n == 1 && strings.Contains(q, " or "):
		return synthDensity(im.Modality, one.Bright), true
	case n == 1 && (strings.HasPrefix(q, "is the lesion hyper") || strings.HasPrefix(q, "is the lesion hypo")):
		return yes(strings.Contains(q, "hyper") == one.Bright)
	case n > 1 && q == "are the lesions on the same side?":
		for _, l := range im.Lesions {
			if l.Side != im.Lesions[0].Side {
				return "no", true
			}
		}
		return "yes", true
	case n > 1 && strings.HasPrefix(q, "are all the lesions"):
		for _, l := range im.Lesions {
			if strings.Contains(q, "large") != l.Large && !strings.Contains(q, "hyp") ||
				strings.Contains(q, "hyper") != l.Bright && strings.Contains(q, "hyp") {
				return "no", true
			}
		}
		return "yes", true
	}
	return "", false
}

func TestSynthAnswersMatchGroundTruth(t *testing.T) {
	s := synthDefault(t)
	for _, items := range synthSplitItems(s) {
		for _, it := range items {
			im, _ := s.Image(it.Image)
			want, ok := synthTruth(im, it.Question)
			if !ok {
				t.Fatalf("item %s: unrecognised question %q", it.QID, it.Question)
			}
			if it.Answer != want {
				t.Fatalf("item %s (%s, %d lesions): %q answered %q, the ground truth says %q", it.QID, im.Name, len(im.Lesions), it.Question, it.Answer, want)
			}
		}
	}
}

// TestSynthPixelsMatchGroundTruth checks each lesion in the pixels: its
// disk is where the ground truth says, inside its organ, on the side and
// at the level stated, and its core is brighter or darker than the organ
// around it as its intensity says. The caption names each lesion.
func TestSynthPixelsMatchGroundTruth(t *testing.T) {
	s := synthDefault(t)
	size := s.Opt.Size
	for _, im := range s.Images {
		labels := map[uint8]int{}
		for _, v := range im.lesionMap {
			if v > 0 {
				labels[v]++
			}
		}
		if len(labels) != len(im.Lesions) {
			t.Fatalf("%s: %d lesions drawn, %d in the ground truth", im.Name, len(labels), len(im.Lesions))
		}
		if got := strings.Count(im.Caption, " lesion in the "); got != len(im.Lesions) {
			t.Fatalf("%s: caption %q describes %d lesions, want %d", im.Name, im.Caption, got, len(im.Lesions))
		}
		for k, l := range im.Lesions {
			synthCheckLesion(t, im, size, k, l)
		}
	}
}

func synthCheckLesion(t *testing.T, im *SynthImage, size, k int, l SynthLesion) {
	t.Helper()
	sh := im.shapes[l.Part]
	s := float64(size)
	if sh.tissue != l.Organ || im.Organs[l.Part] != sh.label() {
		t.Fatalf("%s lesion %d: organ %s, drawn in %s", im.Name, k, l.Organ, im.Organs[l.Part])
	}
	left := l.X < sh.cx*s
	if synthPaired(l.Organ) {
		left = sh.cx < 0.5
	}
	if left != (l.Side == "left") || (l.Y < sh.cy*s) != (l.Level == "upper") {
		t.Fatalf("%s lesion %d at (%.1f, %.1f) is called %s %s", im.Name, k, l.X, l.Y, l.Level, l.Side)
	}
	if !strings.Contains(im.Caption, synthWhere(l)) {
		t.Fatalf("%s: caption %q does not place lesion %d (%s)", im.Name, im.Caption, k, synthWhere(l))
	}
	var core, ring []float64
	for p := range im.Pixels {
		x, y := float64(p%size)+0.5, float64(p/size)+0.5
		d := math.Hypot(x-l.X, y-l.Y)
		inDisk := d <= l.R
		if inDisk != (im.lesionMap[p] == uint8(k+1)) {
			t.Fatalf("%s lesion %d: pixel %d is in the disk %v, in the lesion map %v", im.Name, k, p, inDisk, !inDisk)
		}
		if inDisk && im.organMap[p] != uint8(l.Part+1) {
			t.Fatalf("%s lesion %d leaves its organ at pixel %d", im.Name, k, p)
		}
		switch {
		case d <= max(l.R-1, 0.75):
			core = append(core, float64(im.Pixels[p]))
		case d >= l.R+1 && synthClearOrgan(im, size, p, l.Part):
			ring = append(ring, float64(im.Pixels[p]))
		}
	}
	if len(core) == 0 || len(ring) == 0 {
		t.Fatalf("%s lesion %d: %d core and %d organ pixels", im.Name, k, len(core), len(ring))
	}
	diff := synthMean(core) - synthMean(ring)
	if (l.Bright && diff < 20) || (!l.Bright && diff > -20) {
		t.Fatalf("%s lesion %d (bright %v, %s): core %.1f, organ %.1f", im.Name, k, l.Bright, im.Modality, synthMean(core), synthMean(ring))
	}
}

// synthClearOrgan reports whether pixel p and its eight neighbours are all
// organ part and none is in a lesion, so that the x-ray blur mixes nothing
// else into it.
func synthClearOrgan(im *SynthImage, size, p, part int) bool {
	x, y := p%size, p/size
	for dy := -1; dy <= 1; dy++ {
		for dx := -1; dx <= 1; dx++ {
			xx, yy := x+dx, y+dy
			if xx < 0 || yy < 0 || xx >= size || yy >= size {
				return false
			}
			q := yy*size + xx
			if im.organMap[q] != uint8(part+1) || im.lesionMap[q] != 0 {
				return false
			}
		}
	}
	return true
}

func synthMean(v []float64) float64 {
	sum := 0.0
	for _, x := range v {
		sum += x
	}
	return sum / float64(len(v))
}

func TestSynthCoversTheGrid(t *testing.T) {
	s := synthDefault(t)
	seen := map[string]bool{}
	for _, im := range s.Images {
		seen[im.Region+"/"+im.Plane+"/"+im.Modality] = true
		for _, l := range im.Lesions {
			seen[l.Organ+"/"+synthSize(l.Large)+"/"+synthBrightWord(l.Bright)] = true
		}
		seen["count/"+strconv.Itoa(len(im.Lesions))] = true
	}
	for _, r := range synthRegions {
		for _, p := range synthPlanes(r) {
			for _, m := range synthModalities {
				if !seen[r+"/"+p+"/"+m] {
					t.Errorf("no %s %s of the %s", p, m, r)
				}
			}
		}
	}
	for _, o := range []string{"brain", "lung", "heart", "liver", "kidney"} {
		for _, sz := range []string{"small", "large"} {
			for _, b := range []string{"bright", "dark"} {
				if !seen[o+"/"+sz+"/"+b] {
					t.Errorf("no %s %s lesion in the %s", sz, b, o)
				}
			}
		}
	}
	for n := range 4 {
		if !seen["count/"+strconv.Itoa(n)] {
			t.Errorf("no image with %d lesions", n)
		}
	}
}

func synthBrightWord(b bool) string {
	if b {
		return "bright"
	}
	return "dark"
}

func TestSynthOptionsAreValidated(t *testing.T) {
	for key, mod := range map[string]func(*SynthOptions){
		"synth.size":                func(o *SynthOptions) { o.Size = 16 },
		"synth.train":               func(o *SynthOptions) { o.Train = 0 },
		"synth.val":                 func(o *SynthOptions) { o.Val = -1 },
		"synth.test":                func(o *SynthOptions) { o.Test = 3 },
		"synth.pretrain_extra":      func(o *SynthOptions) { o.PretrainExtra = -2 },
		"synth.questions_per_image": func(o *SynthOptions) { o.QuestionsPerImage = 0 },
	} {
		o := synthSmall()
		mod(&o)
		_, err := Synthesize(o)
		var fe *config.FieldError
		if !errors.As(err, &fe) || fe.Key != key {
			t.Errorf("%s: error %v, want one naming the key", key, err)
		}
	}
}

func TestSynthPixelsLookup(t *testing.T) {
	s, err := Synthesize(synthSmall())
	if err != nil {
		t.Fatal(err)
	}
	want := s.Images[0].Pixels
	for _, name := range []string{"train_00001", "train_00001.png", "images/train_00001.png"} {
		got, err := s.Pixels(name)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("Pixels(%q): %v", name, err)
		}
		got[0]++
		if s.Images[0].Pixels[0] == got[0] {
			t.Fatal("Pixels returns the image's own slice")
		}
	}
	if _, err := s.Pixels("nope_00001"); err == nil {
		t.Fatal("Pixels of an unknown image succeeds")
	}
}
