package data

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestReadCorpus(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "lines.txt")
	require.NoError(t, os.WriteFile(file, []byte("first doc\n\n  second doc  \n"), 0o644))
	docs, err := ReadCorpus(file)
	require.NoError(t, err)
	require.Equal(t, []string{"first doc", "second doc"}, docs)

	folder := filepath.Join(dir, "books")
	require.NoError(t, os.MkdirAll(filepath.Join(folder, "sub"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(folder, "b.txt"), []byte("two\nlines"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(folder, "sub", "a.txt"), []byte("nested"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(folder, "skip.md"), []byte("not text"), 0o644))
	docs, err = ReadCorpus(folder)
	require.NoError(t, err)
	require.Equal(t, []string{"two lines", "nested"}, docs)

	_, err = ReadCorpus(filepath.Join(dir, "missing"))
	require.ErrorContains(t, err, "missing")
	require.NoError(t, os.WriteFile(file, []byte("\n\n"), 0o644))
	_, err = ReadCorpus(file)
	require.ErrorContains(t, err, "no text")
}

func TestParseWordNetData(t *testing.T) {
	const sample = `  1 This software and database is being provided to you, the LICENSEE, by  
00001740 29 v 04 breathe 0 take_a_breath 0 respire 0 suspire 3 001 * 00005041 v 0000 02 + 02 00 + 08 00 | draw air into, and expel out of, the lungs; "I can breathe better when the air is clean"; "The patient is respiring"  
00019731 00 s 02 handy 0 ready_to_hand(p) 0 002 & 00019131 a 0000 + 04718999 n 0101 | easy to reach; "found a handy spot for the can opener"  
`
	syn, err := ParseWordNetData(strings.NewReader(sample))
	require.NoError(t, err)
	require.Equal(t, []Synset{
		{Offset: 1740, POS: 'v', LexName: "verb.body", Lemmas: []string{"breathe", "take a breath", "respire", "suspire"},
			Definition: "draw air into, and expel out of, the lungs",
			Examples:   []string{"I can breathe better when the air is clean", "The patient is respiring"}},
		{Offset: 19731, POS: 's', LexName: "adj.all", Lemmas: []string{"handy", "ready to hand"},
			Definition: "easy to reach", Examples: []string{"found a handy spot for the can opener"}},
	}, syn)

	_, err = ParseWordNetData(strings.NewReader("00001740 29 v 04 breathe 0 | gloss\n"))
	require.ErrorContains(t, err, "line 1: malformed")
	_, err = WordNet(t.TempDir(), "noun")
	require.ErrorContains(t, err, "data.noun not found")
}

// TestWordNetDebian reads the installed WordNet 3.0 when it is present.
func TestWordNetDebian(t *testing.T) {
	if _, err := os.Stat(WordNetDir); err != nil {
		t.Skip("wordnet-base is not installed")
	}
	syn, err := WordNet("")
	require.NoError(t, err)
	require.Len(t, syn, 82115+13767+18156+3621) // WordNet 3.0's synset counts
	lex := map[string]bool{}
	for _, s := range syn {
		lex[s.LexName] = true
		require.NotEmpty(t, s.Lemmas)
	}
	require.Len(t, lex, 45)
}
