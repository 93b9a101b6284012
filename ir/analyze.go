package ir

import (
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// LuceneEnglishStopwords is Lucene's EnglishAnalyzer.ENGLISH_STOP_WORDS_SET,
// the 33 words that Anserini's DefaultEnglishAnalyzer (its default for every
// BM25 regression, MS MARCO included) removes. It is deliberately short: a
// longer list (NLTK's, say) changes document lengths and so BM25
// scores, and would no longer reproduce Anserini's numbers.
var LuceneEnglishStopwords = []string{
	"a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in",
	"into", "is", "it", "no", "not", "of", "on", "or", "such", "that", "the",
	"their", "then", "there", "these", "they", "this", "to", "was", "will",
	"with",
}

// Analyzer turns text into index terms. It follows the chain of Anserini's
// DefaultEnglishAnalyzer (io.anserini.analysis.DefaultEnglishAnalyzer:
// StandardTokenizer, EnglishPossessiveFilter, LowerCaseFilter, StopFilter
// with Lucene's English stopwords, PorterStemFilter), in that order, so that
// a stopword is matched before stemming and a stemmed form of a stopword is
// kept:
//
//  1. Tokenise as Lucene's StandardTokenizer does, by the word boundaries
//     of Unicode UAX #29: a token is a run of letters, digits and '_'
//     (with combining marks), which also holds together across '.', an
//     apostrophe or ':' between two letters ("u.s.a", "don't") and across
//     '.', ',' or ';' between two digits ("3.14", "1,000"); letters and
//     Katakana do not join; each Han ideograph and Hiragana character is a
//     token of its own; runs of '_' alone are not tokens; tokens longer than
//     255 UTF-16 units are split. Not reproduced: emoji tokens (which Lucene
//     8+ emits) and the Hebrew and regional-indicator rules.
//  2. Possessive: a trailing "'s" (any of the three apostrophes, s or S) is
//     removed, as EnglishPossessiveFilter does.
//  3. Lowercase each character (unicode.ToLower; Lucene's LowerCaseFilter
//     uses Character.toLowerCase).
//  4. Drop stopwords (LuceneEnglishStopwords for DefaultAnalyzer).
//  5. Stem with PorterStem, when stemming is on.
//
// An Analyzer is safe for concurrent use once built.
type Analyzer struct {
	stop map[string]struct{}
	stem bool
	name string
}

// NewAnalyzer builds an analyzer with the given stopwords (nil or empty:
// none; they are lowercased) and optional Porter stemming.
func NewAnalyzer(stopwords []string, stem bool) *Analyzer {
	a := &Analyzer{stop: make(map[string]struct{}, len(stopwords)), stem: stem}
	for _, w := range stopwords {
		a.stop[strings.ToLower(w)] = struct{}{}
	}
	a.name = analyzerName(a.stop, stem)
	return a
}

// DefaultAnalyzer is Anserini's default for English: Lucene's 33 English
// stopwords and Porter stemming.
func DefaultAnalyzer() *Analyzer { return NewAnalyzer(LuceneEnglishStopwords, true) }

// analyzerName describes an analyzer in one line, for IndexStats and logs.
func analyzerName(stop map[string]struct{}, stem bool) string {
	words := mapKeys(stop)
	slices.Sort(words)
	var b strings.Builder
	b.WriteString("tokenize=uax29;possessive;lowercase")
	if len(words) == len(LuceneEnglishStopwords) && sameWords(words, LuceneEnglishStopwords) {
		b.WriteString(";stop=lucene-english-33")
	} else if len(words) > 0 {
		fmt.Fprintf(&b, ";stop=%s", strings.Join(words, ","))
	}
	if stem {
		b.WriteString(";stem=porter-lucene")
	}
	return b.String()
}

func sameWords(sorted []string, list []string) bool {
	l := slices.Clone(list)
	slices.Sort(l)
	return slices.Equal(sorted, l)
}

// String describes the analysis chain in one line (IndexStats.Analyzer).
func (a *Analyzer) String() string { return a.name }

// Analyze returns the terms of text, in order, duplicates kept.
func (a *Analyzer) Analyze(text string) []string {
	return a.AppendTerms(nil, text)
}

// AppendTerms appends the terms of text to dst and returns it.
func (a *Analyzer) AppendTerms(dst []string, text string) []string {
	forEachToken(text, func(tok string) {
		tok = stripPossessive(tok)
		tok = lower(tok)
		if tok == "" {
			return
		}
		if _, ok := a.stop[tok]; ok {
			return
		}
		if a.stem {
			tok = PorterStem(tok)
		}
		dst = append(dst, tok)
	})
	return dst
}

// Tokenize splits text into tokens as step 1 of Analyzer describes, without
// lowercasing, stopping or stemming.
func Tokenize(text string) []string {
	var out []string
	forEachToken(text, func(tok string) { out = append(out, tok) })
	return out
}

// Word-break classes of Unicode's UAX #29, as far as StandardTokenizer's
// tokens depend on them.
type wbClass uint8

const (
	wbOther     wbClass = iota
	wbLetter            // ALetter (and Hebrew_Letter, Hangul, South-East Asian scripts)
	wbNumeric           // decimal digits
	wbKatakana          // Katakana: joins only with Katakana and ExtendNumLet
	wbExtNumLet         // '_' and other connector punctuation
	wbMidLetter         // ':' '·' ...: inside a word between letters
	wbMidNum            // ',' ';' ...: inside a number between digits
	wbMidNumLet         // '.' and apostrophes: either
	wbExtend            // combining marks, ZWJ, format characters: transparent
	wbIdeo              // Han ideographs and Hiragana: one token per character
)

func wordBreakClass(r rune) wbClass {
	switch r {
	case '_':
		return wbExtNumLet
	case '.', '\'', '\u2018', '\u2019', '\u2024', '\ufe52', '\uff07', '\uff0e':
		return wbMidNumLet
	case ':', '\u00b7', '\u0387', '\u05f4', '\u2027', '\ufe13', '\ufe55', '\uff1a':
		return wbMidLetter
	case ',', ';', '\u037e', '\u0589', '\u060c', '\u060d', '\u066c', '\u07f8', '\u2044',
		'\ufe10', '\ufe14', '\ufe50', '\ufe54', '\uff0c', '\uff1b':
		return wbMidNum
	case '\u200d', '\u200c':
		return wbExtend
	}
	switch {
	case r < 0x80:
		switch {
		case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z':
			return wbLetter
		case '0' <= r && r <= '9':
			return wbNumeric
		}
		return wbOther
	case unicode.Is(unicode.Han, r) || unicode.Is(unicode.Hiragana, r):
		return wbIdeo
	case unicode.Is(unicode.Katakana, r) || r == '\u30fc':
		return wbKatakana
	case unicode.IsLetter(r):
		return wbLetter
	case unicode.IsDigit(r):
		return wbNumeric
	case unicode.IsMark(r) || unicode.Is(unicode.Cf, r):
		return wbExtend
	case unicode.Is(unicode.Pc, r):
		return wbExtNumLet
	}
	return wbOther
}

// joins reports whether two adjacent word characters stay in one token
// (UAX #29 rules WB5, WB8-WB10, WB13, WB13a and WB13b).
func joins(a, b wbClass) bool {
	if a == wbKatakana || b == wbKatakana {
		return (a == wbKatakana || a == wbExtNumLet) && (b == wbKatakana || b == wbExtNumLet)
	}
	return true
}

func isWordClass(c wbClass) bool {
	return c == wbLetter || c == wbNumeric || c == wbKatakana || c == wbExtNumLet
}

// maxTokenLength is StandardTokenizer's default: longer tokens are split
// into pieces of at most this many UTF-16 units.
const maxTokenLength = 255

// forEachToken calls fn with each token of text (step 1 of Analyzer).
func forEachToken(text string, fn func(string)) {
	start := -1      // byte offset of the current token, -1 outside one
	var prev wbClass // class of the token's last word character
	hasWord := false // the token has a letter or digit (not only '_')
	emit := func(end int) {
		if start >= 0 && hasWord {
			emitChopped(text[start:end], fn)
		}
		start, hasWord = -1, false
	}
	for i := 0; i < len(text); {
		r, size := utf8.DecodeRuneInString(text[i:])
		c := wordBreakClass(r)
		switch {
		case c == wbExtend:
			// Attaches to what precedes it (WB4); outside a token, ignored.
		case isWordClass(c):
			if start >= 0 && !joins(prev, c) {
				emit(i)
			}
			if start < 0 {
				start = i
			}
			prev = c
			hasWord = hasWord || c != wbExtNumLet
		case start >= 0 && (c == wbMidLetter || c == wbMidNum || c == wbMidNumLet):
			// WB6/WB7: letter (MidLetter|MidNumLet) letter;
			// WB11/WB12: digit (MidNum|MidNumLet) digit.
			next := nextNonExtend(text[i+size:])
			if prev == wbLetter && next == wbLetter && c != wbMidNum ||
				prev == wbNumeric && next == wbNumeric && c != wbMidLetter {
				break
			}
			emit(i)
		case c == wbIdeo:
			emit(i)
			emitChopped(text[i:i+size], fn)
		default:
			emit(i)
		}
		i += size
	}
	emit(len(text))
}

// nextNonExtend is the class of the first character of s that is not an
// Extend or Format character.
func nextNonExtend(s string) wbClass {
	for _, r := range s {
		if c := wordBreakClass(r); c != wbExtend {
			return c
		}
	}
	return wbOther
}

// emitChopped calls fn with tok, split into pieces of maxTokenLength UTF-16
// units as StandardTokenizer splits overlong tokens.
func emitChopped(tok string, fn func(string)) {
	n, start := 0, 0
	for i, r := range tok {
		w := 1
		if r > 0xFFFF {
			w = 2
		}
		if n+w > maxTokenLength {
			fn(tok[start:i])
			start, n = i, 0
		}
		n += w
	}
	fn(tok[start:])
}

func isApostrophe(r rune) bool { return r == '\'' || r == '\u2019' || r == '\uff07' }

// stripPossessive removes a trailing apostrophe-s, as Lucene's
// EnglishPossessiveFilter does.
func stripPossessive(tok string) string {
	if n := len(tok); n >= 2 && (tok[n-1] == 's' || tok[n-1] == 'S') {
		r, size := utf8.DecodeLastRuneInString(tok[:n-1])
		if isApostrophe(r) {
			return tok[:n-1-size]
		}
	}
	return tok
}

// lower lowercases tok, without allocating when it is already lowercase
// ASCII (the common case).
func lower(tok string) string {
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		if c >= utf8.RuneSelf || ('A' <= c && c <= 'Z') {
			return strings.Map(unicode.ToLower, tok)
		}
	}
	return tok
}

