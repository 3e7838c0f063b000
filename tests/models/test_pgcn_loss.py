import math

import pytest
import torch

from videograph.models.pgcn_loss import activity_loss, completeness_loss, pgcn_loss, regression_loss
from videograph.models.pgcn_targets import BACKGROUND, FOREGROUND, INCOMPLETE


def make(seed, videos=5, per_video=8, classes=4):
    g = torch.Generator().manual_seed(seed)
    n = videos * per_video
    kind = torch.tensor(([FOREGROUND] + [INCOMPLETE] * 6 + [BACKGROUND]) * videos)
    kind[torch.randperm(n, generator=g)[:5]] = FOREGROUND                 # some fall-back slots
    label = torch.randint(1, classes + 1, (n,), generator=g)
    batch = torch.arange(videos).repeat_interleave(per_video)
    return dict(activity=torch.randn(n, classes + 1, generator=g), completeness=torch.randn(n, classes, generator=g),
                regression=torch.randn(n, classes, 2, generator=g), target=torch.randn(n, 2, generator=g),
                kind=kind, label=label, batch=batch)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_activity_loss_matches_a_loop(seed):
    d = make(seed)
    terms = []
    for i in range(d["kind"].numel()):
        if d["kind"][i] == INCOMPLETE:
            continue
        target = int(d["label"][i]) if d["kind"][i] == FOREGROUND else 0
        terms.append(-torch.log_softmax(d["activity"][i], 0)[target])
    expected = torch.stack(terms).mean()
    torch.testing.assert_close(activity_loss(d["activity"], d["kind"], d["label"]), expected)


@pytest.mark.parametrize("seed,ratio", [(0, 0.17), (1, 0.17), (2, 0.5), (3, 1.0)])
def test_completeness_hinge_with_ohem_matches_a_loop(seed, ratio):
    d = make(seed)
    positives, kept = [], []
    for v in range(int(d["batch"].max()) + 1):
        negatives = []
        for i in range(d["kind"].numel()):
            if d["batch"][i] != v:
                continue
            s = float(d["completeness"][i, d["label"][i] - 1])
            if d["kind"][i] == FOREGROUND:
                positives.append(max(0.0, 1 - s))
            elif d["kind"][i] == INCOMPLETE:
                negatives.append(max(0.0, 1 + s))
        if negatives:
            keep = max(1, int(math.floor(len(negatives) * ratio)))
            kept += sorted(negatives, reverse=True)[:keep]
    expected = (sum(positives) + sum(kept)) / (len(positives) + len(kept))
    got = completeness_loss(d["completeness"], d["kind"], d["label"], d["batch"], ohem_ratio=ratio)
    assert abs(float(got) - expected) < 1e-5


def test_ohem_keeps_one_hardest_negative_of_six():
    completeness = torch.tensor([[0.5], [-2.0], [-1.5], [0.3], [-3.0], [-0.5], [-1.0], [0.0]])
    kind = torch.tensor([FOREGROUND] + [INCOMPLETE] * 6 + [BACKGROUND])
    loss = completeness_loss(completeness, kind, torch.ones(8, dtype=torch.long), torch.zeros(8, dtype=torch.long))
    # Positive: 1 - 0.5; hardest negative: 1 + 0.3 (int(6 * 0.17) = 1).
    torch.testing.assert_close(loss, torch.tensor((0.5 + 1.3) / 2))


@pytest.mark.parametrize("seed", [0, 1])
def test_regression_loss_matches_a_loop(seed):
    d = make(seed)
    terms = []
    for i in range(d["kind"].numel()):
        if d["kind"][i] != FOREGROUND:
            continue
        total = 0.0
        for k in range(2):
            diff = abs(float(d["regression"][i, d["label"][i] - 1, k] - d["target"][i, k]))
            total += 0.5 * diff ** 2 if diff < 1 else diff - 0.5
        terms.append(total)
    got = regression_loss(d["regression"], d["kind"], d["label"], d["target"])
    assert abs(float(got) - sum(terms) / len(terms)) < 1e-5


def test_total_weights_and_gradients():
    d = make(4)
    outputs = tuple(d[k].clone().requires_grad_() for k in ("activity", "completeness", "regression"))
    total, parts = pgcn_loss(outputs, d["kind"], d["label"], d["target"], d["batch"])
    assert abs(float(total.detach()) - (parts["activity"] + 0.5 * parts["completeness"] + 0.5 * parts["regression"])) < 1e-5
    total.backward()
    assert all(o.grad is not None and torch.isfinite(o.grad).all() for o in outputs)
    # Background rows get no regression or completeness gradient; incomplete rows no activity gradient.
    bg, inc = d["kind"] == BACKGROUND, d["kind"] == INCOMPLETE
    assert float(outputs[2].grad[bg].abs().sum()) == 0 and float(outputs[1].grad[bg].abs().sum()) == 0
    assert float(outputs[0].grad[inc].abs().sum()) == 0


def test_empty_categories_give_zero_losses():
    d = make(0)
    bg = torch.full_like(d["kind"], BACKGROUND)
    assert float(completeness_loss(d["completeness"], bg, d["label"], d["batch"])) == 0
    assert float(regression_loss(d["regression"], bg, d["label"], d["target"])) == 0
    with pytest.raises(ValueError, match="ohem_ratio"):
        completeness_loss(d["completeness"], d["kind"], d["label"], d["batch"], ohem_ratio=2.0)
