// Package papers is the one list of every task repro can run: each paper
// package declares its tasks as train.TaskSpec values, and they are
// registered here, in one visible place, when the repro command starts.
// Adding a paper is adding its line here (see template/ and the README's
// "Adding a paper").
package papers

import (
	"github.com/reprolab/repro/basics"
	"github.com/reprolab/repro/cap"
	"github.com/reprolab/repro/causal"
	"github.com/reprolab/repro/cocoop"
	"github.com/reprolab/repro/icae"
	"github.com/reprolab/repro/imageclf"
	"github.com/reprolab/repro/ir"
	"github.com/reprolab/repro/mae"
	"github.com/reprolab/repro/metapt"
	"github.com/reprolab/repro/mlm"
	"github.com/reprolab/repro/pmlm"
	"github.com/reprolab/repro/template"
	"github.com/reprolab/repro/textclf"
	"github.com/reprolab/repro/train"
	"github.com/reprolab/repro/vampnet"
	"github.com/reprolab/repro/vqa"
)

// Tasks lists every task, by paper.
func Tasks() []train.Task {
	return []train.Task{
		template.Task,                                        // the template every paper starts from
		basics.Task,                                          // the trainer proven on Fashion-MNIST
		mae.PretrainTask, mae.LinprobeTask, mae.FinetuneTask, // He et al., CVPR 2022
		mlm.PretrainTask, mlm.FinetuneTask, // Yang et al., ACL 2023
		causal.FitTask, causal.SweepTask, // Chen et al., NeurIPS 2021
		metapt.PretrainTask, metapt.MultitaskTask, // Lv et al., 2020
		icae.LMTask, icae.PretrainTask, icae.FinetuneTask, // Ge et al., ICLR 2024
		pmlm.PretrainTask, pmlm.FinetuneTask, // Bao et al., ICML 2020
		ir.DenseTask, ir.ICTTask, ir.RerankTask, // Fan et al., 2021 survey: DPR bi-encoder, ICT pre-training, monoBERT re-ranking
		cocoop.CoOpTask, cocoop.CoCoOpTask, cocoop.ZeroShotTask, cocoop.PretrainTask, // Zhou et al., IJCV 2022 and CVPR 2022; the tiny CLIP of the scenes experiment
		cap.Task,                           // Xu et al., AAAI 2022
		vqa.PretrainTask, vqa.FinetuneTask, // Li et al., MICCAI 2023 (MUMC)
		vampnet.CodecTask, vampnet.TrainTask, vampnet.EvalTask, // Garcia et al., ISMIR 2023
		textclf.Task,  // fine-tuning BERT-family checkpoints on your texts (HF's run_glue.py)
		imageclf.Task, // fine-tuning ViT checkpoints on your images (MAE's main_finetune.py)
	}
}
