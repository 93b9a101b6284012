package cap

import (
	"slices"

	"github.com/reprolab/repro/internal/config"
	"github.com/reprolab/repro/textclf"
	"github.com/reprolab/repro/train"
)

// Config is the "cap.prune" task's config: prune a pre-trained BERT while
// fine-tuning it on a classification task, distilled from a fine-tuned
// teacher, with or without CAP's contrastive terms. The keys follow the
// official scripts' arguments (run_glue.sh, run_glue_topk_kd.sh,
// run_glue_soft_kd.sh); the data keys are text.classify's.
type Config struct {
	train.Base
	// Pretrained is the model pruning starts from: the pre-trained, not
	// fine-tuned, BERT (the official model_name_or_path,
	// bert-base-uncased), with a new classification head. A HF folder,
	// hf:ORG/NAME or a repro run with a BERT [model] (mlm.pretrain).
	Pretrained string `toml:"pretrained"`
	// Teacher is the fine-tuned model (a text.classify run or a HF
	// BertForSequenceClassification folder) that the student is distilled
	// from and whose representations fill the fine-tuned bank (FiC). Its
	// tokenizer must be the student's.
	Teacher string `toml:"teacher"`
	// Tokenizer overrides the one beside the pre-trained weights.
	Tokenizer string `toml:"tokenizer"`
	// Labels, in class-id order; empty takes the GLUE task's, else the
	// training labels sorted. The teacher's must be the same.
	Labels  []string            `toml:"labels"`
	Metrics []string            `toml:"metrics"`
	MaxLen  int                 `toml:"max_len"` // max_seq_length
	Optim   textclf.OptimConfig `toml:"optim"`
	Data    textclf.DataConfig  `toml:"data"`
	Prune   PruneConfig         `toml:"prune"`
	// Contrastive is CAP itself; with enabled = false the run is the
	// official script without --use_contrastive_loss: distillation and
	// cross-entropy only, the baseline CAP is compared with.
	Contrastive ContrastiveConfig `toml:"contrastive"`
	Distill     DistillConfig     `toml:"distill"`
	// MLMEval, if set, measures the masked-LM loss of the pruned encoder on
	// a text file's lines (the task-agnostic knowledge the paper says the
	// pre-trained bank keeps), with the pre-trained run's MLM head.
	MLMEval MLMEvalConfig `toml:"mlm_eval"`
}

// PruneConfig says how to prune.
type PruneConfig struct {
	// Method is "structured" (CAP-f: heads and feed-forward neurons by
	// importance, in rounds), "topK" (CAP-m: movement pruning),
	// "sigmoied_threshold" (CAP-soft) or "magnitude".
	Method string `toml:"method"`

	// Structured. Percents are the sparsity targets of the rounds
	// (prune_percent: 10, 20, ..., 90), of heads and of neurons alike
	// unless HeadPercents (same length) sets the heads' apart. Each round
	// prunes, then retrains for trainer.max_steps (or trainer.epochs)
	// with a fresh optimizer and schedule (retrain_num_train_epochs).
	Percents     []float64 `toml:"percents"`
	HeadPercents []float64 `toml:"head_percents"`
	AtLeastHeads int64     `toml:"at_least_heads"` // at_least_x_heads_per_layer (1)
	// HeadProtection is "live" (each layer keeps at_least_heads of its
	// remaining heads, the paper's rule) or "official" (the code's
	// protection, which can leave a layer without heads; see doc.go).
	HeadProtection string `toml:"head_protection"`
	// NormalizeByLayer divides importance by its L2 norm per layer
	// (--normalize_pruning_by_layer, set in the official script).
	NormalizeByLayer bool `toml:"normalize_by_layer"`
	// ImportanceShare is the share of the training set whose gradients
	// score importance (subset_ratio, 1.0 officially).
	ImportanceShare float64 `toml:"importance_share"`

	// Unstructured: the threshold schedule (schedule_threshold) over the
	// whole run. Warmup is warmup_steps, shared with the learning rate's
	// linear warm-up as in the official script.
	InitialThreshold float64 `toml:"initial_threshold"`
	FinalThreshold   float64 `toml:"final_threshold"`
	Warmup           int64   `toml:"warmup"`
	InitialWarmup    int64   `toml:"initial_warmup"`
	FinalWarmup      int64   `toml:"final_warmup"`
	MaskLR           float64 `toml:"mask_lr"`    // mask_scores_learning_rate
	MaskScale        float64 `toml:"mask_scale"` // constant initial score
	// Regularization is "" or "l1" (soft movement's penalty on
	// sigmoid(scores)), weighted up to FinalLambda.
	Regularization string  `toml:"regularization"`
	FinalLambda    float64 `toml:"final_lambda"`
	// SnapshotEvery is the steps between SnC snapshots in unstructured
	// runs; 0 takes one at the start of every epoch after the first, as
	// masked_run_glue.py does.
	SnapshotEvery int64 `toml:"snapshot_every"`
}

