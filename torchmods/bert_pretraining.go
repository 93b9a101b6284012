package torchmods

import (
	"github.com/sugarme/gotch/ts"
)

// BertForPreTraining is HF's BertForPreTraining: bert.* with its pooler,
// the masked-LM head cls.predictions.transform.{dense,LayerNorm} with the
// decoder tied to the word embeddings plus cls.predictions.bias (as
// BertForMaskedLM), and the next-sentence head cls.seq_relationship
// (Linear hidden -> 2 on the pooled [CLS] state). Its weights load into
// BertForMaskedLM (the pooler and seq_relationship are then unexpected)
// and into BertForSequenceClassification (cls.* unexpected, classifier
// new), as in transformers.
type BertForPreTraining struct {
	Bert      *Bert
	Transform *Linear
	Norm      *LayerNorm
	Bias      *ts.Tensor // [vocab]
	SeqRel    *Linear    // [2, hidden]
}

// NewBertForPreTraining registers the model under p with HF's names,
// initialised as HF does (BertInit).
func NewBertForPreTraining(p Path, c BertConfig) *BertForPreTraining {
	m := &BertForPreTraining{Bert: NewBert(p.Sub("bert"), c, true)}
	h := p.Sub("cls.predictions")
	m.Transform = NewLinear(h.Sub("transform.dense"), LinearOptions{In: c.HiddenSize, Out: c.HiddenSize})
	m.Norm = NewLayerNorm(h.Sub("transform.LayerNorm"), NormOptions{Dim: c.HiddenSize, Eps: m.Bert.Cfg.LayerNormEps})
	m.Bias = h.New("bias", []int64{c.VocabSize}, Const(0), true)
	m.SeqRel = NewLinear(p.Sub("cls.seq_relationship"), LinearOptions{In: c.HiddenSize, Out: 2})
	BertInit(m.Bert.Cfg.InitializerRange, nil, m.Transform, m.SeqRel)
	return m
}

// MLMLogits are the vocabulary scores of hidden states [..., H] (the
// positions to predict only, or all of them): BertLMPredictionHead.
func (m *BertForPreTraining) MLMLogits(hidden *ts.Tensor) *ts.Tensor {
	h := m.Norm.Forward(m.Bert.Cfg.act().Apply(m.Transform.Forward(hidden)))
	return ts.MustLinear(h, m.Bert.Word.Weight, m.Bias)
}

// NSPLogits are the next-sentence scores [B, 2] from hidden states
// [B, L, H]: BertOnlyNSPHead on the pooled first token. Class 0 is "B
// follows A", class 1 "B is random", as HF's next_sentence_label.
func (m *BertForPreTraining) NSPLogits(hidden *ts.Tensor) *ts.Tensor {
	return m.SeqRel.Forward(m.Bert.Pool(hidden))
}
