package vampnet

import (
	"fmt"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/torchmods"
)

// CoarseVamp is Interface.coarse_vamp: the coarse model regenerates the
// masked positions of the first n_codebooks (its own) codebooks of z
// [B, C >= coarse codebooks, T], and the finer codebooks of z come back
// unchanged after them. The official code asserts that T fits the coarse
// model's chunk (10 s); this returns an error instead.
func CoarseVamp(coarse *VampNet, z, mask *ts.Tensor, codebooks []*ts.Tensor, maxFrames int64, o SampleOptions) (out *ts.Tensor, err error) {
	c := coarse.Cfg
	s := z.MustSize()
	if len(s) != 3 || s[1] < c.NCodebooks {
		return nil, fmt.Errorf("vampnet: coarse vamp of codes shaped %v: want [batch, at least %d codebooks, frames]", s, c.NCodebooks)
	}
	if maxFrames > 0 && s[2] > maxFrames {
		return nil, fmt.Errorf("vampnet: %d frames for a coarse model whose chunk is %d frames: vamp a shorter excerpt", s[2], maxFrames)
	}
	if ms := mask.MustSize(); len(ms) != 3 || ms[0] != s[0] || ms[1] < c.NCodebooks || ms[2] != s[2] {
		return nil, fmt.Errorf("vampnet: mask shaped %v for codes shaped %v", ms, s)
	}
	err = torchmods.Try(func() {
		cz := z.MustNarrow(1, 0, c.NCodebooks, false)
		cm := mask.MustNarrow(1, 0, c.NCodebooks, false)
		v := coarse.Generate(cz, cm, codebooks, o)
		out = ts.MustCat([]*ts.Tensor{v, z.MustNarrow(1, c.NCodebooks, s[1]-c.NCodebooks, false)}, 1)
	})
	return out, err
}

// CoarseToFine is Interface.coarse_to_fine: the c2f model fills the fine
// codebooks of z [B, C, T], chunk by chunk of chunkFrames frames (3 s in
// the official interface), each chunk generated on its own. z is padded
// with zeros to a whole number of chunks and to the c2f model's codebook
// count, and the result is cut back to T frames. The mask (nil: all fine
// positions) is zeroed on the conditioning codebooks, as the official
// code does.
func CoarseToFine(c2f *VampNet, z, mask *ts.Tensor, codebooks []*ts.Tensor, chunkFrames int64, o SampleOptions) (out *ts.Tensor, err error) {
	c := c2f.Cfg
	s := z.MustSize()
	if len(s) != 3 || s[1] > c.NCodebooks || s[1] < c.NConditioningCodebooks {
		return nil, fmt.Errorf("vampnet: coarse-to-fine of codes shaped %v: want [batch, %d to %d codebooks, frames]", s, c.NConditioningCodebooks, c.NCodebooks)
	}
	if chunkFrames < 1 {
		return nil, fmt.Errorf("vampnet: coarse-to-fine chunks of %d frames", chunkFrames)
	}
	if mask != nil {
		if ms := mask.MustSize(); len(ms) != 3 || ms[0] != s[0] || ms[2] != s[2] {
			return nil, fmt.Errorf("vampnet: mask shaped %v for codes shaped %v", ms, s)
		}
	}
	err = torchmods.Try(func() {
		T := s[2]
		pad := (chunkFrames - T%chunkFrames) % chunkFrames
		zz := z
		if pad > 0 {
			zz = zz.MustConstantPadNd([]int64{0, pad}, false)
		}
		if extra := c.NCodebooks - s[1]; extra > 0 {
			zz = ts.MustCat([]*ts.Tensor{zz, ts.MustZeros([]int64{s[0], extra, T + pad}, gotch.Int64, z.MustDevice())}, 1)
		}
		var mm *ts.Tensor
		if mask != nil {
			mm = mask
			if pad > 0 {
				mm = mm.MustConstantPadNd([]int64{0, pad}, false)
			}
			if extra := c.NCodebooks - mm.MustSize()[1]; extra > 0 {
				// the official code pads only time: a mask with fewer codebooks
				// than the model fails there; the missing ones are generated here
				mm = ts.MustCat([]*ts.Tensor{mm, ts.MustOnes([]int64{s[0], extra, T + pad}, gotch.Int64, z.MustDevice())}, 1)
			}
		} else {
			mm = ts.MustOnes([]int64{s[0], c.NCodebooks, T + pad}, gotch.Int64, z.MustDevice())
		}
		nc := c.NConditioningCodebooks
		mm = ts.MustCat([]*ts.Tensor{ts.MustZeros([]int64{s[0], nc, T + pad}, gotch.Int64, z.MustDevice()), mm.MustNarrow(1, nc, c.NCodebooks-nc, false)}, 1)
		var parts []*ts.Tensor
		for at := int64(0); at < T+pad; at += chunkFrames {
			parts = append(parts, c2f.Generate(zz.MustNarrow(2, at, chunkFrames, false), mm.MustNarrow(2, at, chunkFrames, false), codebooks, o))
		}
		out = ts.MustCat(parts, 2).MustNarrow(2, 0, T, true).MustContiguous(true)
	})
	return out, err
}
