package torchmods

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/reprolab/repro/torchmods/hub"
	"github.com/reprolab/repro/torchmods/safetensors"
)

// This file is the one place that turns what a user names as weights (a
// file, a folder, a hub reference) into a file to read: every loader goes
// through Resolve, so a form accepted by one command is accepted by all.

// The kinds of WeightSource.
const (
	SourceFile       = "file"             // a weight file named directly
	SourceHFFolder   = "HF folder"        // save_pretrained's folder (config.json beside the weights)
	SourceCheckpoint = "repro checkpoint" // <run>/checkpoints/step-N/ (model.safetensors, state.json)
	SourceRun        = "repro run"        // a run folder: its newest checkpoint
	SourceHub        = "hub"              // hf:ORG/NAME[@REV], resolved in the HF cache
	SourceFolder     = "folder"           // a folder with a weight file and nothing else known
)

// HFWeightFiles are the weight files of a HF model folder, in the order
// transformers prefers them: safetensors before pickles (they cannot run
// code and load without copying), a single file before a sharded index.
var HFWeightFiles = []string{"model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json"}

// WeightSource is what a weight path or spec resolved to.
type WeightSource struct {
	Spec   string // as the user gave it
	Kind   string // one of the Source* constants
	Dir    string // the folder holding File; "" for a file named directly
	File   string // what ReadWeights reads: a weight file or a shard index
	Config string // the folder's config.json; "" when there is none
}

func (s *WeightSource) String() string {
	if s.Spec == s.File {
		return s.File
	}
	return fmt.Sprintf("%s (%s %s)", s.File, s.Kind, s.Spec)
}

// HubOptions are the options Resolve passes to hub.Resolve for hf: specs;
// the zero value follows the environment as huggingface_hub does
// (HF_HUB_CACHE, HF_HUB_OFFLINE, HF_TOKEN, ...). Tests point it at a
// private cache.
var HubOptions hub.Options

// Resolve finds the weights behind spec:
//
//   - a weight file (safetensors, torch.save, or a shard index);
//   - a HF model folder: the first of HFWeightFiles present, and its
//     config.json;
//   - a repro checkpoint folder (model.safetensors) or run folder (its
//     newest checkpoints/step-N);
//   - hf:ORG/NAME[@REV]: a hub repo's folder in the HF cache (fetched
//     unless offline), then as a HF folder.
//
// Errors name the path and what was looked for.
func Resolve(spec string) (*WeightSource, error) {
	if hub.IsSpec(spec) {
		return resolveHub(spec)
	}
	st, err := os.Stat(spec)
	if err != nil {
		return nil, fmt.Errorf("weights: %w", err)
	}
	if !st.IsDir() {
		return &WeightSource{Spec: spec, Kind: SourceFile, File: spec}, nil
	}
	if s, ok := inFolder(spec, spec); ok {
		return s, nil
	}
	ck, err := latestCheckpointDir(spec)
	if err != nil {
		return nil, fmt.Errorf("weights %s: %w", spec, err)
	}
	if ck == "" {
		return nil, fmt.Errorf("weights %s: a folder without %s, and no checkpoints/step-* of a repro run",
			spec, strings.Join(HFWeightFiles, ", "))
	}
	s, ok := inFolder(spec, ck)
	if !ok {
		return nil, fmt.Errorf("weights %s: its newest checkpoint %s has no model.safetensors", spec, ck)
	}
	s.Kind = SourceRun
	return s, nil
}

