package torchmods

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"sort"
	"strings"
)

// HFConfig is a Hugging Face config.json, read so that a family's config
// reader finds each key whichever transformers version wrote the file.
//
// transformers 5 moved some keys (RoPE's rope_theta and rope_scaling into
// one rope_parameters object, partial_rotary_factor into it too, torch_dtype
// to dtype), and families have always spelled some keys their own way (GPT-2's
// n_embd and layer_norm_epsilon for hidden_size and layer_norm_eps), which
// transformers papers over with each config's attribute_map. Readers ask
// for the 4.x name; HFConfig looks up the other spellings too and records
// which one it used, for the load report.
//
// A key that is absent takes the default the reader passes, which should be
// HF's class default for the family: that is what from_pretrained does, and
// config.json files may leave defaults out (hand-written ones do, and so do
// those saved as a diff against the defaults).
type HFConfig struct {
	Path          string   // the file, for error messages
	ModelType     string   // "bert", "vit_mae"; "" when absent
	Architectures []string // HF classes, "BertForMaskedLM"; empty when absent
	Version       string   // transformers_version, "" when absent
	raw           map[string]any
	used          map[string]string // canonical key -> spelling found, when they differ
}

// hfAliases lists, for a key as transformers 4.x writes it, the other
// spellings seen in config.json files, in the order they are tried. A
// dotted name is a key inside an object.
var hfAliases = map[string][]string{
	// transformers 5 groups RoPE's settings under rope_parameters.
	"rope_theta":            {"rope_parameters.rope_theta"},
	"rope_scaling":          {"rope_parameters"},
	"partial_rotary_factor": {"rope_parameters.partial_rotary_factor"},
	// transformers 4.56+ and 5 write the weights' dtype as dtype.
	"torch_dtype": {"dtype"},
	// attribute_map spellings of other families (GPT-2, T5, BART, Gemma).
	"layer_norm_eps":          {"layer_norm_epsilon", "layernorm_epsilon"},
	"hidden_act":              {"hidden_activation", "activation_function"},
	"hidden_size":             {"n_embd", "d_model"},
	"num_hidden_layers":       {"n_layer", "num_layers"},
	"num_attention_heads":     {"n_head", "num_heads"},
	"max_position_embeddings": {"n_positions"},
	"intermediate_size":       {"n_inner"},
}

// ReadHFConfig reads and parses a config.json.
func ReadHFConfig(path string) (*HFConfig, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseHFConfig(path, b)
}

// ParseHFConfig parses config.json content; path names it in errors.
func ParseHFConfig(path string, b []byte) (*HFConfig, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber() // keep integers exact; vocab sizes and ids are int64
	var raw map[string]any
	if err := d.Decode(&raw); err != nil {
		return nil, fmt.Errorf("%s: not a JSON object: %w", path, err)
	}
	if raw == nil {
		return nil, fmt.Errorf("%s: not a JSON object", path)
	}
	c := &HFConfig{Path: path, raw: raw, used: map[string]string{}}
	var err error
	if c.ModelType, err = c.String("model_type", ""); err != nil {
		return nil, err
	}
	if c.Version, err = c.String("transformers_version", ""); err != nil {
		return nil, err
	}
	if v, ok := raw["architectures"]; ok && v != nil {
		list, ok := v.([]any)
		if !ok {
			return nil, fmt.Errorf("%s: architectures is %s, want a list of class names", path, jsonText(v))
		}
		for _, a := range list {
			s, ok := a.(string)
			if !ok {
				return nil, fmt.Errorf("%s: architectures has %s, want class names", path, jsonText(a))
			}
			c.Architectures = append(c.Architectures, s)
		}
	}
	return c, nil
}

// lookup finds key under its 4.x spelling or an alias. A JSON null counts
// as absent, as HF's configs write null for "the default".
func (c *HFConfig) lookup(key string) (any, string, bool) {
	for _, name := range append([]string{key}, hfAliases[key]...) {
		var v any = c.raw
		found := true
		for _, part := range strings.Split(name, ".") {
			m, ok := v.(map[string]any)
			if !ok {
				found = false
				break
			}
			if v, ok = m[part]; !ok {
				found = false
				break
			}
		}
		if found && v != nil {
			if name != key {
				c.used[key] = name
			}
			return v, name, true
		}
	}
	return nil, "", false
}

// Has reports whether key (or an alias) is set.
func (c *HFConfig) Has(key string) bool { _, _, ok := c.lookup(key); return ok }

