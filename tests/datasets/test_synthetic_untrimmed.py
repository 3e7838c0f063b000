import pytest
import torch
from scipy import stats

from videograph.data import Proposals
from videograph.datasets import SyntheticUntrimmed, UntrimmedVideo


def brute_tiou(a, b):
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    return inter / ((a[1] - a[0]) + (b[1] - b[0]) - inter)


def snippet_mean(features, start, end):
    length = features.size(0)
    rows = [k for k in range(length) if k + 1 > start and k < end] or [min(int(start), length - 1)]
    return features[rows].mean(0)


@pytest.fixture(scope="module")
def untrimmed():
    return SyntheticUntrimmed(8, seed=2)


def test_ground_truth_segments_are_disjoint_and_labelled(untrimmed):
    for video in untrimmed:
        segments, labels = video.ground_truth
        assert isinstance(video, UntrimmedVideo)
        assert video.features.shape == (128, 32)
        assert bool((segments[:, 0] >= 0).all() and (segments[:, 1] <= video.duration).all())
        assert bool((segments[:, 1] > segments[:, 0]).all())
        assert bool((segments[1:, 0] >= segments[:-1, 1]).all())
        lengths = segments[:, 1] - segments[:, 0]
        assert bool((lengths >= 8 - 1e-4).all() and (lengths <= 32 + 1e-4).all())
        assert bool((labels >= 1).all() and (labels <= 5).all())
        # Every action's class belongs to the video's scene.
        assert bool(((labels - 1) % untrimmed.num_scenes == video.scene).all())


@pytest.mark.parametrize("with_ground_truth", [False, True])
def test_proposal_labels_agree_with_brute_force_tiou(untrimmed, with_ground_truth):
    for video in untrimmed:
        proposals = video.proposals(with_ground_truth=with_ground_truth)
        assert isinstance(proposals, Proposals) and proposals.duration == video.duration
        expected_segments = video.proposal_segments if not with_ground_truth else \
            torch.cat([video.proposal_segments, video.segments])
        assert torch.equal(proposals.segments, expected_segments)
        gt = video.segments.tolist()
        for segment, label in zip(proposals.segments.tolist(), proposals.labels.tolist()):
            overlaps = [brute_tiou(segment, g) for g in gt]
            best = max(range(len(gt)), key=lambda g: overlaps[g])
            expected = int(video.labels[best]) if overlaps[best] >= 0.5 else 0
            assert label == expected
        assert int((proposals.labels > 0).sum()) > 0 and int((proposals.labels == 0).sum()) > 0


@pytest.mark.parametrize("with_ground_truth", [False, True])
def test_proposal_features_are_snippet_means_plus_their_noise(untrimmed, with_ground_truth):
    video = untrimmed[0]
    proposals = video.proposals(with_ground_truth=with_ground_truth)
    noise = video.proposal_noise if not with_ground_truth else \
        torch.cat([video.proposal_noise, video.ground_truth_noise])
    length = video.features.size(0)
    for n, (start, end) in enumerate(proposals.segments.tolist()):
        torch.testing.assert_close(proposals.features[n], snippet_mean(video.features, start, end) + noise[n, 0])
        half = (end - start) / 2
        lo, hi = max(0.0, start - half), min(float(length), end + half)
        torch.testing.assert_close(proposals.extended_features[n],
                                   snippet_mean(video.features, lo, hi) + noise[n, 1])


def test_noise_free_features_are_snippet_means():
    video = SyntheticUntrimmed(1, proposal_noise=0.0, seed=5)[0]
    assert video.proposal_noise is None
    proposals = video.proposals()
    for n, (start, end) in enumerate(proposals.segments.tolist()):
        torch.testing.assert_close(proposals.features[n], snippet_mean(video.features, start, end))


def test_proposal_noise_has_its_std():
    dataset = SyntheticUntrimmed(10, proposal_noise=0.75, seed=1)
    noise = torch.cat([video.proposal_noise.reshape(-1) for video in dataset])
    assert abs(float(noise.std()) - 0.75) < 0.02 and abs(float(noise.mean())) < 0.02


