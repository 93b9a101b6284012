// Package config loads experiment configs: TOML files decoded strictly into
// Go structs whose fields carry their defaults. An unknown key, a wrong type
// or an out-of-range value is an error naming the file, the key and its
// line, so a typo never silently runs the default.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"
)

// Validator is implemented by configs that check their values; errors
// should come from Field so they name the key.
type Validator interface {
	Validate() error
}

// FieldError is a bad value of one key.
type FieldError struct {
	Key string // "trainer.max_steps"
	Msg string
}

func (e *FieldError) Error() string { return e.Key + ": " + e.Msg }

// Field makes a FieldError for key.
func Field(key, format string, a ...any) error {
	return &FieldError{Key: key, Msg: fmt.Sprintf(format, a...)}
}

// Load decodes the file at path into dst (a pointer to a struct holding the
// defaults), applies overrides ("section.key=value", values in TOML syntax,
// bare words taken as strings), and validates the result.
func Load(path string, dst any, overrides []string) error {
	var validate func() error
	if v, ok := dst.(Validator); ok {
		validate = v.Validate
	}
	return LoadWith(path, dst, overrides, validate)
}

// LoadWith is Load with the validation given: validate (nil for none) runs
// after the overrides, and a FieldError it returns is located in the file.
func LoadWith(path string, dst any, overrides []string, validate func() error) error {
	src, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return loadSource(path, src, dst, overrides, validate)
}

