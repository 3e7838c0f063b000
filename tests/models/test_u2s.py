import pytest
import torch
from torch import nn
from torch_geometric.data import Batch, Data

from videograph.models import STAGES, U2S, Small3DCNN, fit_u2s
from videograph.models.confusion import select_mask


class FeatureBackbone(nn.Module):
    """A whole backbone with forward_features -> (x, g), as LGD-3D gives."""
    out_channels = 6

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(3, 6, 3, padding=1)

    def forward_features(self, video):
        x = torch.relu(self.conv(video))
        return x, x.mean((2, 3, 4))


def _clip(generator, batch=2, frames=8, size=32):
    return torch.rand(batch, 3, frames, size, size, generator=generator)


def _backbone(name):
    if name == "module":
        return FeatureBackbone()
    if name == "lgd3d":
        from videograph.models import LGD3D
        return LGD3D(5, layers=(1, 1), widths=(8, 16), stem_channels=8, rank_ratio=4)
    return name


@pytest.mark.parametrize("backbone", ["small", "r3d_18", "module", "lgd3d"])
def test_forward_backward_on_each_backbone(backbone, generator):
    torch.manual_seed(0)
    model = U2S(_backbone(backbone), 5)
    model.set_stage("joint").train()
    video, y = _clip(generator, 2, 4, 16), torch.tensor([1, 3])
    probs = model(video)
    assert probs.shape == (2, 5)
    torch.testing.assert_close(probs.sum(-1), torch.ones(2))
    loss, scores = model.loss(Batch.from_data_list([Data(video=video[i:i + 1], y=y[i:i + 1]) for i in range(2)]))
    loss.backward()
    assert scores.shape == (2, 5)
    missing = {name for name, p in model.named_parameters() if p.grad is None}
    if backbone == "lgd3d":
        # U2S reads LGD-3D's x_L only: its own heads and the last block's global path (which feeds only g_L) idle
        last = f"blocks.{len(model.universal.backbone.blocks) - 1}."
        assert missing and all(".backbone.fc_" in n or ".backbone.kernel." in n or f"{last}w_g" in n for n in missing)
    else:
        assert not missing


def test_specific_head_reads_the_masked_csn_map(generator):
    torch.manual_seed(0)
    model = U2S("small", 4).eval()
    model.confusable.copy_(torch.tensor([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=torch.bool))
    video = _clip(generator)
    out = model.outputs(video)
    with torch.no_grad():
        trunk = model.early(video)
        universal = model.universal_head(model.universal(trunk).mean((2, 3, 4)))
        fmap = model.specific(trunk)
        masks = model.mask(fmap)
        chosen = universal.argmax(-1)
        mask = torch.sigmoid(torch.stack([masks[b, model.confusable[c]].mean(0) for b, c in enumerate(chosen)]))
        specific = model.specific_head((fmap * mask[:, None]).mean((2, 3, 4)))
    torch.testing.assert_close(out.universal, universal)
    torch.testing.assert_close(out.bridge, masks.mean((2, 3, 4)))
    torch.testing.assert_close(out.specific, specific)
    oracle = model.outputs(video, classes=torch.tensor([2, 3]))
    expected = model.specific_head((fmap * torch.sigmoid(select_mask(masks, torch.tensor([2, 3]),
                                                                     model.confusable))).mean((2, 3, 4)))
    torch.testing.assert_close(oracle.specific, expected)


def test_specific_stage_freezes_the_universal_network(generator):
    torch.manual_seed(0)
    model = U2S("small", 3).set_stage("specific").train()
    stats = {k: v.clone() for k, v in model.state_dict().items() if "running_mean" in k}
    batch = Batch.from_data_list([Data(video=_clip(generator, 1), y=torch.tensor([i])) for i in range(3)])
    loss, _ = model.loss(batch)
    loss.backward()
    for part in (model.early, model.universal, model.universal_head):
        assert all(p.grad is None and not p.requires_grad for p in part.parameters())
    assert all(p.grad is not None for p in model.specific.parameters())
    after = model.state_dict()
    for key, value in stats.items():
        frozen = key.startswith(("early", "universal"))
        assert torch.equal(after[key], value) == frozen, key


def test_checkpoint_round_trip_with_weights_only(tmp_path, generator):
    torch.manual_seed(0)
    model = U2S("small", 4).set_stage("specific").eval()
    model.confusable[0, 1] = model.confusable[1, 0] = True
    torch.save(model.state_dict(), tmp_path / "u2s.pt")
    torch.manual_seed(1)
    other = U2S("small", 4)
    other.load_state_dict(torch.load(tmp_path / "u2s.pt", weights_only=True))
    other.eval()
    assert other.stage == "specific" and torch.equal(other.confusable, model.confusable)
    assert not any(p.requires_grad for p in other.universal.parameters())
    video = _clip(generator)
    torch.testing.assert_close(other(video), model(video))


def test_fit_u2s_stages_and_planted_confusion(tmp_path, generator):
    torch.manual_seed(0)
    data = [Data(video=_clip(generator, 1, 4, 24), y=torch.tensor([i % 3])) for i in range(12)]
    model = U2S(Small3DCNN(width=4), 3, num_confusing=2)
    histories = fit_u2s(model, data, epochs=(1, 1, 1), batch_size=6, checkpoint_dir=str(tmp_path), progress=False)
    assert list(histories) == list(STAGES) and model.stage == "joint"
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"u2s_{s}.pt" for s in sorted(STAGES)]
    assert torch.equal(model.confusable, model.confusable.T) and bool(model.confusable.diagonal().all())
    assert int(model.confusable.sum()) in (5, 7)          # 3 + 2 round(3 / 2) pairs, ties may add one


def test_bad_inputs_name_the_argument(generator):
    with pytest.raises(ValueError, match="num_confusing"):
        U2S("small", 4, num_confusing=5)
    with pytest.raises(ValueError, match="mask_activation"):
        U2S("small", 4, mask_activation="tanh")
    with pytest.raises(ValueError, match="backbone"):
        U2S("resnet", 4)
    model = U2S("small", 4)
    with pytest.raises(ValueError, match="B, 3, T, H, W"):
        model(torch.rand(2, 3, 32, 32))
    with pytest.raises(ValueError, match="'y'"):
        model.loss(Data(video=_clip(generator, 1), y=torch.tensor([4])))
    with pytest.raises(ValueError, match="classes"):
        model.outputs(_clip(generator), classes=torch.tensor([0, 9]))
    with pytest.raises(ValueError, match="stage"):
        model.set_stage("bridge")
