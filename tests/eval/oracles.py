"""Independent oracles of videograph.eval, written from the protocols' text: loops, one item at a time.

The benchmark (benchmarks/localization.py) times them as the baselines."""
import numpy as np


def nms_loop(segments, scores, threshold):
    """Greedy NMS of one group in NumPy, the loop of SSN's ``temporal_nms`` (stable decreasing order)."""
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        inter = np.clip(np.minimum(segments[i, 1], segments[rest, 1]) - np.maximum(segments[i, 0], segments[rest, 0]),
                        0, None)
        union = (segments[i, 1] - segments[i, 0]) + (segments[rest, 1] - segments[rest, 0]) - inter
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = inter / union
        order = rest[~(iou > threshold)]
    return np.array(keep, dtype=np.int64)


def batched_nms_loop(segments, scores, threshold, groups):
    """:func:`nms_loop` over every group (a Python loop over groups), merged in decreasing score (ties: index)."""
    kept = []
    for g in np.unique(groups):
        members = np.flatnonzero(groups == g)
        kept.append(members[nms_loop(segments[members], scores[members], threshold)])
    kept = np.concatenate(kept) if kept else np.zeros(0, dtype=np.int64)
    return kept[np.lexsort((kept, -scores[kept]))]


def soft_nms_loop(segments, scores, sigma, iou_threshold, score_threshold, top_k):
    """Gaussian soft-NMS of one group, one selection at a time; returns [(index, decayed score)]."""
    current = scores.astype(np.float64).copy()
    alive = np.ones(len(scores), dtype=bool)
    rank = np.argsort(np.argsort(-scores, kind="stable"), kind="stable")      # position in decreasing order
    out = []
    while top_k is None or len(out) < top_k:
        alive &= current >= score_threshold
        if not alive.any():
            break
        candidates = np.flatnonzero(alive)
        best = current[candidates].max()
        tied = candidates[current[candidates] == best]
        i = tied[np.argmin(rank[tied])]
        out.append((int(i), float(current[i])))
        alive[i] = False
        for j in np.flatnonzero(alive):
            inter = max(0.0, min(segments[i, 1], segments[j, 1]) - max(segments[i, 0], segments[j, 0]))
            union = (segments[i, 1] - segments[i, 0]) + (segments[j, 1] - segments[j, 0]) - inter
            iou = inter / union if union > 0 else 0.0
            if iou > iou_threshold:
                current[j] *= np.exp(-iou * iou / sigma)
    return out


def _tiou(p, g):
    inter = max(0.0, min(p[1], g[1]) - max(p[0], g[0]))
    union = (g[1] - g[0]) + (p[1] - p[0]) - inter
    return inter / union if union > 0 else 0.0


def brute_map(ground_truth, predictions, thresholds, subset=None):
    """ActivityNet detection AP [T, C] by a loop over predictions, from the protocol's text (returns ap, classes)."""
    database = ground_truth["database"]
    videos = [v for v, info in database.items() if subset is None or info["subset"] == subset]
    instances = [(v, a["label"], a["segment"]) for v in videos for a in database[v]["annotations"]]
    classes = sorted({label for _, label, _ in instances})
    flat = [(v, p) for v, items in predictions["results"].items() for p in items]
    ap = np.zeros((len(thresholds), len(classes)))
    for c, name in enumerate(classes):
        truth = [(v, s) for v, label, s in instances if label == name]
        ranked = sorted((k for k, (_, p) in enumerate(flat) if p["label"] == name),
                        key=lambda k: (-flat[k][1]["score"], k))
        for t, threshold in enumerate(thresholds):
            taken = [False] * len(truth)
            hits = []
            for k in ranked:
                video, p = flat[k]
                best, chosen = -1.0, -1
                for g, (gv, gs) in enumerate(truth):
                    if gv == video and not taken[g]:
                        iou = _tiou(p["segment"], gs)
                        if iou >= threshold and iou > best:
                            best, chosen = iou, g
                if chosen >= 0:
                    taken[chosen] = True
                hits.append(chosen >= 0)
            precision, recall, tp = [], [], 0
            for k, hit in enumerate(hits):
                tp += hit
                precision.append(tp / (k + 1))
                recall.append(tp / len(truth))
            total, previous = 0.0, 0.0
            for k, hit in enumerate(hits):
                if hit:
                    total += (recall[k] - previous) * max(precision[k:])
                    previous = recall[k]
            ap[t, c] = total
    return ap, classes


def brute_recall(ground_truth, proposals, thresholds, max_avg_proposals=100, subset=None):
    """ActivityNet AR-AN by loops over videos and instances, from the protocol's text:
    returns (recall [T, 100], proposals_per_video [100])."""
    database = ground_truth["database"]
    videos = [v for v, info in database.items() if (subset is None or info["subset"] == subset)
              and info["annotations"]]
    num_all = sum(len(items) for items in proposals["results"].values())
    ratio = max_avg_proposals * len(videos) / num_all
    kept = {}
    for v in videos:
        items = proposals["results"].get(v, [])
        ranked = sorted(range(len(items)), key=lambda k: (-items[k]["score"], k))
        kept[v] = [items[k]["segment"] for k in ranked[:min(int(len(items) * ratio), len(items))]]
    total = sum(len(s) for s in kept.values())
    grid = np.arange(1, 101) / 100.0 * (max_avg_proposals * len(videos) / total)
    recall = np.zeros((len(thresholds), grid.size))
    num_instances = sum(len(database[v]["annotations"]) for v in videos)
    ious = {v: [[_tiou(p, a["segment"]) for p in kept[v]] for a in database[v]["annotations"]] for v in videos}
    for t, threshold in enumerate(thresholds):
        for j, fraction in enumerate(grid):
            recalled = 0
            for v in videos:
                shown = min(int(len(kept[v]) * fraction), len(kept[v]))
                for row in ious[v]:
                    recalled += any(iou >= threshold for iou in row[:shown])
            recall[t, j] = recalled / num_instances
    return recall, grid * total / len(videos)


def soft_nms_numpy(segments, scores, sigma, iou_threshold, score_threshold, top_k):
    """Gaussian soft-NMS of one group with NumPy vector steps (the usual Python implementation: one selection per
    iteration, the decay of every remaining segment at once); returns [(index, decayed score)]."""
    current = scores.astype(np.float64).copy()
    order = np.argsort(-scores, kind="stable")
    alive = np.ones(len(scores), dtype=bool)
    out = []
    while top_k is None or len(out) < top_k:
        alive &= current >= score_threshold
        if not alive.any():
            break
        candidates = order[alive[order]]
        i = candidates[np.argmax(current[candidates])]
        out.append((int(i), float(current[i])))
        alive[i] = False
        inter = np.clip(np.minimum(segments[i, 1], segments[:, 1]) - np.maximum(segments[i, 0], segments[:, 0]),
                        0, None)
        union = (segments[i, 1] - segments[i, 0]) + (segments[:, 1] - segments[:, 0]) - inter
        iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        decay = alive & (iou > iou_threshold)
        current[decay] *= np.exp(-iou[decay] ** 2 / sigma)
    return out
