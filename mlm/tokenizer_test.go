package mlm

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBasicTokenize(t *testing.T) {
	assert.Equal(t, []string{"godel", "'", "s", "cafe", ",", "naive", "!"}, BasicTokenize("Gödel's  Café,\tnaïve!"))
}

// A vocabulary trained on a toy corpus starts with the specials and the
// alphabet, learns the frequent words whole, and encodes through
// sugarme/tokenizer with [CLS] ... [SEP], word ids and truncation.
func TestTrainedWordPieceRoundTrip(t *testing.T) {
	texts := []string{"the cat sat on the mat", "the cat ate the rat", "a cat and a hat", "the mat is flat"}
	vocab, err := TrainWordPiece(texts, 60, 1)
	require.NoError(t, err)
	assert.Equal(t, Specials, vocab[:5])
	assert.Contains(t, vocab, "the")
	assert.Contains(t, vocab, "cat")
	assert.Contains(t, vocab, "##at", "a continuation piece")
	assert.LessOrEqual(t, len(vocab), 60)
	seen := map[string]bool{}
	for _, v := range vocab {
		assert.False(t, seen[v], "duplicate %q", v)
		seen[v] = true
	}
	path := filepath.Join(t.TempDir(), "vocab.txt")
	require.NoError(t, WriteVocab(path, vocab))
	tok, err := LoadTokenizer(path)
	require.NoError(t, err)
	assert.Equal(t, []int64{0, 1, 2, 3, 4}, []int64{tok.PAD, tok.UNK, tok.CLS, tok.SEP, tok.MASK})
	e, err := tok.Encode("The cat sat on the flat mat", 64)
	require.NoError(t, err)
	var toks []string
	for _, id := range e.IDs {
		toks = append(toks, tok.Token(id))
	}
	assert.Equal(t, "[CLS]", toks[0])
	assert.Equal(t, "[SEP]", toks[len(toks)-1])
	assert.Equal(t, -1, e.Words[0])
	assert.Equal(t, -1, e.Words[len(e.Words)-1])
	assert.Equal(t, 6, e.Words[len(e.Words)-2], "the seventh word, mat, ends the sentence")
	assert.Contains(t, toks, "cat")
	short, _ := tok.Encode("The cat sat on the flat mat", 4)
	assert.Len(t, short.IDs, 4)
	assert.Equal(t, tok.SEP, short.IDs[3], "truncation keeps [SEP]")
	assert.True(t, tok.IsSpecial(tok.MASK))
	assert.False(t, tok.IsSpecial(short.IDs[1]))

	_, err = TrainWordPiece(texts, 10, 1)
	assert.ErrorContains(t, err, "smaller than")
	_, err = LoadTokenizer(filepath.Join(t.TempDir(), "none.txt"))
	assert.Error(t, err)
}

func TestTaggerOnKnownWords(t *testing.T) {
	tg, err := NewTagger("")
	if err != nil {
		t.Skip("wordnet-base not installed")
	}
	for w, want := range map[string]string{
		"dog": "NOUN", "dogs": "NOUN", "ran": "VERB", "quickly": "ADV", "beautiful": "ADJ", "the": "DET",
		"of": "ADP", "they": "PRON", "and": "CCONJ", "because": "SCONJ", "was": "AUX", "not": "PART",
		"1990": "NUM", ";": "PUNCT", "xqzt": "X", "children": "NOUN", "larger": "ADJ",
		"to": "ADP", "that": "DET", // listed twice: the first list wins, in every process
	} {
		assert.Equal(t, want, tg.Tag(w), w)
	}
	assert.Equal(t, len(Tags)-1, TagID("nonsense"))
}

// A HF tokenizer.json may carry padding and truncation
// (sentence-transformers' all-MiniLM-L6-v2: padding {"Fixed": 128},
// truncation at 128). LoadTokenizer turns both off: Encode's callers
// truncate and pad themselves, so [PAD]s in the ids would be attended to
// and pooled over, and the file's cut would override maxLen.
func TestLoadTokenizerJSONIgnoresPaddingAndTruncation(t *testing.T) {
	const js = `{
  "version": "1.0",
  "truncation": {"direction": "Right", "max_length": 4, "strategy": "LongestFirst", "stride": 0},
  "padding": {"strategy": {"Fixed": 16}, "direction": "Right", "pad_to_multiple_of": null, "pad_id": 0, "pad_type_id": 0, "pad_token": "[PAD]"},
  "added_tokens": [
    {"id": 0, "content": "[PAD]", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
    {"id": 1, "content": "[UNK]", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
    {"id": 2, "content": "[CLS]", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
    {"id": 3, "content": "[SEP]", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
    {"id": 4, "content": "[MASK]", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}
  ],
  "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true, "strip_accents": null, "lowercase": true},
  "pre_tokenizer": {"type": "BertPreTokenizer"},
  "post_processor": {"type": "BertProcessing", "sep": ["[SEP]", 3], "cls": ["[CLS]", 2]},
  "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
  "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##", "max_input_chars_per_word": 100,
    "vocab": {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4, "the": 5, "cat": 6, "sat": 7, "on": 8, "mat": 9}}
}`
	path := filepath.Join(t.TempDir(), "tokenizer.json")
	require.NoError(t, os.WriteFile(path, []byte(js), 0o644))
	tok, err := LoadTokenizer(path)
	require.NoError(t, err)
	e, err := tok.Encode("The cat sat on the mat", 64)
	require.NoError(t, err)
	assert.Equal(t, []int64{tok.CLS, 5, 6, 7, 8, 5, 9, tok.SEP}, e.IDs, "no [PAD]s, and no cut at the file's max_length of 4")
	assert.Equal(t, []int{-1, 0, 1, 2, 3, 4, 5, -1}, e.Words)
	short, err := tok.Encode("The cat sat on the mat", 4)
	require.NoError(t, err)
	assert.Equal(t, []int64{tok.CLS, 5, 6, tok.SEP}, short.IDs, "maxLen still cuts")
}

// The corpus cache holds each word's tag, so its key must change when the
// tagger's word lists do: a cache written while "to" was PART was once
// reused after "to" became ADP.
func TestCorpusKeyFollowsTheTagger(t *testing.T) {
	d := DataConfig{MaxLen: 64, Heldout: 0.05}
	docs := []Doc{{Text: "a dog ran to the park"}}
	vocab := []byte("[PAD]\n[UNK]\n")
	key := corpusKey(d, vocab, docs)
	assert.Equal(t, key, corpusKey(d, vocab, docs), "the key is deterministic")

	old := closedClass["to"]
	closedClass["to"] = "PART"
	changed := corpusKey(d, vocab, docs)
	closedClass["to"] = old
	assert.NotEqual(t, key, changed, "a changed closed-class list makes a new cache")
	assert.Equal(t, key, corpusKey(d, vocab, docs))

	assert.NotEqual(t, key, corpusKey(d, vocab, []Doc{{Text: "a dog ran to the shop"}}), "the corpus is in the key")
	d.MaxLen = 32
	assert.NotEqual(t, key, corpusKey(d, vocab, docs), "the sequence length is in the key")
}
