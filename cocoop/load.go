package cocoop

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/torchmods"
)

// LoadFrozenCLIP loads the CLIP src names (torchmods.LoadCLIP: OpenAI's
// archives, HF folders, a repro run) in a store of its own, freezes every
// parameter (CoOp's build_model turns off the gradients of everything but
// the prompt learner, which lives in the session's store), and loads its
// tokenizer. A cocoop.pretrain run's clip.json gives the heads.
func LoadFrozenCLIP(src CLIPSource, dev gotch.Device, w io.Writer) (*torchmods.LoadedCLIP, Tokenizer, error) {
	o := torchmods.CLIPLoadOptions{Device: dev, VisionHeads: src.VisionHeads, TextHeads: src.TextHeads}
	if b, err := os.ReadFile(filepath.Join(src.Path, pretrainConfigFile)); err == nil {
		var meta pretrainMeta
		if err := json.Unmarshal(b, &meta); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", filepath.Join(src.Path, pretrainConfigFile), err)
		}
		if o.VisionHeads == 0 {
			o.VisionHeads = meta.VisionHeads
		}
		if o.TextHeads == 0 {
			o.TextHeads = meta.TextHeads
		}
	}
	loaded, err := torchmods.LoadCLIP(src.Path, o, w)
	if err != nil {
		return nil, nil, fmt.Errorf("clip.path: %w", err)
	}
	loaded.Store.Freeze()
	tok, err := LoadTokenizer(src.Tokenizer, src.Path)
	if err != nil {
		loaded.Store.Drop()
		return nil, nil, err
	}
	if v, ok := tok.(vocabSized); ok && v.VocabSize() > loaded.Model.Cfg.VocabSize {
		loaded.Store.Drop()
		return nil, nil, fmt.Errorf("clip.tokenizer: %d ids, more than the CLIP's vocabulary of %d", v.VocabSize(), loaded.Model.Cfg.VocabSize)
	}
	return loaded, tok, nil
}

// officialCheckpoint finds the file of a prompt learner saved by the
// official code: in an output folder, its prompt_learner/ folder; in that,
// model-best.pth.tar (what load_model takes by default), else the
// latest model.pth.tar-N. Other paths are returned as they are.
func officialCheckpoint(path string) string {
	st, err := os.Stat(path)
	if err != nil || !st.IsDir() {
		return path
	}
	if sub := filepath.Join(path, "prompt_learner"); isDir(sub) {
		path = sub
	}
	if best := filepath.Join(path, "model-best.pth.tar"); isFile(best) {
		return best
	}
	entries, _ := os.ReadDir(path)
	latest, file := -1, ""
	for _, e := range entries {
		if n, ok := strings.CutPrefix(e.Name(), "model.pth.tar-"); ok {
			if k, err := strconv.Atoi(n); err == nil && k > latest {
				latest, file = k, filepath.Join(path, e.Name())
			}
		}
	}
	if file != "" {
		return file
	}
	return path
}

func isDir(p string) bool { st, err := os.Stat(p); return err == nil && st.IsDir() }

// LoadPromptLearner loads trained prompt-learner weights into store (whose
// parameters are prompt_learner.*): CoCoOp's and CoOp's released files
// (torch.save of {"state_dict": ..., "epoch": ...}, fp16 or fp32; an
// official output folder is searched as load_model searches it), or a
// repro run or checkpoint of cocoop.coop or cocoop.cocoop. As the official
// load_model, token_prefix and token_suffix are dropped (the buffers stay
// those of the current class names); every trainable parameter must load,
// with its shape. It returns what it read from.
func LoadPromptLearner(store *torchmods.Store, path string, w io.Writer) (string, error) {
	src, err := torchmods.Resolve(officialCheckpoint(path))
	if err != nil {
		return "", err
	}
	wf, err := torchmods.ReadWeights(src.File)
	if err != nil {
		return "", err
	}
	// The official files nest the learner under "state_dict" beside the
	// optimizer's and scheduler's state; repro's hold the store's names.
	nested := false
	for _, t := range wf.Tensors {
		if strings.HasPrefix(t.Name, "state_dict.") {
			nested = true
		}
	}
	weights := map[string]*ts.Tensor{}
	defer func() {
		for _, t := range weights {
			t.MustDrop()
		}
	}()
	var dropped []string
	for _, t := range wf.Tensors {
		name := t.Name
		if nested {
			var ok bool
			if name, ok = strings.CutPrefix(name, "state_dict."); !ok {
				continue
			}
		}
		name = strings.TrimPrefix(name, "module.")
		if !strings.HasPrefix(name, "prompt_learner.") {
			name = "prompt_learner." + name
		}
		if name == "prompt_learner.token_prefix" || name == "prompt_learner.token_suffix" {
			dropped = append(dropped, name)
			continue
		}
		x, err := torchmods.FromSafetensors(t, store.Device)
		if err != nil {
			return "", fmt.Errorf("%s: %w", src.File, err)
		}
		weights[name] = x
	}
	rep, err := store.Load(weights, false)
	if err != nil {
		return "", fmt.Errorf("%s: %w", src.File, err)
	}
	var missing []string
	for _, p := range store.Params() {
		if p.Tensor.MustRequiresGrad() && !slices.Contains(rep.Loaded, p.Name) {
			missing = append(missing, p.Name)
		}
	}
	if len(missing) > 0 || len(rep.Mismatched) > 0 {
		sort.Strings(missing)
		return "", fmt.Errorf("%s: not a prompt learner of this task: %s; trainable parameters not loaded: %v", src.File, rep, missing)
	}
	fmt.Fprintf(w, "prompt learner from %s: %s; dropped as load_model drops them: %v\n", src, rep, dropped)
	return src.File, nil
}
