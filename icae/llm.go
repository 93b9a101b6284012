package icae

import (
	"fmt"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/torchmods"
)

// This file is the one place that runs the frozen LLM on input embeddings
// (HF's inputs_embeds, LlamaInput.Embeds) with the encoder's LoRA on or
// off. The adapters act per call through LlamaInput.Adapt, each
// LoRALinear adding its update, dropout(x)·Aᵀ·Bᵀ·alpha/r, to the frozen
// projection's output, as PEFT's LoRA layers do; the decoder's calls pass
// no Adapt, which is PEFT's disable_adapter(). The model itself is never
// changed.

// Hidden runs the LLM on embeddings x [B, L, hidden] (the compute dtype)
// with attention mask mask [B, L] (nil: no padding; padded rows get their
// positions from the mask) and returns the final normed hidden states,
// with the encoder's adapters when lora is true.
func (m *Model) Hidden(x, mask *ts.Tensor, lora, train bool) *ts.Tensor {
	m.checkEmbeds(x)
	in := torchmods.LlamaInput{Embeds: x, Mask: mask}
	if mask != nil {
		in.Positions = torchmods.LlamaPositionIDs(mask)
	}
	if lora && m.HasLoRA() {
		in.Adapt = m.adapt
	}
	return m.LM.Hidden(in, train)
}

// HiddenCached is Hidden's decoder (LoRA off, eval mode) filling cache:
// the first step of generating from embeddings. Later steps feed token ids
// to m.LM with the same cache.
func (m *Model) HiddenCached(x *ts.Tensor, cache *torchmods.LlamaCache) *ts.Tensor {
	m.checkEmbeds(x)
	s := x.MustSize()
	past := cache.Len()
	pos := ts.MustArangeStart(ts.IntScalar(past), ts.IntScalar(past+s[1]), gotch.Int64, x.MustDevice()).MustUnsqueeze(0, true)
	return m.LM.Hidden(torchmods.LlamaInput{Embeds: x, Positions: pos, Cache: cache}, false)
}

func (m *Model) checkEmbeds(x *ts.Tensor) {
	s := x.MustSize()
	if len(s) != 3 || s[2] != m.LM.Cfg.HiddenSize {
		panic(fmt.Errorf("icae: input embeddings of shape %v, want [batch, length, %d]", s, m.LM.Cfg.HiddenSize))
	}
	if dt := m.LM.ComputeDType(); x.DType() != dt {
		panic(fmt.Errorf("icae: input embeddings in %v, the LLM computes in %v", x.DType(), dt))
	}
}

// adapt is the encoder's LlamaInput.Adapt: the layer's adapter on the
// named projection, if it has one.
func (m *Model) adapt(layer int, name string, x *ts.Tensor, train bool) *ts.Tensor {
	if a := m.LoRA[layer][name]; a != nil {
		return a.Delta(x, train)
	}
	return nil
}
