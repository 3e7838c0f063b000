r"""MUSLE end to end on synthetic interaction videos: frames -> small CNN + RoIAlign tubelet features -> node and
pair encoders -> k-node sub-graphs -> per-class Gaussian mixtures -> prediction, with the CNN trained jointly.

    python examples/musle.py                 # frozen CNN, features computed once (~30 s on one core)
    python examples/musle.py --end-to-end    # the CNN trains jointly (slower)
"""
import argparse

import torch
from torch_geometric.data import Data

import videograph as vg
from videograph.datasets import SyntheticInteractions
from videograph.ablations.musle import MUSLE_TRAINING
from videograph.models import MUSLE
from videograph.nn.encoders import RoIFeatures, tubelet_frame_index
from videograph.train import TrainConfig, evaluate, fit


class VideoGraph(Data):
    """A tubelet graph that carries its frames: ``frame_index`` is offset by the frames of the earlier videos
    when PyG batches graphs, as ``edge_index`` is by their nodes."""

    def __inc__(self, key, value, *args, **kwargs):
        if key == "frame_index":
            return self.frames.size(0)
        return super().__inc__(key, value, *args, **kwargs)

    def __cat_dim__(self, key, value, *args, **kwargs):
        if key == "frame_index":          # [N, t]: stack nodes (PyG would concatenate '*index' keys on dim -1)
            return 0
        return super().__cat_dim__(key, value, *args, **kwargs)


class EndToEnd(torch.nn.Module):
    """Computes the tubelet features from the frames, then runs the wrapped model (its loss too)."""

    def __init__(self, encoder: RoIFeatures, model: MUSLE):
        super().__init__()
        self.encoder, self.model = encoder, model

    def _with_features(self, batch):
        batch.x = self.encoder(batch.frames, batch.boxes, batch.frame_index)
        return batch

    def loss(self, batch, generator=None):
        return self.model.loss(self._with_features(batch), generator)

    def forward(self, batch):
        return self.model(self._with_features(batch))

    @torch.no_grad()
    def end_epoch(self, dataset):
        """MUSLE's epoch end (dynamic K, re-estimating the mixtures) on features of the current CNN."""
        featured = []
        for data in dataset:
            data = data.clone()
            data.x = self.encoder(data.frames, data.boxes, data.frame_index)
            featured.append(data)
        self.model.end_epoch(dataset=featured)


def graphs(videos, encoder=None, num_clips=2):
    out = []
    for video in videos:
        g = vg.build_graph(video.tubelets(num_clips=num_clips))
        data = VideoGraph(coord=g.coord, boxes=g.boxes, clip=g.clip, y=g.y, num_nodes=g.num_nodes,
                          frame_index=tubelet_frame_index(g.clip, g.boxes.size(1)), frames=video.frames)
        if encoder is not None:                      # frozen: features once, frames dropped
            with torch.no_grad():
                data.x = encoder(video.frames, data.boxes, data.frame_index)
            del data.frames, data.frame_index
        out.append(data)
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--end-to-end", action="store_true", help="train the CNN jointly with MUSLE")
    parser.add_argument("--num-train", type=int, default=1080)
    parser.add_argument("--epochs", type=int, default=12)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    train_videos, test_videos = SyntheticInteractions.splits(args.num_train, 180, seed=0,
                                                             classes=("move_closer", "move_apart", "jump"))
    encoder = RoIFeatures()                          # SmallCNN backbone; pass any torchvision trunk instead
    # The demo's training recipe (docs/models.md): auxiliary classifier, top-1 prototypes, likelihood ratio
    # against a background mixture, and the mixtures' cross-entropy for the last epochs.
    recipe = dict(MUSLE_TRAINING, ce_start=max(args.epochs - 2, 0))
    musle = MUSLE(train_videos.num_classes, encoder.out_channels, coord_channels=4 * 8, scales=(3, 4), **recipe)
    if not args.end_to_end:
        encoder.eval()
        train, test, model = graphs(train_videos, encoder), graphs(test_videos, encoder), musle
    else:
        train, test, model = graphs(train_videos), graphs(test_videos), EndToEnd(encoder, musle)
    fit(model, train, TrainConfig(epochs=args.epochs, batch_size=32, lr=1e-2, lr_step=recipe["ce_start"] or None))
    # Fit the mixtures on the whole training set with the trained (now fixed) CNN, then test.
    encoder.eval()
    train, test = graphs(train_videos, encoder), graphs(test_videos, encoder)
    musle.refit_(train)
    print(f"test accuracy: {evaluate(musle, test):.3f} (chance {1 / train_videos.num_classes:.3f})")
    musle.eval()
    with torch.no_grad():
        scores, best = musle(test[0], return_best=True)
    label = int(scores.argmax())
    print(f"video 0 ({test_videos[0].class_name}) -> {test_videos.classes[label]}: best sub-graph nodes "
          f"{best.nodes[0, label][:int(best.scale[0, label])].tolist()} (k = {int(best.scale[0, label])})")


if __name__ == "__main__":
    main()
