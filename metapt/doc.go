// Package metapt is "Pre-training Text Representations as Meta Learning"
// (Lv et al., 2020; arXiv 2004.05568): BERT pre-training whose step is a
// MAML meta step. From θ_0 = θ, k inner steps each take one SGD step
// θ_j = θ_{j-1} - α ∇L_{T_j}(θ_{j-1}) on a sampled pre-training task T_j
// (masked LM or next-sentence prediction) with fast weights
// (torchmods.Store.WithParams); the meta-test loss at θ_k is
// differentiated back to θ through the inner steps (second order) or at
// θ_k (first order), and the outer optimizer steps θ. With k = 0 the step
// is multi-task pre-training, BERT's summed MLM + NSP loss, exactly.
// Only the paper's abstract could be read: README.md lists every choice
// the reconstruction makes and the config key that changes it.
package metapt
