"""The moving average of the weights: TensorFlow's warm-up schedule on Lightning's ``WeightAveraging``."""

from functools import partial

import torch
from torch.optim.swa_utils import AveragedModel

from lightning_modules.averaging import warmup_ema


def test_the_average_follows_the_warm_up_schedule_from_the_initial_weights():
    torch.manual_seed(0)
    net = torch.nn.Linear(4, 3)
    averaged = AveragedModel(net, multi_avg_fn=partial(warmup_ema, decay=0.5))
    averaged.update_parameters(net)  # WarmupEMA.setup: the copy of step 0
    expected = [p.detach().clone() for p in net.parameters()]
    for step in range(1, 40):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p))
        averaged.update_parameters(net)
        # By hand: 1 - 2/11 at step 1, 1 - 3/12 at step 2, ..., 1 - decay from step 8 on.
        weight = 1.0 - min(0.5, (1 + step) / (10 + step))
        for avg, p in zip(expected, net.parameters(), strict=True):
            avg.lerp_(p.detach(), weight)
        for avg, got in zip(expected, averaged.module.parameters(), strict=True):
            assert torch.equal(avg, got), step
    assert int(averaged.n_averaged) == 40