// Int is an integer key, def when absent. A float with an integer value
// (768.0) is accepted; anything else is an error naming the file and key.
func (c *HFConfig) Int(key string, def int64) (int64, error) {
	v, name, ok := c.lookup(key)
	if !ok {
		return def, nil
	}
	if n, ok := v.(json.Number); ok {
		if i, err := n.Int64(); err == nil {
			return i, nil
		}
		if f, err := n.Float64(); err == nil && f == math.Trunc(f) && math.Abs(f) < 1<<53 {
			return int64(f), nil
		}
	}
	return 0, fmt.Errorf("%s: %s is %s, want an integer", c.Path, name, jsonText(v))
}

// Float is a number key, def when absent.
func (c *HFConfig) Float(key string, def float64) (float64, error) {
	v, name, ok := c.lookup(key)
	if !ok {
		return def, nil
	}
	if n, ok := v.(json.Number); ok {
		if f, err := n.Float64(); err == nil {
			return f, nil
		}
	}
	return 0, fmt.Errorf("%s: %s is %s, want a number", c.Path, name, jsonText(v))
}

// String is a string key, def when absent.
func (c *HFConfig) String(key, def string) (string, error) {
	v, name, ok := c.lookup(key)
	if !ok {
		return def, nil
	}
	if s, ok := v.(string); ok {
		return s, nil
	}
	return "", fmt.Errorf("%s: %s is %s, want a string", c.Path, name, jsonText(v))
}

// Bool is a boolean key, def when absent.
func (c *HFConfig) Bool(key string, def bool) (bool, error) {
	v, name, ok := c.lookup(key)
	if !ok {
		return def, nil
	}
	if b, ok := v.(bool); ok {
		return b, nil
	}
	return false, fmt.Errorf("%s: %s is %s, want true or false", c.Path, name, jsonText(v))
}

// Rope is a model's rotary position embedding settings, however the file
// spells them.
type Rope struct {
	Type  string  // rope_type: "default", "linear", "dynamic", "yarn", "llama3", ...
	Theta float64 // the base
	// Factor and the rest of the scaling parameters (low_freq_factor,
	// original_max_position_embeddings, ...), by name.
	Params map[string]float64
}

// Rope reads RoPE's settings from 4.x's rope_theta and rope_scaling
// ({"type" or "rope_type": ..., "factor": ...}, or null) or from 5.x's
// rope_parameters ({"rope_type": ..., "rope_theta": ..., ...}), with
// defTheta when the file gives no base.
func (c *HFConfig) Rope(defTheta float64) (Rope, error) {
	r := Rope{Type: "default", Params: map[string]float64{}}
	var err error
	if r.Theta, err = c.Float("rope_theta", defTheta); err != nil {
		return r, err
	}
	v, name, ok := c.lookup("rope_scaling")
	if !ok {
		return r, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return r, fmt.Errorf("%s: %s is %s, want an object", c.Path, name, jsonText(v))
	}
	for k, x := range m {
		switch k {
		case "type", "rope_type":
			s, ok := x.(string)
			if !ok {
				return r, fmt.Errorf("%s: %s.%s is %s, want a string", c.Path, name, k, jsonText(x))
			}
			r.Type = s
		case "rope_theta":
		default:
			n, ok := x.(json.Number)
			if !ok {
				continue // lists (long_factor) and flags are left to the family
			}
			f, err := n.Float64()
			if err != nil {
				return r, fmt.Errorf("%s: %s.%s: %w", c.Path, name, k, err)
			}
			r.Params[k] = f
		}
	}
	return r, nil
}

// Spellings lists the keys found under another spelling than 4.x's
// ("layer_norm_eps as layer_norm_epsilon"), sorted, for load reports.
func (c *HFConfig) Spellings() []string {
	var out []string
	for k, v := range c.used {
		out = append(out, k+" as "+v)
	}
	sort.Strings(out)
	return out
}

// Raw is the value of a top-level key as decoded JSON (numbers are
// json.Number), for keys no reader method covers.
func (c *HFConfig) Raw(key string) (any, bool) { v, ok := c.raw[key]; return v, ok }

func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	if len(b) > 60 {
		return string(b[:57]) + "..."
	}
	return string(b)
}

// WriteHFConfig writes config.json content atomically (a temporary file,
// then a rename), keys sorted and indented as save_pretrained writes them.
func WriteHFConfig(path string, cfg map[string]any) error {
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}