// loadSource is LoadWith on the file's contents, src.
func loadSource(path string, src []byte, dst any, overrides []string, validate func() error) error {
	if err := decodeStrict(path, src, dst); err != nil {
		return err
	}
	if err := checkFinite(dst); err != nil {
		if line := keyLine(src, indexRE.ReplaceAllString(err.Key, "")); line > 0 {
			return fmt.Errorf("%s:%d: %s", path, line, err.Error())
		}
		return fmt.Errorf("%s: %w", path, err)
	}
	for _, o := range overrides {
		if err := applyOverride(o, dst); err != nil {
			return err
		}
		if err := checkFinite(dst); err != nil {
			return fmt.Errorf("--set %s: %w", o, err)
		}
	}
	if validate != nil {
		if err := validate(); err != nil {
			var fe *FieldError
			if errors.As(err, &fe) {
				if line := keyLine(src, fe.Key); line > 0 {
					return fmt.Errorf("%s:%d: %s", path, line, fe.Error())
				}
			}
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	return nil
}

func decodeStrict(name string, src []byte, dst any) error {
	md, err := toml.NewDecoder(bytes.NewReader(src)).Decode(dst)
	if err != nil {
		var pe toml.ParseError
		var ppe *toml.ParseError
		switch {
		case errors.As(err, &pe):
			return fmt.Errorf("%s:%d: %s", name, pe.Position.Line, pe.Message)
		case errors.As(err, &ppe):
			return fmt.Errorf("%s:%d: %s", name, ppe.Position.Line, ppe.Message)
		}
		// Type mismatches come as plain text: toml: line N (last key "k"): message
		if m := decodeErrRE.FindStringSubmatch(err.Error()); m != nil {
			if m[2] != "" {
				return fmt.Errorf("%s:%s: %s: %s", name, m[1], m[2], m[3])
			}
			return fmt.Errorf("%s:%s: %s", name, m[1], m[3])
		}
		return fmt.Errorf("%s: %w", name, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		var msgs []string
		for _, k := range und {
			if line := keyLine(src, k.String()); line > 0 {
				msgs = append(msgs, fmt.Sprintf("%s:%d: unknown key %q", name, line, k.String()))
			} else {
				msgs = append(msgs, fmt.Sprintf("%s: unknown key %q", name, k.String()))
			}
		}
		return errors.New(strings.Join(msgs, "\n"))
	}
	return nil
}

var decodeErrRE = regexp.MustCompile(`^toml: line (\d+)(?: \(last key "([^"]*)"\))?: (.*)$`)

// bareKeyRE is a TOML bare key: the only key parts -set accepts.
var bareKeyRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// applyOverride sets one key from "section.key=value". The override is
// turned into a small TOML document, so the key must be made of bare keys
// and the value may hold no newline or other control character: either
// could end the line and add keys or tables of its own ("lr=1\n[data]..."),
// which the -set would then set without naming them.
func applyOverride(o string, dst any) error {
	key, val, ok := strings.Cut(o, "=")
	key = strings.TrimSpace(key)
	if !ok || key == "" {
		return fmt.Errorf("--set %q: want section.key=value", o)
	}
	parts := strings.Split(key, ".")
	for _, p := range parts {
		if !bareKeyRE.MatchString(p) {
			return fmt.Errorf("--set %q: key %q: each part of section.key must be letters, digits, _ or -", o, key)
		}
	}
	if i := strings.IndexFunc(val, func(r rune) bool { return (r < 0x20 && r != '\t') || r == 0x7f }); i >= 0 {
		return fmt.Errorf("--set %q: the value holds control character %q, which could set other keys: one -set sets one key", o, val[i])
	}
	table, leaf := parts[:len(parts)-1], parts[len(parts)-1]
	doc := func(v string) string {
		var b strings.Builder
		if len(table) > 0 {
			fmt.Fprintf(&b, "[%s]\n", strings.Join(table, "."))
		}
		fmt.Fprintf(&b, "%s = %s\n", leaf, v)
		return b.String()
	}
	text := doc(strings.TrimSpace(val))
	if _, err := toml.Decode(text, &map[string]any{}); err != nil { // not TOML: a bare string
		text = doc(fmt.Sprintf("%q", strings.TrimSpace(val)))
	}
	if err := decodeStrict("--set "+key, []byte(text), dst); err != nil {
		return err
	}
	return nil
}

// indexRE matches the [i] of slice elements in checkFinite's keys.
var indexRE = regexp.MustCompile(`\[\d+\]`)

// checkFinite refuses a float field (float32 or float64, in nested structs,
// pointers, slices, arrays and maps) that is NaN or infinite, naming its
// dotted TOML key, with [i] for elements. NaN passes every range check a
// Validate can write (v < 0 and v > 1 are both false for it), so without
// this lr = nan or mask_ratio = nan ran, producing NaN losses or nothing.
func checkFinite(dst any) *FieldError {
	return finiteValue(reflect.ValueOf(dst), "", 0)
}

func finiteValue(v reflect.Value, key string, depth int) *FieldError {
	if depth > 64 { // configs are shallow; a cycle of pointers is not a config
		return nil
	}
	join := func(name string) string {
		if key == "" {
			return name
		}
		return key + "." + name
	}
	switch v.Kind() {
	case reflect.Float32, reflect.Float64:
		if f := v.Float(); math.IsNaN(f) || math.IsInf(f, 0) {
			return &FieldError{Key: key, Msg: fmt.Sprintf("must be a finite number, got %s", formatNonFinite(f))}
		}
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			return finiteValue(v.Elem(), key, depth+1)
		}
	case reflect.Struct:
		t := v.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
			k := join(name)
			switch {
			case name == "-":
				continue
			case name == "" && f.Anonymous: // toml inlines untagged embedded structs
				k = key
			case name == "":
				k = join(f.Name)
			}
			if err := finiteValue(v.Field(i), k, depth+1); err != nil {
				return err
			}
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			if err := finiteValue(v.Index(i), fmt.Sprintf("%s[%d]", key, i), depth+1); err != nil {
				return err
			}
		}
	case reflect.Map:
		keys := v.MapKeys()
		names := make([]string, len(keys))
		for i, mk := range keys {
			names[i] = fmt.Sprint(mk.Interface())
		}
		order := make([]int, len(keys))
		for i := range order {
			order[i] = i
		}
		sort.Slice(order, func(a, b int) bool { return names[order[a]] < names[order[b]] })
		for _, i := range order {
			if err := finiteValue(v.MapIndex(keys[i]), join(names[i]), depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

func formatNonFinite(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case f > 0:
		return "+Inf"
	}
	return "-Inf"
}

// keyLine finds the line defining a dotted key ("trainer.max_steps"):
// under the [trainer] header (or the first [[trainer]] with it), or as a
// dotted key, or at the top level.
func keyLine(src []byte, key string) int {
	parts := strings.Split(key, ".")
	leaf := regexp.QuoteMeta(parts[len(parts)-1])
	table := strings.Join(parts[:len(parts)-1], ".")
	header := regexp.MustCompile(`^\s*\[\[?\s*([^\]]+?)\s*\]`)
	assign := regexp.MustCompile(`^\s*("?)` + leaf + `("?)\s*=`)
	dotted := regexp.MustCompile(`^\s*` + regexp.QuoteMeta(key) + `\s*=`)
	current := ""
	for i, line := range strings.Split(string(src), "\n") {
		if m := header.FindStringSubmatch(line); m != nil {
			current = m[1]
			continue
		}
		if current == table && assign.MatchString(line) {
			return i + 1
		}
		if current == "" && dotted.MatchString(line) {
			return i + 1
		}
	}
	return 0
}

// Save writes the resolved config as TOML: the run's provenance.
func Save(path string, cfg any) error {
	var b bytes.Buffer
	if err := toml.NewEncoder(&b).Encode(cfg); err != nil {
		return err
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}