// ContrastiveConfig is the contrastive framework's arguments.
type ContrastiveConfig struct {
	Enabled bool `toml:"enabled"` // --use_contrastive_loss
	// Banks are the memory banks used: "pretrained" (PrC), "snapshots"
	// (SnC), "finetuned" (FiC); all three in the official code.
	Banks         []string `toml:"banks"`
	Temperature   float64  `toml:"temperature"`    // contrastive_temperature (0.1)
	ExtraExamples int64    `toml:"extra_examples"` // 4096
	Unsup         float64  `toml:"unsup"`          // cl_unsupervised_loss_weight
	Sup           float64  `toml:"sup"`            // cl_supervised_loss_weight
	// Rep is the representation: "cls" (the pooler's output, alignrep
	// cls, the official scripts') or "mean-pooling".
	Rep string `toml:"rep"`
	// Normalise is "code" (the official loss's division) or "paper".
	Normalise string `toml:"normalise"`
}

// DistillConfig is the cross-entropy and distillation weighting.
type DistillConfig struct {
	Enabled     bool    `toml:"enabled"`     // --use_distill
	Weight      float64 `toml:"weight"`      // distill_loss_weight (0.9)
	Temperature float64 `toml:"temperature"` // distill_temperature (1.0)
	CEWeight    float64 `toml:"ce_weight"`   // ce_loss_weight (0.1)
}

// MLMEvalConfig names the text whose masked-LM loss is measured.
type MLMEvalConfig struct {
	File string `toml:"file"` // a TSV/CSV/JSONL with text.classify's layout, or "" for none
	// Share of each text's tokens masked (all replaced by [MASK]), with a
	// fixed seed so every run masks the same tokens.
	Share float64 `toml:"share"`
	Limit int     `toml:"limit"` // at most this many texts (0: all)
}

// Banks' names.
const (
	BankPretrained = "pretrained"
	BankSnapshots  = "snapshots"
	BankFinetuned  = "finetuned"
)

// Default is the official structured script's settings (run_glue.sh),
// less its sparsity targets (prune.percents), which a structured config
// sets, so that an unstructured config never carries unused ones.
func Default() *Config {
	t := train.DefaultTrainer()
	t.Epochs = 2 // retrain_num_train_epochs, per round
	return &Config{
		Base: train.Base{Task: "cap.prune", Trainer: t}, MaxLen: 128,
		Optim: textclf.OptimConfig{LR: 2e-5, WarmupRatio: 0.1, WeightDecay: 0.01, Clip: 1, Betas: [2]float64{0.9, 0.999}, Eps: 1e-8},
		Data:  textclf.DataConfig{Text: "sentence", Label: "label", Batch: 16, EvalBatch: 64},
		Prune: PruneConfig{Method: "structured", AtLeastHeads: 1, HeadProtection: "live",
			NormalizeByLayer: true, ImportanceShare: 1, InitialThreshold: 1, FinalThreshold: 0.1, InitialWarmup: 2, FinalWarmup: 3,
			MaskLR: 1e-2},
		Contrastive: ContrastiveConfig{Enabled: true, Banks: []string{BankPretrained, BankSnapshots, BankFinetuned}, Temperature: 0.1,
			ExtraExamples: 4096, Unsup: 0.3, Sup: 3, Rep: "cls", Normalise: "code"},
		Distill: DistillConfig{Enabled: true, Weight: 0.9, Temperature: 1, CEWeight: 0.1},
		MLMEval: MLMEvalConfig{Share: 0.15},
	}
}

