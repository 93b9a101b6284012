package cliptok

import (
	"regexp"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Clean is what SimpleTokenizer.encode does to text before splitting it
// into words: basic_clean (ftfy.fix_text, html.unescape twice, strip),
// whitespace_clean (each run of whitespace one space, strip), then
// Python's str.lower(). Each step is Python's, character for character:
// strip removes what str.isspace calls space (White_Space and U+001C to
// U+001F), the runs are of White_Space (the regex module's \s), lower is
// the full lower-casing of Python 3.11 (İ becomes "i̇", a capital sigma
// at the end of a word "ς"), html.unescape decodes HTML5's named and
// numeric references with its rules for invalid ones and for names
// without ";".
//
// ftfy is not available to Go, so fix_text is rebuilt from ftfy 6.3.1's
// source (github.com/rspeer/python-ftfy at
// 74dd0452b48286a3770013b3a02755313bd5575e) with its default config, except
// for the repairs that guess: what is here is exactly ftfy's
//
//   - unescape_html (its own, stricter than html.unescape: only
//     references ending in ";", plus all-caps ones such as &EACUTE;;
//     not on a line holding "<", nor on any line after one, as ftfy's
//     "auto" does),
//   - fix_c1_controls (U+0080 to U+009F read as Windows-1252),
//   - fix_latin_ligatures (ﬁ as fi, ĳ as ij, ...),
//   - fix_character_width (fullwidth and halfwidth forms, and U+3000, as
//     their NFKC forms: "ＬＯＵＤ" as "LOUD"),
//   - uncurl_quotes (‘ ’ ‚ ‛ ʼ as ', “ ” „ ‟ as "),
//   - fix_line_breaks, remove_terminal_escapes (ANSI colour codes),
//     remove_control_chars (C0 controls but \t \n \f \r, DEL, U+206A to
//     U+206F, U+FEFF, U+FFF9 to U+FFFC),
//   - NFC normalisation,
//
// line by line and repeated until nothing changes, as fix_text does. So
// curly quotes, ligatures and fullwidth letters, which clean text has,
// give CLIP's ids (don’t is don't). What is missing is fix_encoding, the
// mojibake repair: text that was UTF-8 decoded as Latin-1, Windows-125x,
// MacRoman or CP437 ("sÃ³" for "só", "â€™" for "’") is re-decoded by
// ftfy when its badness heuristic (badness.py) flags it, together with
// its sub-steps restore_byte_a0, replace_lossy_sequences and
// decode_inconsistent_utf8. Here such text stays as it is. ftfy leaves
// ASCII text and text its heuristic does not flag unchanged by
// fix_encoding, so for those (every string of testdata/ids.json but the
// ones marked mojibake) the result is ftfy's. fix_surrogates has nothing
// to do in Go (a string holds no surrogates; invalid UTF-8 is decoded as
// Python's errors="replace" first). The Unicode tables are Go's (Unicode
// 15) where Python 3.11's are 14.0: characters new in 15 may differ.
func Clean(text string) string { return clean(text, true) }

// clean is Clean, with ftfy's fixes or without them (fix_text as the
// identity, as testdata/gen_ids.py's stub ftfy).
func clean(text string, ftfy bool) string {
	text = validUTF8(text)
	if ftfy {
		text = fixText(text)
	}
	text = pyStrip(htmlUnescape(htmlUnescape(text)))
	text = pyStrip(collapseWhitespace(text))
	return PyLower(text)
}

// validUTF8 reads invalid UTF-8 as Python's errors="replace" does.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return decodeUTF8Replace([]byte(s))
}

// isPySpace is str.isspace: White_Space and the separators U+001C to
// U+001F (bidirectional class B or S), which strip() removes but the
// regex module's \s does not match.
func isPySpace(r rune) bool { return unicode.IsSpace(r) || r >= 0x1c && r <= 0x1f }

func pyStrip(s string) string { return strings.TrimFunc(s, isPySpace) }

