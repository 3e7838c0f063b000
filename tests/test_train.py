import math

import pytest
import torch

import videograph as vg
from videograph.datasets import SyntheticInteractions
from videograph.models import GCN, MUSLE, STRG, Base
from videograph.nn import PrototypeBank
from videograph.train import TrainConfig, evaluate, fit, load_checkpoint


@pytest.fixture
def one_thread():
    """Bitwise-reproducible reductions for the duration of one test; the session's thread count comes back."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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
    assert len(history.loss) == 7 and all(map(math.isfinite, history.loss))
    assert history.loss[-1] < history.loss[0]
    accuracy = evaluate(model, test)
    assert accuracy >= 0.8          # chance: 0.5


def test_resumed_training_matches_an_uninterrupted_run(tmp_path, one_thread):
    graphs = _tiny_graphs()
    path = str(tmp_path / "base.pt")

    torch.manual_seed(0)
    straight = Base(4, 2, hidden_channels=8, dropout=0.5)
    fit(straight, graphs, TrainConfig(epochs=4, batch_size=4, seed=1, progress=False))

    torch.manual_seed(0)
    first = Base(4, 2, hidden_channels=8, dropout=0.5)
    fit(first, graphs, TrainConfig(epochs=2, batch_size=4, seed=1, progress=False, checkpoint=path))
    assert load_checkpoint(path)["epoch"] == 2
    torch.manual_seed(123)                       # a different initialisation: the checkpoint must overwrite it
    resumed = Base(4, 2, hidden_channels=8, dropout=0.5)
    history = fit(resumed, graphs, TrainConfig(epochs=4, batch_size=4, seed=1, progress=False, checkpoint=path,
                                               resume=True))
    assert len(history.loss) == 4
    for key, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value)


def test_checkpoints_load_with_weights_only_and_restore_the_run(tmp_path):
    path = str(tmp_path / "musle.pt")
    graphs = _tiny_graphs()
    torch.manual_seed(0)
    model = MUSLE(2, 4, graphs[0].coord.size(1), scales=(2,), num_components=2, train_subgraphs=4)
    history = fit(model, graphs, TrainConfig(epochs=1, batch_size=4, progress=False, checkpoint=path))
    state = torch.load(path, weights_only=True)
    assert set(state) == {"model", "optimizer", "epoch", "history", "generator", "rng"}
    assert state["epoch"] == 1 and state["history"] == history.as_dict()
    torch.manual_seed(5)
    fresh = MUSLE(2, 4, graphs[0].coord.size(1), scales=(2,), num_components=2, train_subgraphs=4)
    fresh.load_state_dict(state["model"])
    batch = next(iter(torch_geometric_loader(graphs)))
    model.eval(), fresh.eval()
    torch.testing.assert_close(fresh(batch), model(batch))
    optimizer = torch.optim.Adam(fresh.parameters())
    optimizer.load_state_dict(state["optimizer"])
    steps = {int(s["step"]) for s in optimizer.state_dict()["state"].values()}
    assert steps == {len(graphs) // 4}          # one Adam step per batch of the epoch
    generator = torch.Generator()
    generator.set_state(state["generator"])     # a valid generator state, advanced past the seed
    assert not torch.equal(state["generator"], torch.Generator().manual_seed(0).get_state())


def torch_geometric_loader(graphs):
    from torch_geometric.loader import DataLoader
    return DataLoader(graphs, batch_size=len(graphs))


def _musle_with_dropout(graphs, seed, compacting=False):
    class Compacting(MUSLE):
        """Dynamic K that changes parameter shapes: one component of every mixture forced out, then compact_."""
        def end_epoch(self, dataset=None):
            if int(self.epochs_done) == 0:
                with torch.no_grad():
                    self.bank.stack(2).running_phi[:, 0] = 0.001
            super().end_epoch(dataset)
            self.bank.compact_()

    torch.manual_seed(seed)
    coord = graphs[0].coord.size(1)
    probe = MUSLE(2, 4, coord, scales=(2,))
    bank = PrototypeBank(2, probe.node_encoder.out_channels, probe.pair_encoder.out_channels, scales=(2,),
                         num_components=3, eps=1e-2, dropout=0.3)
    return (Compacting if compacting else MUSLE)(2, 4, coord, scales=(2,), train_subgraphs=2, bank=bank,
                                                 aux_weight=1.0)


@pytest.mark.parametrize("compacting", [False, True])
def test_resumed_musle_with_dropout_matches_an_uninterrupted_run(tmp_path, one_thread, compacting):
    """Dropout in the bank draws from the global RNG and the loss samples sub-graphs with the generator: both
    must follow the seed and survive the checkpoint (with compact_, also the changed parameter shapes)."""
    graphs = _tiny_graphs()
    path = str(tmp_path / "musle.pt")
    config = dict(batch_size=4, seed=2, progress=False)
    straight = _musle_with_dropout(graphs, 0, compacting)
    straight_history = fit(straight, graphs, TrainConfig(epochs=4, **config))
    first = _musle_with_dropout(graphs, 0, compacting)
    fit(first, graphs, TrainConfig(epochs=2, checkpoint=path, **config))
    resumed = _musle_with_dropout(graphs, 7, compacting)     # another initialisation: the checkpoint overwrites it
    torch.rand(100)                                          # and another global RNG state
    history = fit(resumed, graphs, TrainConfig(epochs=4, checkpoint=path, resume=True, **config))
    if compacting:
        assert straight.bank.stack(2).num_components == 2
    assert history.loss == straight_history.loss
    for key, value in straight.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key


def test_same_seed_same_run_whatever_the_global_rng(one_thread):
    graphs = _tiny_graphs()
    runs = []
    for noise in (1, 2):
        model = _musle_with_dropout(graphs, 0)
        torch.manual_seed(noise)                 # the caller's global RNG differs between the two runs ...
        before = torch.get_rng_state()
        history = fit(model, graphs, TrainConfig(epochs=2, batch_size=4, seed=3, progress=False))
        assert torch.equal(torch.get_rng_state(), before)   # ... and fit leaves it as it found it
        runs.append((history.loss, model.state_dict()))
    assert runs[0][0] == runs[1][0]
    for key, value in runs[0][1].items():
        assert torch.equal(runs[1][1][key], value), key
    other = _musle_with_dropout(graphs, 0)
    assert fit(other, graphs, TrainConfig(epochs=2, batch_size=4, seed=4, progress=False)).loss != runs[0][0]


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
    assert float(stack.running_phi[0, 0]) == 0.0 and all(map(math.isfinite, history.loss))
    assert not torch.equal(stack.weight2.detach(), snapshot["weight"])     # still optimised after pruning


def _tiny_region_graphs():
    g = torch.Generator().manual_seed(1)
    graphs = []
    for i in range(8):
        frame = torch.arange(3).repeat_interleave(3)
        xy = torch.rand(9, 2, generator=g) * 20 + frame[:, None] * 2.0
        graphs.append(vg.build_graph(vg.Regions(torch.cat([xy, xy + 12], -1), frame,
                                                torch.randn(9, 4, generator=g) + i % 2, label=i % 2,
                                                frame_size=(48, 48))))
    return graphs


@pytest.mark.parametrize("name", ["GCN", "STRG"])
def test_dropout_of_gcn_and_strg_follows_the_seed_and_survives_a_resume(tmp_path, one_thread, name):
    graphs = _tiny_graphs() if name == "GCN" else _tiny_region_graphs()
    build = {"GCN": lambda: GCN(4, 2, hidden_channels=8, dropout=0.5),
             "STRG": lambda: STRG(4, 2, num_layers=1, dropout=0.5, zero_init=False)}[name]
    path = str(tmp_path / "model.pt")
    config = dict(batch_size=4, seed=5, progress=False)
    torch.manual_seed(0)
    straight = build()
    torch.manual_seed(11)                         # another global RNG state at the start of the run
    fit(straight, graphs, TrainConfig(epochs=3, **config))
    torch.manual_seed(0)
    first = build()
    fit(first, graphs, TrainConfig(epochs=1, checkpoint=path, **config))
    resumed = build()
    fit(resumed, graphs, TrainConfig(epochs=3, checkpoint=path, resume=True, **config))
    for key, value in straight.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key
