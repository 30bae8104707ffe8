"""StageTimer accumulates per-stage time and calls; the selector reports its stages to it."""

import time

import torch

from spatialvlm.diagnostics import StageTimer, maybe_stage
from spatialvlm.selection import ShirgXConfig, ShirgXSelector


def test_stage_timer_accumulates_and_tabulates():
    timer = StageTimer()
    for _ in range(2):
        with timer.stage("sleep"):
            time.sleep(0.01)
    with maybe_stage(timer, "other"):
        pass
    with maybe_stage(None, "ignored"):
        pass
    assert timer.calls == {"sleep": 2, "other": 1}
    assert 0.009 <= timer.mean("sleep") < 0.2
    assert timer.table().splitlines()[1].startswith("sleep")


def test_selector_reports_its_stages():
    timer = StageTimer()
    ShirgXSelector(ShirgXConfig(vision_dim=8))(torch.randn(1, 2304, 8), timer=timer, projector=torch.nn.Linear(8, 4))
    assert list(timer.totals) == ["embed", "project", "scaffold", "score", "budget", "merge", "select"]