// inFolder finds the weight file of a HF, checkpoint or other folder.
func inFolder(spec, dir string) (*WeightSource, bool) {
	for _, f := range HFWeightFiles {
		p := filepath.Join(dir, f)
		if st, err := os.Stat(p); err != nil || st.IsDir() {
			continue
		}
		s := &WeightSource{Spec: spec, Kind: SourceFolder, Dir: dir, File: p}
		if exists(filepath.Join(dir, "config.json")) {
			s.Kind, s.Config = SourceHFFolder, filepath.Join(dir, "config.json")
		} else if exists(filepath.Join(dir, "state.json")) {
			s.Kind = SourceCheckpoint
		}
		return s, true
	}
	return nil, false
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// resolveHub fetches (or finds in the cache) config.json and the first of
// HFWeightFiles the repo has, with the shards of an index. A file that is
// missing from the repo (or, offline, from the cache) moves on to the next
// candidate; other errors (access, integrity, network) stop at once, as
// trying further files would only repeat them.
func resolveHub(spec string) (*WeightSource, error) {
	var tried []error
	for _, f := range HFWeightFiles {
		dir, err := hub.Resolve(spec, []string{f}, HubOptions)
		if errors.Is(err, hub.ErrNotFound) || errors.Is(err, hub.ErrOffline) {
			tried = append(tried, err)
			continue
		}
		if err != nil {
			return nil, err
		}
		s := &WeightSource{Spec: spec, Kind: SourceHub, Dir: dir, File: filepath.Join(dir, f)}
		if strings.HasSuffix(f, ".index.json") {
			shards, err := indexShards(s.File)
			if err != nil {
				return nil, err
			}
			if _, err := hub.Resolve(spec, shards, HubOptions); err != nil {
				return nil, err
			}
		}
		if _, err := hub.Resolve(spec, []string{"config.json"}, HubOptions); err == nil {
			s.Config = filepath.Join(dir, "config.json")
		} else if !errors.Is(err, hub.ErrNotFound) && !errors.Is(err, hub.ErrOffline) {
			return nil, err
		}
		return s, nil
	}
	return nil, fmt.Errorf("weights %s: none of %s: %w", spec, strings.Join(HFWeightFiles, ", "), errors.Join(tried...))
}

// indexShards lists the shard files an index names.
func indexShards(index string) ([]string, error) {
	idx, err := safetensors.ReadIndex(index)
	if err != nil {
		return nil, err
	}
	return idx.Shards, nil
}

// ResolveWeights is Resolve's weight file, for callers that need nothing
// else.
func ResolveWeights(path string) (string, error) {
	s, err := Resolve(path)
	if err != nil {
		return "", err
	}
	return s.File, nil
}

// LoadModel loads trained parameters into store, strictly, from anything
// Resolve accepts, under the file's own names (a repro checkpoint's; other
// families' names go through their Family).
func LoadModel(path string, store *Store) error {
	file, err := ResolveWeights(path)
	if err != nil {
		return err
	}
	w, err := LoadWeights(file, store.Device)
	if err != nil {
		return err
	}
	defer func() {
		for _, t := range w {
			t.MustDrop()
		}
	}()
	if _, err := store.Load(w, true); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	return nil
}

// latestCheckpointDir is a repro run folder's newest checkpoint folder
// (checkpoints/step-NNNNNNNN, zero-padded so names sort by step), or "".
func latestCheckpointDir(run string) (string, error) {
	entries, err := os.ReadDir(filepath.Join(run, "checkpoints"))
	if os.IsNotExist(err) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() && strings.HasPrefix(e.Name(), "step-") && !strings.HasSuffix(e.Name(), ".tmp") {
			names = append(names, e.Name())
		}
	}
	if len(names) == 0 {
		return "", nil
	}
	sort.Strings(names)
	return filepath.Join(run, "checkpoints", names[len(names)-1]), nil
}

// TokenizerFiles are the tokenizer files looked for beside a checkpoint's
// weights, in this order: HF's tokenizer.json, then BERT's vocab.txt.
var TokenizerFiles = []string{"tokenizer.json", "vocab.txt"}

// FindTokenizer looks for a tokenizer file (TokenizerFiles) in dir, or on
// the hub for an hf: spec, for the packages that open HF checkpoints with
// their own tokenizer (textclf, ir).
func FindTokenizer(spec, dir string) (string, error) {
	for _, f := range TokenizerFiles {
		if p := filepath.Join(dir, f); fileExists(p) {
			return p, nil
		}
	}
	if hub.IsSpec(spec) {
		var errs []error
		for _, f := range TokenizerFiles {
			d, err := hub.Resolve(spec, []string{f}, HubOptions)
			if err == nil {
				return filepath.Join(d, f), nil
			}
			errs = append(errs, err)
		}
		return "", fmt.Errorf("%s: no tokenizer: %w", spec, errors.Join(errs...))
	}
	return "", fmt.Errorf("%s: no %v beside the weights; set the tokenizer", dir, TokenizerFiles)
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }
