package cliptok

import (
	"regexp"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// This file is ftfy.fix_text (ftfy 6.3.1, default config; ftfy is Robyn
// Speer's, Apache-2.0, github.com/rspeer/python-ftfy) without
// fix_encoding: see Clean for what that leaves out and why. Each function
// says which of ftfy's it is.

// maxDecodeLength is TextFixerConfig.max_decode_length: fix_text fixes
// lines, and cuts a longer line into pieces of this many characters.
const maxDecodeLength = 1_000_000

// fixText is fix_text: line by line (each line with its "\n"), HTML
// references unescaped until a line holds "<" and never after it (ftfy's
// "auto" setting, replaced for the rest of the text once it is seen).
func fixText(text string) string {
	var out strings.Builder
	unescape := true
	for text != "" {
		end := strings.IndexByte(text, '\n') + 1
		if end == 0 {
			end = len(text)
		}
		if n := utf8.RuneCountInString(text[:end]); n > maxDecodeLength {
			end = len(string([]rune(text)[:maxDecodeLength]))
		}
		seg := text[:end]
		text = text[end:]
		if unescape && strings.Contains(seg, "<") {
			unescape = false
		}
		out.WriteString(fixSegment(seg, unescape))
	}
	return out.String()
}

// fixSegment is fix_and_explain: the fixes in ftfy's order, again until
// the text no longer changes.
func fixSegment(s string, unescape bool) string {
	for {
		orig := s
		if unescape {
			s = ftfyUnescapeHTML(s)
		}
		// fix_encoding would run here.
		s = fixC1Controls(s)
		s = latinLigatures.Replace(s)
		s = mapRunes(s, widthForm)
		s = uncurlQuotes(s)
		s = lineBreaks.Replace(s)
		// fix_surrogates: nothing to do in Go.
		s = ansiEscape.ReplaceAllString(s, "")
		s = strings.Map(dropControl, s)
		s = norm.NFC.String(s)
		if s == orig {
			return s
		}
	}
}

// ftfyEntity is ftfy's HTML_ENTITY_RE.
var ftfyEntity = regexp.MustCompile(`&#?[0-9A-Za-z]{1,24};`)

// ftfyUnescapeHTML is ftfy.fixes.unescape_html: a reference that HTML5
// names with its ";" or that ftfy knows in capitals is decoded; a numeric
// one is decoded if html.unescape decodes all of it, ";" included.
func ftfyUnescapeHTML(s string) string {
	return ftfyEntity.ReplaceAllStringFunc(s, func(m string) string {
		if v, ok := html5Entities[m[1:]]; ok {
			return v
		}
		if v, ok := ftfyUpperEntities[m[1:]]; ok {
			return v
		}
		if strings.HasPrefix(m, "&#") {
			if u := htmlUnescape(m); !strings.Contains(u, ";") {
				return u
			}
		}
		return m
	})
}

// fixC1Controls is fix_c1_controls: C1 control characters read as
// sloppy Windows-1252 (its five undefined bytes stand for themselves).
func fixC1Controls(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 0x80 && r <= 0x9f {
			return invalidCharRefs[int64(r)]
		}
		return r
	}, s)
}

// latinLigatures is fix_latin_ligatures' LIGATURES table.
var latinLigatures = strings.NewReplacer(
	"Ĳ", "IJ", "ĳ", "ij", "ŉ", "ʼn", "Ǳ", "DZ", "ǲ", "Dz", "ǳ", "dz", "Ǆ", "DŽ", "ǅ", "Dž", "ǆ", "dž",
	"Ǉ", "LJ", "ǈ", "Lj", "ǉ", "lj", "Ǌ", "NJ", "ǋ", "Nj", "ǌ", "nj",
	"ﬀ", "ff", "ﬁ", "fi", "ﬂ", "fl", "ﬃ", "ffi", "ﬄ", "ffl", "ﬅ", "ſt", "ﬆ", "st",
)

// widthForm is fix_character_width's WIDTH_MAP: U+3000 as a space, and
// each character of U+FF01 to U+FFEF that NFKC changes as its NFKC form.
func widthForm(r rune) (string, bool) {
	if r == 0x3000 {
		return " ", true
	}
	if r < 0xff01 || r > 0xffef {
		return "", false
	}
	s := string(r)
	if n := norm.NFKC.String(s); n != s {
		return n, true
	}
	return "", false
}

// mapRunes replaces each rune f maps (str.translate).
func mapRunes(s string, f func(rune) (string, bool)) string {
	var b strings.Builder
	for _, r := range s {
		if v, ok := f(r); ok {
			b.WriteString(v)
		} else {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// uncurlQuotes is uncurl_quotes: [\u201c-\u201f] as ", [\u02bc\u2018-\u201b] as '.
func uncurlQuotes(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 0x201c && r <= 0x201f:
			return '"'
		case r == 0x2bc || r >= 0x2018 && r <= 0x201b:
			return '\''
		}
		return r
	}, s)
}

// lineBreaks is fix_line_breaks: \r\n first, then each other break.
var lineBreaks = strings.NewReplacer("\r\n", "\n", "\r", "\n", "\u2028", "\n", "\u2029", "\n", "\u0085", "\n")

// ansiEscape is remove_terminal_escapes' ANSI_RE; Python's \d is any
// decimal digit (Nd).
var ansiEscape = regexp.MustCompile(`\x1b\[(?:\p{Nd}|;)*[a-zA-Z]`)

// dropControl is remove_control_chars' CONTROL_CHARS: -1 drops r.
func dropControl(r rune) rune {
	switch {
	case r <= 0x08, r == 0x0b, r >= 0x0e && r <= 0x1f, r == 0x7f, r >= 0x206a && r <= 0x206f, r == 0xfeff, r >= 0xfff9 && r <= 0xfffc:
		return -1
	}
	return r
}
