"""Makes ids.json, the reference ids of cliptok's tests, with OpenAI's own tokenizer.

The official code is not part of this repository. Export clip/ of github.com/openai/CLIP at commit
d05afc436d78f1c48dc0dbf8e5980a9d471f35f6 (simple_tokenizer.py is git blob
0a66286b7d5019c6e221932a813768038f839c91, checked below) and pass the directory; run with Debian 12's
/usr/bin/python3 with python3-regex, python3-torch, python3-torchvision, python3-packaging and
python3-tqdm (clip/__init__.py imports clip.py, which imports them):

    d=$(mktemp -d)
    git -C /path/to/CLIP archive d05afc436d78f1c48dc0dbf8e5980a9d471f35f6 clip | tar -x -C "$d"
    /usr/bin/python3 torchmods/cliptok/testdata/gen_ids.py "$d/clip" [FTFY_SRC]

ftfy is not a Debian package, so simple_tokenizer.py's `import ftfy` is given a stub module whose
fix_text returns its text unchanged: "ids" are the official code's ids with ftfy.fix_text as the
identity, and the tests compare cliptok without its ftfy fixes against them, on every string.
FTFY_SRC, if given, is a checkout of github.com/rspeer/python-ftfy (ftfy 6.3.1, commit
74dd0452b48286a3770013b3a02755313bd5575e; it needs python3-wcwidth): then "ids_ftfy" are the ids with the
real ftfy.fix_text, and "mojibake" says whether ftfy's fix_encoding (the mojibake repair, which cliptok
does not have) changes the string; the tests compare cliptok's Encode with "ids_ftfy" on every string
that is not mojibake.

It also writes unicode.json, what the tokenizer's Python side does with each code point: the class that
simple_tokenizer.py's pattern (regex module, re.IGNORECASE) gives it alone ("letter": [\p{L}]+, "number":
[\p{N}], "other": [^\s\p{L}\p{N}]+, as ranges), which str.isspace calls space ("space"), and str.lower()
where it changes the character ("lower"); the tests check Go's pattern, strip and lower-casing against it.

For each string: "ids" and "ids_ftfy" (SimpleTokenizer().encode), "decoded" (decode of "ids"),
"tokenize" (clip.tokenize(text, context_length=77, truncate=True)[0], as a list) and, where the text is
too long for 77, "too_long": true (clip.tokenize without truncate raises).
"""
import hashlib
import json
import os
import sys
import types

COMMIT = "d05afc436d78f1c48dc0dbf8e5980a9d471f35f6"
BLOB = "0a66286b7d5019c6e221932a813768038f839c91"
here = os.path.dirname(os.path.abspath(__file__))

TEXTS = [
    "",
    "a photo of a cat.",
    "A photo of a {}.",
    "a photo of a dog",
    "Hello, world!",
    "it's a dog's life; they're here, we've gone, I'm sure you'll say he'd go",
    "IT'S LOUD! DON'T SHOUT, WE'RE HERE",
    "don't stop can't won't isn't",
    "O'Neill's rock 'n' roll",
    "'s's 't'tt",
    "e-mail: someone@example.com, https://example.com/a?b=c&d=e#frag",
    "C++ and C# vs. Go (1.26) -- 100% sure?!",
    "...!!!???,,,;;;:::---___***",
    "\"quoted\" (parens) [brackets] {braces} <angles>",
    "1234567890 3.14159 1,000,000 -42 +7 1e-9 0x1F",
    "2024-01-31T12:34:56Z",
    "Café naïve résumé façade coöperate Ångström",
    "Ünïcödé ÀÉÎÕÜ àéîõü ß ẞ",
    "Straße groß Maßstab",
    "日本語のテキスト、中文文本。한국어 텍스트",
    "東京タワーは333メートルです",
    "Здравствуй, мир! Привет",
    "Γειά σου Κόσμε ΟΔΥΣΣΕΥΣ ΣΑΣ Σ",
    "مرحبا بالعالم",
    "שלום עולם",
    "नमस्ते दुनिया",
    "สวัสดีชาวโลก",
    "emoji 😀😃😄 👍🏽 👨‍👩‍👧‍👦 🇫🇷 ❤️ ✨",
    "😀",
    "♥♦♣♠ ★☆ ∑∏√∞ ≤≥≠ ← → ↑ ↓ ™ © ®",
    "½ ¾ ² ³ ① ② Ⅻ ⅷ ٣ ߂ ໕ 𝟘𝟙",
    "Tom &amp; Jerry &lt;3 &gt; &quot;hi&quot; &#39;x&#39; &#x27;y&#x27; &copy; &eacute;",
    "&amp;amp; &amp;lt; &amp;amp;amp; double and triple escaped",
    "&notit; &not &notin; &ampx &AMP &nbsp;x &#128512; &#0; &#x80; &#150; &#xD800; &#1114112; &#11; &#65535;",
    "&unknown; & ; &; &# &#x; &#xZZ; a&b a & b",
    "&EACUTE; &NTILDE; &SZLIG; P&EACUTE;REZ",
    "<b>bold</b> &amp; <i>it</i>",
    "a < b &amp; c\nnext line &amp; d",
    "   leading and trailing spaces   ",
    "tabs\tand\nnewlines\r\nand\u00a0nbsp\u2003em\u3000ideographic",
    "many     spaces\t\t\tand\n\n\nbreaks",
    "\u001c\u001d edge separators \u001e\u001f",
    "mid\u001cseparator",
    "zero\u200bwidth\u200djoiner\u200cnon\ufeffbom",
    "don\u2019t \u2018single\u2019 \u201cdouble\u201d \u201elow\u201c \u02bcmodifier",
    "\ufb01ne \ufb02ower \ufb03x \u0133 \u01c6",
    "\uff2c\uff2f\uff35\uff24\u3000\uff2e\uff2f\uff29\uff33\uff25\uff33 \uff71\uff72\uff73 \uff10\uff11",
    "e\u0301 cafe\u0301 n\u0303 decomposed",
    "\u001b[36;44mcoloured\u001b[0m text",
    "C1 \u0080 \u0085 \u0093quoted\u0094 \u009d",
    "control\u0000chars\u0007here\u007f\u206a\ufff9",
    "İstanbul İİ DİYARBAKIR ıi",
    "ǅemal ǈ ǋ Ǳ",
    "\u212a Kelvin \u017f long s \u0345 ypogegrammeni",
    "'\u017f '\u212a 'S 'T 'RE",
    "<|startoftext|>hello<|endoftext|>",
    "<|STARTOFTEXT|> <|EndOfText|>",
    "sÃ³ cafÃ© â€™ mojibake",
    "The quick brown fox jumps over the lazy dog. " * 20,
    "supercalifragilisticexpialidocious pneumonoultramicroscopicsilicovolcanoconiosis",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "a photo of a llama, a type of animal.",
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
]