// collapseWhitespace is re.sub(r'\s+', ' ', text) with the regex module,
// whose \s is White_Space (unicode.IsSpace).
func collapseWhitespace(s string) string {
	var b strings.Builder
	space := false
	for _, r := range s {
		if unicode.IsSpace(r) {
			if !space {
				b.WriteByte(' ')
			}
			space = true
			continue
		}
		space = false
		b.WriteRune(r)
	}
	return b.String()
}

// PyLower is Python's str.lower(): the simple lower-case mapping but for
// U+0130 (İ, "i" + U+0307, SpecialCasing.txt's one unconditional lower
// mapping of more than one character) and the capital sigma, "ς" in
// Final_Sigma context and "σ" elsewhere. Code that ports Python text
// normalisation (CLIP's, MUMC's pre_question) lower-cases with it. The
// Unicode tables are Go's, which may be a version apart from the
// Python's; invalid UTF-8 bytes become U+FFFD.
func PyLower(s string) string {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			ascii = false
			break
		}
	}
	if ascii {
		return strings.ToLower(s)
	}
	rs := []rune(s)
	var b strings.Builder
	for i, r := range rs {
		switch r {
		case 0x130:
			b.WriteString("i\u0307")
		case 0x3a3:
			if finalSigma(rs, i) {
				b.WriteRune(0x3c2)
			} else {
				b.WriteRune(0x3c3)
			}
		default:
			b.WriteRune(unicode.ToLower(r))
		}
	}
	return b.String()
}

// finalSigma is CPython's handle_capital_sigma: a cased character before
// rs[i] (case-ignorable ones skipped) and none after it.
func finalSigma(rs []rune, i int) bool {
	j := i - 1
	for j >= 0 && caseIgnorable(rs[j]) {
		j--
	}
	if j < 0 || !cased(rs[j]) {
		return false
	}
	j = i + 1
	for j < len(rs) && caseIgnorable(rs[j]) {
		j++
	}
	return j == len(rs) || !cased(rs[j])
}

// cased is Unicode's Cased property: Lu, Ll, Lt, Other_Lowercase,
// Other_Uppercase.
func cased(r rune) bool {
	return unicode.In(r, unicode.Lu, unicode.Ll, unicode.Lt, unicode.Other_Lowercase, unicode.Other_Uppercase)
}

// caseIgnorable is Unicode's Case_Ignorable: Mn, Me, Cf, Lm, Sk and the
// Word_Break MidLetter, MidNumLet and Single_Quote characters.
func caseIgnorable(r rune) bool {
	switch r {
	case '\'', '.', ':', 0xb7, 0x387, 0x55f, 0x5f4, 0x2018, 0x2019, 0x2024, 0x2027, 0xfe13, 0xfe52, 0xfe55, 0xff07, 0xff0e, 0xff1a:
		return true
	}
	return unicode.In(r, unicode.Mn, unicode.Me, unicode.Cf, unicode.Lm, unicode.Sk)
}

// charRef is html._charref.
var charRef = regexp.MustCompile(`&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)`)

// htmlUnescape is Python's html.unescape.
func htmlUnescape(s string) string {
	if !strings.Contains(s, "&") {
		return s
	}
	return charRef.ReplaceAllStringFunc(s, func(m string) string { return replaceCharRef(m[1:]) })
}

