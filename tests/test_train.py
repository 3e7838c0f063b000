import pytest
import torch

import videograph as vg
from videograph.datasets import SyntheticInteractions
from videograph.models import MUSLE, Base
from videograph.train import TrainConfig, evaluate, fit, load_checkpoint


@pytest.fixture(scope="module")
def easy_split():
    """Two classes that differ in one object's own motion (jump vs orbit): tubelet graphs with box coordinates."""
    train, test = SyntheticInteractions.splits(216, 60, seed=3, classes=("jump", "orbit"), num_objects=(2, 3))
    build = lambda videos: [vg.build_graph(v.tubelets(num_clips=2)) for v in videos]   # noqa: E731
    return build(train), build(test)


def _tiny_graphs():
    g = torch.Generator().manual_seed(0)
    graphs = []
    for i in range(12):
        boxes = torch.rand(3, 2, 2, generator=g) * 20
        boxes = torch.cat([boxes, boxes + 5], -1)
        graphs.append(vg.build_graph(vg.Tubelets(boxes, torch.tensor([0, 0, 1]), torch.randn(3, 4, generator=g) + i % 2,
                                                 label=i % 2, frame_size=(32, 32))))
    return graphs


def test_musle_training_smoke_reaches_well_above_chance(easy_split):
    torch.manual_seed(0)
    train, test = easy_split
    model = MUSLE(2, train[0].x.size(1), train[0].coord.size(1), scales=(3,), node_visual=False,
                  edge_semantic=False, aux_weight=1.0, fit_top=1, background=True, generative_features=False,
                  ce_start=6, train_subgraphs=64)
    history = fit(model, train, TrainConfig(epochs=7, batch_size=16, lr=1e-2, lr_step=6, seed=0, progress=False))
    assert len(history.loss) == 7 and all(map(lambda v: v == v, history.loss))
    accuracy = evaluate(model, test)
    assert accuracy >= 0.8          # chance: 0.5


def test_resumed_training_matches_an_uninterrupted_run(tmp_path):
    torch.set_num_threads(1)
    graphs = _tiny_graphs()
    path = str(tmp_path / "base.pt")

    torch.manual_seed(0)
    straight = Base(4, 2, hidden_channels=8)
    fit(straight, graphs, TrainConfig(epochs=4, batch_size=4, seed=1, progress=False))

    torch.manual_seed(0)
    first = Base(4, 2, hidden_channels=8)
    fit(first, graphs, TrainConfig(epochs=2, batch_size=4, seed=1, progress=False, checkpoint=path))
    assert load_checkpoint(path)["epoch"] == 2
    torch.manual_seed(123)                       # a different initialisation: the checkpoint must overwrite it
    resumed = Base(4, 2, hidden_channels=8)
    history = fit(resumed, graphs, TrainConfig(epochs=4, batch_size=4, seed=1, progress=False, checkpoint=path,
                                               resume=True))
    assert len(history.loss) == 4
    for key, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value)


def test_checkpoints_load_with_weights_only(tmp_path):
    path = str(tmp_path / "musle.pt")
    graphs = _tiny_graphs()
    model = MUSLE(2, 4, graphs[0].coord.size(1), scales=(2,), num_components=2, train_subgraphs=4)
    fit(model, graphs, TrainConfig(epochs=1, batch_size=4, progress=False, checkpoint=path))
    state = torch.load(path, weights_only=True)
    assert set(state) == {"model", "optimizer", "epoch", "history", "generator"}


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="lr"):
        TrainConfig(lr=0.0)
    with pytest.raises(ValueError, match="train_set"):
        fit(Base(4, 2), [])


def test_dynamic_k_masks_components_and_training_continues():
    class Pruned(MUSLE):
        def end_epoch(self, dataset=None):
            if int(self.epochs_done) == 0:       # force one component of class 0's mixture out after epoch 1
                self.bank.stack(2).running_phi[0] = torch.tensor([0.01, 0.5, 0.49])
            super().end_epoch(dataset)

    graphs = _tiny_graphs()
    torch.manual_seed(0)
    model = Pruned(2, 4, graphs[0].coord.size(1), scales=(2,), num_components=3, train_subgraphs=4,
                   prune_threshold=0.02)
    snapshot = {}

    def after(epoch, history):
        if epoch == 0:
            snapshot["weight"] = model.bank.stack(2).weight2.detach().clone()
            snapshot["active"] = model.bank.stack(2).active.clone()

    history = fit(model, graphs, TrainConfig(epochs=3, batch_size=4, progress=False), on_epoch=after)
    stack = model.bank.stack(2)
    assert snapshot["active"][0].tolist() == [False, True, True] and not bool(stack.active[0, 0])
    assert float(stack.running_phi[0, 0]) == 0.0 and all(v == v for v in history.loss)
    assert not torch.equal(stack.weight2.detach(), snapshot["weight"])     # still optimised after pruning
