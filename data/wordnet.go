package data

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// WordNetDir is where Debian's wordnet-base package puts WordNet 3.0.
const WordNetDir = "/usr/share/wordnet"

// Synset is one WordNet synonym set from a data.{noun,verb,adj,adv} file.
type Synset struct {
	Offset     int64    // byte offset in its data file: the synset's id within its POS
	POS        byte     // 'n', 'v', 'a', 's' (satellite adjective) or 'r'
	LexName    string   // lexicographer file, e.g. "noun.animal" (45 in all)
	Lemmas     []string // words, with spaces for underscores and adjective markers like (p) removed
	Definition string   // the gloss without its examples
	Examples   []string // the gloss's quoted usage examples, without quotes
}

// WordNetLexNames are WordNet 3.0's lexicographer files by number, as its
// lexnames file lists them (the number is field two of each data line).
var WordNetLexNames = []string{
	"adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal", "noun.artifact",
	"noun.attribute", "noun.body", "noun.cognition", "noun.communication", "noun.event", "noun.feeling",
	"noun.food", "noun.group", "noun.location", "noun.motive", "noun.object", "noun.person",
	"noun.phenomenon", "noun.plant", "noun.possession", "noun.process", "noun.quantity", "noun.relation",
	"noun.shape", "noun.state", "noun.substance", "noun.time", "verb.body", "verb.change",
	"verb.cognition", "verb.communication", "verb.competition", "verb.consumption", "verb.contact",
	"verb.creation", "verb.emotion", "verb.motion", "verb.perception", "verb.possession", "verb.social",
	"verb.stative", "verb.weather", "adj.ppl",
}

// WordNet reads the synsets of the given parts of speech ("noun", "verb",
// "adj", "adv"; all four when none is given) from dir ("" for WordNetDir).
func WordNet(dir string, pos ...string) ([]Synset, error) {
	if dir == "" {
		dir = WordNetDir
	}
	if len(pos) == 0 {
		pos = []string{"noun", "verb", "adj", "adv"}
	}
	var all []Synset
	for _, p := range pos {
		path := filepath.Join(dir, "data."+p)
		f, err := os.Open(path)
		if errors.Is(err, fs.ErrNotExist) {
			hint := ""
			if dir == WordNetDir {
				hint = " (install Debian's wordnet-base: scripts/install_libtorch.sh does)"
			}
			return nil, fmt.Errorf("wordnet: %s not found%s", path, hint)
		}
		if err != nil {
			return nil, fmt.Errorf("wordnet: %w", err)
		}
		syn, err := ParseWordNetData(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("wordnet: %s: %w", path, err)
		}
		all = append(all, syn...)
	}
	return all, nil
}

// ParseWordNetData parses a data file in wndb(5) format: after the licence
// lines (which start with spaces), one synset per line,
//
//	offset lex_filenum ss_type w_cnt(hex) word lex_id ... p_cnt ptr... [frames] | gloss
func ParseWordNetData(r io.Reader) ([]Synset, error) {
	var out []Synset
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		s := sc.Text()
		if s == "" || s[0] == ' ' {
			continue
		}
		head, gloss, ok := strings.Cut(s, " | ")
		if !ok {
			return nil, fmt.Errorf("line %d: no gloss separator", line)
		}
		f := strings.Fields(head)
		if len(f) < 4 {
			return nil, fmt.Errorf("line %d: %d fields, want at least 4", line, len(f))
		}
		off, err1 := strconv.ParseInt(f[0], 10, 64)
		lex, err2 := strconv.Atoi(f[1])
		n, err3 := strconv.ParseInt(f[3], 16, 32)
		if err := errors.Join(err1, err2, err3); err != nil || lex < 0 || lex >= len(WordNetLexNames) || len(f[2]) != 1 || 4+2*int(n) > len(f) {
			return nil, fmt.Errorf("line %d: malformed synset header %q", line, strings.Join(f[:4], " "))
		}
		syn := Synset{Offset: off, POS: f[2][0], LexName: WordNetLexNames[lex]}
		for i := range int(n) {
			w := f[4+2*i]
			if j := strings.IndexByte(w, '('); j > 0 { // adjective position markers: (a), (p), (ip)
				w = w[:j]
			}
			syn.Lemmas = append(syn.Lemmas, strings.ReplaceAll(w, "_", " "))
		}
		syn.Definition, syn.Examples = splitGloss(strings.TrimSpace(gloss))
		out = append(out, syn)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// splitGloss separates a gloss's definition from its quoted examples:
// `draw air into the lungs; "I can breathe"; "she respires"`.
func splitGloss(g string) (string, []string) {
	var def []string
	var ex []string
	for _, part := range strings.Split(g, "; ") {
		part = strings.TrimSpace(part)
		if len(part) >= 2 && part[0] == '"' {
			ex = append(ex, strings.Trim(part, `"`))
		} else if part != "" {
			def = append(def, part)
		}
	}
	return strings.Join(def, "; "), ex
}