// replaceCharRef is html._replace_charref on the reference s (without
// its "&").
func replaceCharRef(s string) string {
	if s[0] == '#' {
		digits, base := s[1:], 10
		if digits[0] == 'x' || digits[0] == 'X' {
			digits, base = digits[1:], 16
		}
		num, err := strconv.ParseInt(strings.TrimRight(digits, ";"), base, 64)
		if err != nil || num > unicode.MaxRune {
			num = unicode.MaxRune + 1 // out of range: U+FFFD below, as Python's big ints
		}
		if r, ok := invalidCharRefs[num]; ok {
			return string(r)
		}
		if num >= 0xd800 && num <= 0xdfff || num > unicode.MaxRune {
			return "\ufffd"
		}
		if invalidCodepoint(num) {
			return ""
		}
		return string(rune(num))
	}
	if v, ok := html5Entities[s]; ok {
		return v
	}
	rs := []rune(s)
	for x := len(rs) - 1; x > 1; x-- { // the longest prefix that HTML5 decodes without ";"
		if v, ok := html5Entities[string(rs[:x])]; ok {
			return v + string(rs[x:])
		}
	}
	return "&" + s
}

// invalidCharRefs is html._invalid_charrefs: numeric references that
// decode to something else, mostly Windows-1252's reading of 0x80-0x9F
// (which is also ftfy's sloppy-windows-1252: the five undefined bytes
// stand for themselves).
var invalidCharRefs = map[int64]rune{
	0x00: 0xfffd, 0x0d: '\r', 0x80: 0x20ac, 0x81: 0x81, 0x82: 0x201a, 0x83: 0x192, 0x84: 0x201e, 0x85: 0x2026,
	0x86: 0x2020, 0x87: 0x2021, 0x88: 0x2c6, 0x89: 0x2030, 0x8a: 0x160, 0x8b: 0x2039, 0x8c: 0x152, 0x8d: 0x8d,
	0x8e: 0x17d, 0x8f: 0x8f, 0x90: 0x90, 0x91: 0x2018, 0x92: 0x2019, 0x93: 0x201c, 0x94: 0x201d, 0x95: 0x2022,
	0x96: 0x2013, 0x97: 0x2014, 0x98: 0x2dc, 0x99: 0x2122, 0x9a: 0x161, 0x9b: 0x203a, 0x9c: 0x153, 0x9d: 0x9d,
	0x9e: 0x17e, 0x9f: 0x178,
}

// invalidCodepoint is html._invalid_codepoints: references to these
// decode to nothing.
func invalidCodepoint(n int64) bool {
	switch {
	case n >= 0x1 && n <= 0x8, n == 0xb, n >= 0xe && n <= 0x1f, n >= 0x7f && n <= 0x9f, n >= 0xfdd0 && n <= 0xfdef:
		return true
	}
	return n&0xfffe == 0xfffe // U+FFFE, U+FFFF, U+1FFFE, ... U+10FFFF
}

// decodeUTF8Replace is bytes.decode("utf-8", errors="replace"): each
// maximal prefix of a valid sequence that is cut short, or each byte
// that starts none, becomes one U+FFFD.
func decodeUTF8Replace(b []byte) string {
	var sb strings.Builder
	for i := 0; i < len(b); {
		c := b[i]
		if c < 0x80 {
			sb.WriteByte(c)
			i++
			continue
		}
		need, lo, hi := 0, byte(0x80), byte(0xbf)
		switch {
		case c >= 0xc2 && c <= 0xdf:
			need = 1
		case c == 0xe0:
			need, lo = 2, 0xa0
		case c == 0xed:
			need, hi = 2, 0x9f
		case c >= 0xe1 && c <= 0xef:
			need = 2
		case c == 0xf0:
			need, lo = 3, 0x90
		case c == 0xf4:
			need, hi = 3, 0x8f
		case c >= 0xf1 && c <= 0xf3:
			need = 3
		default:
			sb.WriteRune(utf8.RuneError)
			i++
			continue
		}
		j, ok := i+1, true
		for k := 0; k < need; k++ {
			l, h := byte(0x80), byte(0xbf)
			if k == 0 {
				l, h = lo, hi
			}
			if j >= len(b) || b[j] < l || b[j] > h {
				ok = false
				break
			}
			j++
		}
		if ok {
			sb.Write(b[i:j])
		} else {
			sb.WriteRune(utf8.RuneError)
		}
		i = j
	}
	return sb.String()
}