// Validate checks the keys, naming them.
func (c *Config) Validate() error {
	p := c.Prune
	switch {
	case c.Pretrained == "":
		return config.Field("pretrained", "the pre-trained model to prune is required")
	case c.Teacher == "" && (c.Distill.Enabled || c.Contrastive.Enabled && slices.Contains(c.Contrastive.Banks, BankFinetuned)):
		return config.Field("teacher", "distillation and the fine-tuned bank need the fine-tuned teacher")
	case c.MaxLen < 3:
		return config.Field("max_len", "must be at least 3, got %d", c.MaxLen)
	case c.Data.Batch < 1 || c.Data.EvalBatch < 1:
		return config.Field("data.batch", "data.batch and data.eval_batch must be positive")
	case !(c.Optim.LR > 0):
		return config.Field("optim.lr", "must be positive, got %v", c.Optim.LR)
	case c.Optim.Warmup < 0 || c.Optim.WarmupRatio < 0 || c.Optim.WarmupRatio >= 1:
		return config.Field("optim.warmup_ratio", "warmup must not be negative and warmup_ratio in [0, 1)")
	case c.Optim.Warmup > 0 && c.Optim.WarmupRatio > 0:
		return config.Field("optim.warmup", "set optim.warmup or optim.warmup_ratio, not both")
	case (c.Prune.Method == string(TopK) || c.Prune.Method == string(Sigmoid) || c.Prune.Method == string(Magnitude)) && c.Optim.WarmupRatio > 0:
		return config.Field("optim.warmup_ratio", "unstructured runs warm up for prune.warmup steps (warmup_steps drives the learning rate and the threshold alike in masked_run_glue.py): set optim.warmup_ratio = 0")
	}
	if c.Data.GLUE != "" {
		if _, ok := textclf.GLUE(c.Data.GLUE); !ok {
			return config.Field("data.glue", "unknown GLUE task %q: one of %v", c.Data.GLUE, textclf.GLUENames())
		}
	}
	switch p.Method {
	case "structured":
		if len(p.Percents) == 0 {
			return config.Field("prune.percents", "structured pruning needs the rounds' sparsity targets (the official script: 10, 20, ..., 90)")
		}
		if len(p.HeadPercents) > 0 && len(p.HeadPercents) != len(p.Percents) {
			return config.Field("prune.head_percents", "has %d entries, prune.percents %d", len(p.HeadPercents), len(p.Percents))
		}
		for _, list := range [][]float64{p.Percents, p.HeadPercents} {
			if !slices.IsSorted(list) {
				return config.Field("prune.percents", "the rounds' targets must rise: %v", list)
			}
		}
		if !(p.ImportanceShare > 0 && p.ImportanceShare <= 1) {
			return config.Field("prune.importance_share", "must be in (0, 1], got %v", p.ImportanceShare)
		}
		if p.AtLeastHeads < 0 {
			return config.Field("prune.at_least_heads", "must not be negative")
		}
		if p.HeadProtection != "live" && p.HeadProtection != "official" {
			return config.Field("prune.head_protection", `"live" or "official", got %q`, p.HeadProtection)
		}
	case string(TopK), string(Sigmoid), string(Magnitude):
		if p.Warmup < 0 || p.InitialWarmup < 0 || p.FinalWarmup < 0 {
			return config.Field("prune.warmup", "warmup, initial_warmup and final_warmup must not be negative")
		}
		if p.Method != string(Sigmoid) && !(p.FinalThreshold > 0 && p.FinalThreshold <= 1 && p.InitialThreshold <= 1) {
			return config.Field("prune.final_threshold", "is the share of weights kept, in (0, 1], got %v", p.FinalThreshold)
		}
		if p.Regularization != "" && p.Regularization != "l1" {
			return config.Field("prune.regularization", `"" or "l1", got %q`, p.Regularization)
		}
		if p.Regularization != "" && p.Method != string(Sigmoid) {
			return config.Field("prune.regularization", "applies to sigmoied_threshold scores only")
		}
		if p.Regularization != "" && !(p.FinalThreshold > 0) {
			return config.Field("prune.final_threshold", "the L1 weight is final_lambda * threshold / final_threshold: final_threshold must be positive")
		}
		if p.Method != string(Magnitude) && !(p.MaskLR > 0) {
			return config.Field("prune.mask_lr", "must be positive, got %v", p.MaskLR)
		}
		if len(p.Percents) > 0 || len(p.HeadPercents) > 0 {
			return config.Field("prune.percents", "is for structured pruning; unstructured runs use prune.final_threshold")
		}
	default:
		return config.Field("prune.method", `"structured", "topK", "sigmoied_threshold" or "magnitude", got %q`, p.Method)
	}
	cc := c.Contrastive
	if cc.Enabled {
		for _, b := range cc.Banks {
			if b != BankPretrained && b != BankSnapshots && b != BankFinetuned {
				return config.Field("contrastive.banks", "unknown bank %q: pretrained, snapshots, finetuned", b)
			}
		}
		switch {
		case len(cc.Banks) == 0:
			return config.Field("contrastive.banks", "no bank: set contrastive.enabled = false for the run without contrastive terms")
		case !(cc.Temperature > 0):
			return config.Field("contrastive.temperature", "must be positive")
		case cc.ExtraExamples < 0:
			return config.Field("contrastive.extra_examples", "must not be negative")
		case cc.Rep != "cls" && cc.Rep != "mean-pooling":
			return config.Field("contrastive.rep", `"cls" or "mean-pooling", got %q`, cc.Rep)
		case cc.Normalise != "code" && cc.Normalise != "paper":
			return config.Field("contrastive.normalise", `"code" or "paper", got %q`, cc.Normalise)
		case p.SnapshotEvery < 0:
			return config.Field("prune.snapshot_every", "must not be negative")
		}
	}
	if c.Distill.Enabled && !(c.Distill.Temperature > 0) {
		return config.Field("distill.temperature", "must be positive")
	}
	if c.MLMEval.File != "" && !(c.MLMEval.Share > 0 && c.MLMEval.Share < 1) {
		return config.Field("mlm_eval.share", "must be in (0, 1), got %v", c.MLMEval.Share)
	}
	return nil
}

// textConfig is the config as text.classify's, for its data plan.
func (c *Config) textConfig() *textclf.Config {
	return &textclf.Config{Labels: c.Labels, Metrics: c.Metrics, MaxLen: c.MaxLen, Data: c.Data}
}