// PorterStem stems one lowercase word with the Porter algorithm exactly as
// Lucene's org.apache.lucene.analysis.en.PorterStemmer (used by
// PorterStemFilter, Anserini's default "porter" stemmer) does. That class is
// Martin Porter's own Java release 3, which differs from the 1980 paper in
// the ways his reference implementations do:
//   - step 2 maps -bli to -ble (the paper: -abli to -able) and adds
//     -logi to -log, so "archaeology" stems to "archaeolog" here and to
//     "archaeologi" by the paper (and by Snowball's "porter");
//   - words of one or two characters are returned unchanged.
//
// It is not Porter2 (Snowball's "english"), which differs on many more words.
// Characters are compared as UTF-16 code units, like Java chars; anything but
// a, e, i, o, u (and y after a consonant) counts as a consonant.
func PorterStem(word string) string {
	if isASCII(word) {
		b := []byte(word)
		n := porterStem(b)
		if n == len(word) && string(b[:n]) == word {
			return word
		}
		return string(b[:n])
	}
	u := utf16.Encode([]rune(word))
	n := porterStem(u)
	return string(utf16.Decode(u[:n]))
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// porterStem stems b in place and returns the new length. The buffer never
// grows: every rule replaces a suffix by one no longer than it (step 1's
// "ies"->"i", "at"->"ate" after removing "ed"/"ing", and so on).
func porterStem[T byte | uint16](b []T) int {
	p := porter[T]{b: b, k: len(b) - 1}
	if p.k > 1 { // Lucene: if (k > k0 + 1) with k0 = 0
		p.step1()
		p.step2()
		p.step3()
		p.step4()
		p.step5()
		p.step6()
	}
	return p.k + 1
}

// porter is the state of Lucene's PorterStemmer: b[0..k] is the word, j a
// position set by ends(). k0 is always 0 here.
type porter[T byte | uint16] struct {
	b    []T
	j, k int
}

// cons reports whether b[i] is a consonant.
func (p *porter[T]) cons(i int) bool {
	switch p.b[i] {
	case 'a', 'e', 'i', 'o', 'u':
		return false
	case 'y':
		if i == 0 {
			return true
		}
		return !p.cons(i - 1)
	}
	return true
}

// m measures the number of consonant sequences in b[0..j]: <c>(vc)^m<v>.
func (p *porter[T]) m() int {
	n, i := 0, 0
	for {
		if i > p.j {
			return n
		}
		if !p.cons(i) {
			break
		}
		i++
	}
	i++
	for {
		for {
			if i > p.j {
				return n
			}
			if p.cons(i) {
				break
			}
			i++
		}
		i++
		n++
		for {
			if i > p.j {
				return n
			}
			if !p.cons(i) {
				break
			}
			i++
		}
		i++
	}
}

// vowelInStem reports whether b[0..j] contains a vowel.
func (p *porter[T]) vowelInStem() bool {
	for i := 0; i <= p.j; i++ {
		if !p.cons(i) {
			return true
		}
	}
	return false
}

// doublec reports whether b[j-1], b[j] is a double consonant.
func (p *porter[T]) doublec(j int) bool {
	if j < 1 || p.b[j] != p.b[j-1] {
		return false
	}
	return p.cons(j)
}

// cvc reports whether b[i-2..i] is consonant-vowel-consonant with the last
// not w, x or y (used to restore an e: hop(e), but not snow, box, tray).
func (p *porter[T]) cvc(i int) bool {
	if i < 2 || !p.cons(i) || p.cons(i-1) || !p.cons(i-2) {
		return false
	}
	switch p.b[i] {
	case 'w', 'x', 'y':
		return false
	}
	return true
}

// ends reports whether b[0..k] ends with s, and then sets j to just before it.
func (p *porter[T]) ends(s string) bool {
	l := len(s)
	o := p.k - l + 1
	if o < 0 {
		return false
	}
	for i := 0; i < l; i++ {
		if p.b[o+i] != T(s[i]) {
			return false
		}
	}
	p.j = p.k - l
	return true
}

// setto replaces b[j+1..k] with s.
func (p *porter[T]) setto(s string) {
	o := p.j + 1
	for i := 0; i < len(s); i++ {
		p.b[o+i] = T(s[i])
	}
	p.k = p.j + len(s)
}

// r replaces the suffix found by ends with s when m() > 0.
func (p *porter[T]) r(s string) {
	if p.m() > 0 {
		p.setto(s)
	}
}

// step1 removes plurals and -ed or -ing (Porter's steps 1a and 1b).
func (p *porter[T]) step1() {
	if p.b[p.k] == 's' {
		switch {
		case p.ends("sses"):
			p.k -= 2
		case p.ends("ies"):
			p.setto("i")
		case p.b[p.k-1] != 's':
			p.k--
		}
	}
	if p.ends("eed") {
		if p.m() > 0 {
			p.k--
		}
	} else if (p.ends("ed") || p.ends("ing")) && p.vowelInStem() {
		p.k = p.j
		switch {
		case p.ends("at"):
			p.setto("ate")
		case p.ends("bl"):
			p.setto("ble")
		case p.ends("iz"):
			p.setto("ize")
		case p.doublec(p.k):
			ch := p.b[p.k]
			p.k--
			if ch == 'l' || ch == 's' || ch == 'z' {
				p.k++
			}
		default:
			if p.m() == 1 && p.cvc(p.k) {
				p.setto("e")
			}
		}
	}
}

// step2 turns a terminal y into i when the stem has a vowel (step 1c).
func (p *porter[T]) step2() {
	if p.ends("y") && p.vowelInStem() {
		p.b[p.k] = 'i'
	}
}

// step3 maps double suffixes to single ones (Porter's step 2).
func (p *porter[T]) step3() {
	if p.k == 0 {
		return
	}
	var rules [][2]string
	switch p.b[p.k-1] {
	case 'a':
		rules = [][2]string{{"ational", "ate"}, {"tional", "tion"}}
	case 'c':
		rules = [][2]string{{"enci", "ence"}, {"anci", "ance"}}
	case 'e':
		rules = [][2]string{{"izer", "ize"}}
	case 'l':
		rules = [][2]string{{"bli", "ble"}, {"alli", "al"}, {"entli", "ent"}, {"eli", "e"}, {"ousli", "ous"}}
	case 'o':
		rules = [][2]string{{"ization", "ize"}, {"ation", "ate"}, {"ator", "ate"}}
	case 's':
		rules = [][2]string{{"alism", "al"}, {"iveness", "ive"}, {"fulness", "ful"}, {"ousness", "ous"}}
	case 't':
		rules = [][2]string{{"aliti", "al"}, {"iviti", "ive"}, {"biliti", "ble"}}
	case 'g':
		rules = [][2]string{{"logi", "log"}}
	}
	p.firstRule(rules)
}

// firstRule applies the first rule whose suffix matches (only the first:
// Lucene breaks out of the switch after it whether or not m() > 0).
func (p *porter[T]) firstRule(rules [][2]string) {
	for _, rule := range rules {
		if p.ends(rule[0]) {
			p.r(rule[1])
			return
		}
	}
}

// step4 handles -ic-, -full, -ness and so on (Porter's step 3).
func (p *porter[T]) step4() {
	var rules [][2]string
	switch p.b[p.k] {
	case 'e':
		rules = [][2]string{{"icate", "ic"}, {"ative", ""}, {"alize", "al"}}
	case 'i':
		rules = [][2]string{{"iciti", "ic"}}
	case 'l':
		rules = [][2]string{{"ical", "ic"}, {"ful", ""}}
	case 's':
		rules = [][2]string{{"ness", ""}}
	}
	p.firstRule(rules)
}

// step5 removes -ant, -ence and so on in context <c>vcvc<v> (Porter's step 4).
func (p *porter[T]) step5() {
	if p.k == 0 {
		return
	}
	found := false
	switch p.b[p.k-1] {
	case 'a':
		found = p.ends("al")
	case 'c':
		found = p.ends("ance") || p.ends("ence")
	case 'e':
		found = p.ends("er")
	case 'i':
		found = p.ends("ic")
	case 'l':
		found = p.ends("able") || p.ends("ible")
	case 'n':
		found = p.ends("ant") || p.ends("ement") || p.ends("ment") || p.ends("ent")
	case 'o':
		if p.ends("ion") && p.j >= 0 && (p.b[p.j] == 's' || p.b[p.j] == 't') {
			found = true
		} else {
			found = p.ends("ou")
		}
	case 's':
		found = p.ends("ism")
	case 't':
		found = p.ends("ate") || p.ends("iti")
	case 'u':
		found = p.ends("ous")
	case 'v':
		found = p.ends("ive")
	case 'z':
		found = p.ends("ize")
	}
	if found && p.m() > 1 {
		p.k = p.j
	}
}

// step6 removes a final -e when m() > 1 (or m() == 1 and not *o), and
// reduces -ll to -l when m() > 1 (Porter's step 5).
func (p *porter[T]) step6() {
	p.j = p.k
	if p.b[p.k] == 'e' {
		a := p.m()
		if a > 1 || a == 1 && !p.cvc(p.k-1) {
			p.k--
		}
	}
	if p.b[p.k] == 'l' && p.doublec(p.k) && p.m() > 1 {
		p.k--
	}
}
