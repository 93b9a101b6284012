// Package config loads experiment configs: TOML files decoded strictly into
// Go structs whose fields carry their defaults. An unknown key, a wrong type
// or an out-of-range value is an error naming the file, the key and its
// line, so a typo never silently runs the default.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"regexp"
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
	src, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := decodeStrict(path, src, dst); err != nil {
		return err
	}
	for _, o := range overrides {
		if err := applyOverride(o, dst); err != nil {
			return err
		}
	}
	if v, ok := dst.(Validator); ok {
		if err := v.Validate(); err != nil {
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

// applyOverride sets one key from "section.key=value".
func applyOverride(o string, dst any) error {
	key, val, ok := strings.Cut(o, "=")
	key = strings.TrimSpace(key)
	if !ok || key == "" {
		return fmt.Errorf("--set %q: want section.key=value", o)
	}
	parts := strings.Split(key, ".")
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

// keyLine finds the line defining a dotted key ("trainer.max_steps"):
// under the [trainer] header, or as a dotted key, or at the top level.
func keyLine(src []byte, key string) int {
	parts := strings.Split(key, ".")
	leaf := regexp.QuoteMeta(parts[len(parts)-1])
	table := strings.Join(parts[:len(parts)-1], ".")
	header := regexp.MustCompile(`^\s*\[\s*([^\]]+?)\s*\]`)
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