def test_proposal_scores_follow_overlap():
    dataset = SyntheticUntrimmed(20, seed=3)
    best, scores = [], []
    for video in dataset:
        best.append(video.proposal_iou().max(dim=1).values)
        scores.append(video.proposal_scores)
    best, scores = torch.cat(best), torch.cat(scores)
    assert stats.spearmanr(best.numpy(), scores.numpy()).statistic > 0.6
    assert float(scores[best < 0.1].max()) > 0.5          # there are confident false positives


def test_actions_tell_their_group_and_only_the_background_tells_the_scene():
    # Noise-free proposal features: the ground truth's own snippets tell the group (nearest group prototype),
    # carry no scene signal (the projection on the scene prototypes is noise), while the background snippets tell
    # the scene.
    dataset = SyntheticUntrimmed(30, num_classes=6, num_scenes=2, proposal_noise=0.0, seed=4)
    assert torch.equal(dataset.prototypes[0], dataset.prototypes[1])          # classes 1, 2: one group
    assert not torch.equal(dataset.prototypes[0], dataset.prototypes[2])
    groups = dataset.prototypes[:-2:2]                                        # one row per group
    right_group, own_scene, background_scene = [], [], []
    for video in dataset:
        gt = video.proposals(with_ground_truth=True)
        own = gt.features[-video.segments.size(0):]
        right_group.append((own @ groups.T).argmax(1) == (video.labels - 1) // 2)
        own_scene.append((own @ dataset.scene_prototypes.T).argmax(1) == video.scene)
        time = torch.arange(video.features.size(0)) + 0.5
        inside = ((time[:, None] >= video.segments[:, 0]) & (time[:, None] < video.segments[:, 1])).any(1)
        background = video.features[~inside].mean(0)
        background_scene.append(int((background @ dataset.scene_prototypes.T).argmax()) == video.scene)
    assert float(torch.cat(right_group).float().mean()) > 0.95
    assert float(torch.cat(own_scene).float().mean()) < 0.75                   # near chance (0.5)
    assert sum(background_scene) == len(background_scene)


def test_one_scene_is_the_original_task():
    dataset = SyntheticUntrimmed(4, num_scenes=1, seed=2)
    assert dataset.prototypes.shape == (7, 32)
    assert len({tuple(row.tolist()) for row in dataset.prototypes}) == 7      # one prototype per class
    assert all(video.scene == 0 for video in dataset)


def test_untrimmed_is_deterministic(untrimmed):
    again = SyntheticUntrimmed(8, seed=2)
    other = SyntheticUntrimmed(8, seed=3)
    for i in (0, 7):
        assert torch.equal(untrimmed[i].features, again[i].features)
        assert torch.equal(untrimmed[i].proposal_segments, again[i].proposal_segments)
        assert torch.equal(untrimmed[i].proposal_noise, again[i].proposal_noise)
        assert not torch.equal(untrimmed[i].features, other[i].features)
    assert torch.equal(SyntheticUntrimmed(2, seed=9).prototypes, untrimmed.prototypes)    # shared class signal
    train, test = SyntheticUntrimmed.splits(2, 2, seed=2)
    assert not torch.equal(train[0].features, test[0].features)


@pytest.mark.parametrize("kwargs,name", [
    (dict(num_videos=0), "num_videos"),
    (dict(num_videos=2, num_classes=0), "num_classes"),
    (dict(num_videos=2, duration=40), "duration"),
    (dict(num_videos=2, num_proposals=0), "num_proposals"),
    (dict(num_videos=2, action_length=(10.0, 5.0)), "action_length"),
    (dict(num_videos=2, num_actions=(0, 2)), "num_actions"),
    (dict(num_videos=2, split="all"), "split"),
    (dict(num_videos=2, seed=-3), "seed"),
    (dict(num_videos=2, num_scenes=6), "num_scenes"),
    (dict(num_videos=2, scene_signal=-1.0), "scene_signal"),
    (dict(num_videos=2, proposal_noise=-0.1), "proposal_noise"),
    (dict(num_videos=2, common_signal=float("nan")), "common_signal"),
])
def test_untrimmed_bad_arguments_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        SyntheticUntrimmed(**kwargs)