class _Stub(types.ModuleType):
    """ftfy as the identity."""

    @staticmethod
    def fix_text(text, *args, **kwargs):
        return text


def unicode_tables(path):
    import unicodedata

    import regex

    letter = regex.compile(r"[\p{L}]+", regex.IGNORECASE)
    number = regex.compile(r"[\p{N}]", regex.IGNORECASE)
    other = regex.compile(r"[^\s\p{L}\p{N}]+", regex.IGNORECASE)
    chars = [(cp, chr(cp)) for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF]

    def ranges(pred):
        out = []
        for cp, c in chars:
            if pred(c):
                if out and out[-1][1] == cp - 1:
                    out[-1][1] = cp
                else:
                    out.append([cp, cp])
        return out

    d = {
        "unicode": unicodedata.unidata_version,
        "regex": regex.__version__,
        "letter": ranges(lambda c: letter.fullmatch(c) is not None),
        "number": ranges(lambda c: letter.fullmatch(c) is None and number.fullmatch(c) is not None),
        "other": ranges(lambda c: letter.fullmatch(c) is None and number.fullmatch(c) is None
                        and other.fullmatch(c) is not None),
        "space": ranges(str.isspace),
        "lower": [[cp, [ord(x) for x in c.lower()]] for cp, c in chars if c.lower() != c],
    }
    with open(path, "w") as f:
        json.dump(d, f, separators=(",", ":"))
        f.write("\n")


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    clipdir = os.path.abspath(sys.argv[1])
    src = open(os.path.join(clipdir, "simple_tokenizer.py"), "rb").read()
    blob = hashlib.sha1(b"blob %d\0" % len(src) + src).hexdigest()
    if blob != BLOB:
        sys.exit(f"{clipdir}/simple_tokenizer.py is git blob {blob}, not clip/simple_tokenizer.py at {COMMIT}")
    real = None
    if len(sys.argv) == 3:
        sys.path.insert(0, os.path.abspath(sys.argv[2]))
        import ftfy as real
    stub = _Stub("ftfy")
    saved = sys.modules.get("ftfy")
    sys.modules["ftfy"] = stub
    sys.path.insert(0, os.path.dirname(clipdir))
    import clip  # noqa: E402
    from clip import simple_tokenizer  # noqa: E402

    if saved is not None:
        sys.modules["ftfy"] = saved
    tok = simple_tokenizer.SimpleTokenizer()
    cases = []
    for text in TEXTS:
        simple_tokenizer.ftfy = stub
        c = {"text": text, "ids": tok.encode(text)}
        c["decoded"] = tok.decode(c["ids"])
        c["tokenize"] = clip.tokenize(text, context_length=77, truncate=True)[0].tolist()
        try:
            clip.tokenize(text, context_length=77)
        except RuntimeError:
            c["too_long"] = True
        if real is not None:
            simple_tokenizer.ftfy = real
            c["ids_ftfy"] = tok.encode(text)
            c["mojibake"] = real.fix_encoding(text) != text
        cases.append(c)
    out = {
        "source": f"github.com/openai/CLIP {COMMIT} clip/simple_tokenizer.py, clip.tokenize",
        "ftfy": "stub: fix_text is the identity for ids; "
        + (f"ftfy {real.__version__} for ids_ftfy" if real is not None else "no ids_ftfy"),
        "sot": tok.encoder["<|startoftext|>"],
        "eot": tok.encoder["<|endoftext|>"],
        "vocab_size": len(tok.encoder),
        "cases": cases,
    }
    with open(os.path.join(here, "ids.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=True, indent=0)
        f.write("\n")
    print(f"wrote ids.json: {len(cases)} strings, vocab {len(tok.encoder)}")
    unicode_tables(os.path.join(here, "unicode.json"))
    print("wrote unicode.json")


if __name__ == "__main__":
    main()
