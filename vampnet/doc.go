// Package vampnet is VampNet (Garcia et al., ISMIR 2023): masked acoustic
// token modelling for music. A DAC/LAC-style codec turns audio into codes
// [batch, codebooks, frames]; a bidirectional transformer learns to fill
// masked codes (coarse codebooks first, then the fine ones conditioned on
// them); iterative MaskGIT-style sampling with prompts (periodic,
// inpainting, onsets, beats, compression) turns a masked excerpt back into
// codes and audio.
//
// The official code is hugofloresgarcia/vampnet, branch ismir-2023
// (dce1655ecd9f6044ce9e13e95e1423a50837a615). Parameter names follow it,
// so that its checkpoints load.
package vampnet
