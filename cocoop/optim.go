package cocoop

import (
	"fmt"
	"math"

	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/train"
)

// This file is the recipe's optimizer and schedule as Dassl builds them
// from the CoOp configs (dassl/optim: build_optimizer and
// build_lr_scheduler, checked against KaiyangZhou/Dassl.pytorch at
// c61a1b57, with the defaults the configs leave in place).

// NewDasslSGD is torch.optim.SGD over model.parameters(), as Dassl's
// build_optimizer makes it for OPTIM.NAME "sgd": momentum, dampening 0,
// no Nesterov, and weight decay on every parameter (Dassl passes one
// parameter group, where train.SGD by default spares biases and other
// 1-D parameters). It runs over store's trainable parameters: the prompt
// learner's, since the CLIP lives in a store of its own.
func NewDasslSGD(store *torchmods.Store, momentum, weightDecay float64) *train.SGD {
	o := train.NewSGD(store, momentum, 0, weightDecay, false)
	o.DecayAll = true
	return o
}

// DasslSchedule is the learning rate of each step under Dassl's epoch-wise
// schedule with OPTIM.LR_SCHEDULER "cosine" and WARMUP_TYPE "constant": the
// scheduler steps once per epoch (after the epoch's last batch,
// forward_backward's update_lr), so every step of an epoch has that
// epoch's rate. Epochs before warmup train at warmupLR
// (ConstantWarmupScheduler); then CosineAnnealingLR(T_max = maxEpoch),
// which was built first and is stepped only once the warm-up is over,
// gives lr·(1 + cos(π·(e − warmup)/maxEpoch))/2 at epoch e (WARMUP_RECOUNT,
// Dassl's default, restarts the cosine after the warm-up). So a 10-epoch
// run trains its epochs 1..9 on the cosine's first nine values, never
// reaching its end.
func DasslSchedule(lr, warmupLR float64, warmupEpochs, maxEpoch, perEpoch int64) (train.Schedule, error) {
	if perEpoch < 1 || maxEpoch < 1 || warmupEpochs < 0 {
		return nil, fmt.Errorf("schedule: %d steps per epoch, %d epochs, %d warm-up epochs", perEpoch, maxEpoch, warmupEpochs)
	}
	return func(step int64) float64 {
		e := step / perEpoch
		if e < warmupEpochs {
			return warmupLR
		}
		return lr * 0.5 * (1 + math.Cos(math.Pi*float64(e-warmupEpochs)/float64(maxEpoch)))
	}, nil
}
