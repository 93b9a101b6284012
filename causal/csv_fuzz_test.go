package causal

import (
	"strings"
	"testing"
)

// FuzzParseCSV feeds arbitrary bytes to the task reader: it must return
// an error or rows that are all finite and of the header's width.
func FuzzParseCSV(f *testing.F) {
	for _, s := range []string{
		"a,b\n1,2\n3,4\n",
		"a,b\n1,NaN\n3,4\n",
		"a,b\n1,inf\n3,-Inf\n",
		"a,b\n1e308,2\n3,4\n",
		"a,\"b\nc\"\n1,2\n3,4\n",
		"x,y,z\n1,2,3\n4,5\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		hdr, rows, err := parseCSV("fuzz.csv", strings.NewReader(string(b)))
		if err != nil {
			return
		}
		for _, r := range rows {
			if len(r) != len(hdr) {
				t.Fatalf("row of %d values under a header of %d", len(r), len(hdr))
			}
			for _, v := range r {
				if !(v >= -MaxMagnitude && v <= MaxMagnitude) {
					t.Fatalf("value %v passed", v)
				}
			}
		}
	})
}
