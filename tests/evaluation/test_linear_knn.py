"""Linear and kNN evaluation: the solvers against references, kNN by hand, the feature cache, the
synthetic image set, and both subcommands end to end on a tiny image set."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from vidssl.cli import main
from vidssl.data.synth_images import make_image_folder
from vidssl.evaluation.image_features import (
    align_labels,
    balanced_accuracy,
    extract_features,
    majority_baseline,
    per_class_recall,
)
from vidssl.evaluation.knn import knn_accuracy, knn_hits, knn_scores
from vidssl.evaluation.linear import accuracy_topk, fit_logistic_lbfgs, fit_logistic_sgd, holdout_split
from vidssl.features import resolve_encoder

TINY = dict(num_videos=4, num_frames=12, height=96, width=128, size=32, every=3, min_area=100)


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """These problems are tiny: waking a second intra-op thread costs more than it saves (measured
    10 ms against 0.2 ms per SGD step on a 2-core VM), so run them single-threaded."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def image_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic image set: 3 train videos, 1 val video, 32 x 32 crops (a few dozen images)."""
    return make_image_folder(tmp_path_factory.mktemp("images"), progress=False, **TINY)


def _blobs(n: int = 240, d: int = 12, k: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Overlapping Gaussian classes in float64, features on very different scales and offset."""
    g = torch.Generator().manual_seed(seed)
    centres = 1.5 * torch.randn(k, d, generator=g, dtype=torch.float64)
    y = torch.randint(k, (n,), generator=g)
    x = centres[y] + 2.0 * torch.randn(n, d, generator=g, dtype=torch.float64)
    return x * torch.logspace(-1, 1, d, dtype=torch.float64) + 3.0, y


@pytest.mark.parametrize("weight_decay", [1e-3, 1e-1])
def test_lbfgs_matches_scikit_learn(weight_decay: float) -> None:
    sklearn = pytest.importorskip("sklearn")  # a test-only dependency
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    del sklearn
    x, y = _blobs()
    n = len(y)
    weight, bias = fit_logistic_lbfgs(x, y, weight_decay=weight_decay, device="cpu")
    ours = torch.softmax(x @ weight.T + bias, dim=1).numpy()
    # Ours: mean_i CE_i + lambda / 2 ||W||^2. scikit-learn: C * sum_i CE_i + 1 / 2 ||W||^2.
    # Dividing ours by lambda gives 1 / (lambda n) * sum_i CE_i + 1 / 2 ||W||^2: C = 1 / (lambda n).
    # Both leave the bias unpenalised and fit on standardized features (population std).
    scaled = StandardScaler().fit_transform(x.numpy())
    reference = LogisticRegression(C=1 / (weight_decay * n), tol=1e-12, max_iter=10_000).fit(scaled, y.numpy())
    theirs = reference.predict_proba(scaled)
    assert (ours.argmax(1) == theirs.argmax(1)).mean() >= 0.98
    assert abs(ours - theirs).max() < 1e-4
    assert 0.5 < (ours.argmax(1) == y.numpy()).mean() < 1.0  # a problem with errors, not a trivial one

    weight32, bias32 = fit_logistic_lbfgs(x.float(), y, weight_decay=weight_decay, device="cpu")
    ours32 = torch.softmax(x.float() @ weight32.T + bias32, dim=1).numpy()
    assert abs(ours32 - theirs).max() < 2e-3


def test_lbfgs_reaches_the_optimum() -> None:
    """Without scikit-learn: the objective's gradient vanishes at the returned solution."""
    x, y = _blobs(seed=1)
    weight_decay = 1e-2
    weight, bias = fit_logistic_lbfgs(x, y, weight_decay=weight_decay, device="cpu")
    mean, std = x.mean(0), x.std(0, correction=0)
    # Undo the folding: the classifier on standardized features z = (x - mean) / std.
    w = (weight * std).requires_grad_()
    b = (bias + weight @ mean).requires_grad_()
    z = (x - mean) / std
    loss = F.cross_entropy(z @ w.T + b, y) + 0.5 * weight_decay * w.pow(2).sum()
    loss.backward()
    assert w.grad.abs().max() < 1e-6 and b.grad.abs().max() < 1e-6


def test_sgd_approaches_the_lbfgs_solution() -> None:
    x, y = _blobs(seed=2)
    x = x.float()
    weight, bias = fit_logistic_lbfgs(x, y, weight_decay=1e-2, device="cpu")
    # Two identical "views": SGD on the same objective, so it should land near the same classifier.
    sgd_weight, sgd_bias = fit_logistic_sgd(
        torch.stack([x, x]), y, weight_decay=1e-2, epochs=60, lr=0.1, batch_size=32, device="cpu"
    )
    exact = torch.softmax(x @ weight.T + bias, dim=1)
    approx = torch.softmax(x @ sgd_weight.T + sgd_bias, dim=1)
    assert (exact.argmax(1) == approx.argmax(1)).float().mean() >= 0.95
    assert (exact - approx).abs().max() < 0.1


def test_accuracy_topk_by_hand() -> None:
    logits = torch.tensor(
        [
            [0.9, 0.5, 0.1, 0.0],  # true 0: rank 1
            [0.1, 0.9, 0.5, 0.0],  # true 2: rank 2
            [0.1, 0.2, 0.3, 0.9],  # true 0: rank 4
            [0.5, 0.1, 0.9, 0.2],  # true 2: rank 1
        ]
    )
    y = torch.tensor([0, 2, 0, 2])
    assert accuracy_topk(logits, y, ks=(1, 2, 3, 4, 5)) == {1: 0.5, 2: 0.75, 3: 0.75, 4: 1.0, 5: 1.0}


def test_holdout_keeps_the_tail_of_every_class() -> None:
    labels = torch.tensor([0, 0, 0, 0, 0, 1, 1, 2])
    fit, held = holdout_split(labels, 0.2)
    assert held.tolist() == [4, 6]  # ceil(0.2 * 5) = 1 of class 0, 1 of class 1, none of a singleton
    assert fit.tolist() == [0, 1, 2, 3, 5, 7]


def test_align_labels_by_class_name() -> None:
    assert align_labels(torch.tensor([0, 1, 1]), ["disc", "star"], ["cross", "disc", "star"]).tolist() == [1, 2, 2]
    with pytest.raises(ValueError, match="square"):
        align_labels(torch.tensor([0]), ["square"], ["disc"])


def _unit(degrees: float, norm: float = 1.0) -> list[float]:
    return [norm * math.cos(math.radians(degrees)), norm * math.sin(math.radians(degrees))]


def test_knn_weighted_vote_by_hand() -> None:
    # Test point at 0 degrees; neighbours at 15 (class 0), 16 and 17 (class 1), 90 (class 0).
    # Norms differ on purpose: only the angle (cosine) may matter.
    train = torch.tensor([_unit(15, 3.0), _unit(16, 0.5), _unit(17, 2.0), _unit(90, 1.0)])
    labels = torch.tensor([0, 1, 1, 0])
    test = torch.tensor([_unit(0, 7.0)])
    t = 0.07
    vote = [math.exp(math.cos(math.radians(a)) / t) for a in (15, 16, 17, 90)]
    # k=1: only the 15-degree neighbour votes.
    k1 = knn_scores(train, labels, test, k=1, temperature=t, num_classes=2)
    torch.testing.assert_close(k1, torch.tensor([[vote[0], 0.0]]), rtol=1e-5, atol=0)
    # k=3: exp(cos 15 / T) = 9.8e5 for class 0 against 9.2e5 + 8.6e5 for class 1.
    k3 = knn_scores(train, labels, test, k=3, temperature=t, num_classes=2)
    torch.testing.assert_close(k3, torch.tensor([[vote[0], vote[1] + vote[2]]]), rtol=1e-5, atol=0)
    assert knn_scores(train, labels, test, k=1, temperature=t, num_classes=2).argmax(1).tolist() == [0]
    assert knn_scores(train, labels, test, k=3, temperature=t, num_classes=2).argmax(1).tolist() == [1]
    # k above the train size counts as all of it; the 90-degree vote is exp(0) = 1.
    k9 = knn_scores(train, labels, test, k=9, temperature=t, num_classes=2)
    torch.testing.assert_close(k9, torch.tensor([[vote[0] + 1.0, vote[1] + vote[2]]]), rtol=1e-5, atol=0)


def test_knn_top_k_counts_only_classes_with_votes() -> None:
    """Issue 18: with every neighbour of one class, the other classes tie at zero votes; ranking
    them by tie order gave top-5 0.5 on these two rows (accuracy_topk), as if a class nobody
    voted for were a hit."""
    train = torch.tensor([_unit(a) for a in (0, 5, 10, 200, 210)])
    labels = torch.tensor([0, 0, 0, 1, 2])
    test = torch.tensor([_unit(2), _unit(3)])
    y = torch.tensor([0, 3])  # the second row's class has no train image near (or at all)
    votes = knn_scores(train, labels, test, k=3, num_classes=5)  # top-5 = every class
    assert (votes[:, 1:] == 0).all()  # all three neighbours are class 0
    assert accuracy_topk(votes, y, ks=(5,))[5] == 1.0  # the old count: class 3 "in the top 5" by tie order
    assert knn_accuracy(votes, y, ks=(1, 5)) == {1: 0.5, 5: 0.5}
    # Among voted classes the rank is by votes: true class second of two voted -> top-1 miss, top-2 hit.
    votes = torch.tensor([[0.0, 2.0, 3.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
    assert knn_accuracy(votes, torch.tensor([1, 0]), ks=(1, 2, 5)) == {1: 0.0, 2: 1.0, 5: 1.0}  # tie: rank 2


def test_balanced_accuracy_and_majority_baseline_by_hand() -> None:
    """An unbalanced val set (6 a, 2 b, 2 c) where the classifier names a well and the others badly:
    top-1 0.7 but mean per-class accuracy 0.5; always naming train's largest class (b, tied with c,
    both 2 in val: the first) scores 0.2 top-1 and 1/3 balanced, while val's largest class (a)
    holds 0.6."""
    classes = ["a", "b", "c"]
    y = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 2, 2])
    votes = torch.tensor([
        [5.0, 1.0, 0.0], [4.0, 0.0, 0.0], [3.0, 2.0, 1.0], [9.0, 0.0, 0.0], [2.0, 1.0, 1.0], [1.0, 0.0, 0.5],  # a: 6/6
        [1.0, 3.0, 0.0],  # b: right
        [2.0, 2.0, 0.0],  # b: tied with a, a miss (knn_accuracy's rule)
        [4.0, 0.0, 1.0],  # c: named a
        [3.0, 1.0, 0.0],  # c: no vote at all
    ])
    hits = knn_hits(votes, y)
    assert hits.tolist() == [True] * 7 + [False] * 3
    assert knn_accuracy(votes, y, ks=(1,))[1] == pytest.approx(0.7)
    assert balanced_accuracy(hits, y) == pytest.approx((1 + 0.5 + 0) / 3)
    assert per_class_recall(hits, y, classes) == {"a": {"val": 6, "top1": 1.0}, "b": {"val": 2, "top1": 0.5},
                                                  "c": {"val": 2, "top1": 0.0}}
    # linear: the argmax of logits, the same figures
    logits = torch.tensor([[2.0, 0.0, 0.0]] * 6 + [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    hits = logits.argmax(1) == y
    assert accuracy_topk(logits, y, ks=(1,))[1] == pytest.approx(0.8)
    assert balanced_accuracy(hits, y) == pytest.approx((1 + 0.5 + 0.5) / 3)
    # a class of train that val lacks counts in no mean: recall is over the val classes
    assert balanced_accuracy(torch.tensor([True, False, True]), torch.tensor([0, 0, 2])) == pytest.approx(0.75)

    floor = majority_baseline(torch.tensor([0, 1, 1, 1, 2, 2, 2]), y, classes)
    assert floor == {"majority": pytest.approx(0.2), "majority_class": "b", "majority_balanced": pytest.approx(1 / 3),
                     "largest_val_class": "a", "largest_val_share": pytest.approx(0.6)}
    # classes tied in train (b, c: 2 each): the one val holds most of (c), the higher floor
    tie = majority_baseline(torch.tensor([0, 1, 1, 2, 2]), torch.tensor([0, 1, 2, 2, 2]), classes)
    assert tie["majority_class"] == "c" and tie["majority"] == pytest.approx(0.6)
    # train's largest class absent from val: a constant guess of it is never right
    assert majority_baseline(torch.tensor([2, 2, 0]), torch.tensor([0, 1]), classes)["majority_balanced"] == 0.0


def test_knn_chunking_changes_nothing() -> None:
    g = torch.Generator().manual_seed(0)
    train, test = torch.randn(50, 8, generator=g), torch.randn(13, 8, generator=g)
    labels = torch.randint(3, (50,), generator=g)
    whole = knn_scores(train, labels, test, k=7, num_classes=3)
    torch.testing.assert_close(knn_scores(train, labels, test, k=7, num_classes=3, chunk_size=4), whole)


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*.png"))
    }


def test_synthetic_image_folder_is_deterministic_and_split_by_video(image_root: Path, tmp_path: Path) -> None:
    again = make_image_folder(tmp_path / "again", progress=False, **TINY)
    files = _tree_digest(image_root)
    assert files and files == _tree_digest(again)
    meta = json.loads((image_root / "meta.json").read_text())
    video = {split: {Path(f).name.split("_f")[0] for f in files if f.startswith(split)} for split in ("train", "val")}
    assert video["train"] == set(meta["videos"]["train"]) and video["val"] == set(meta["videos"]["val"])
    assert len(video["train"]) == 3 and len(video["val"]) == 1 and not video["train"] & video["val"]
    train_classes = {p.name for p in (image_root / "train").iterdir()}
    assert {p.name for p in (image_root / "val").iterdir()} <= train_classes

    stamp = (again / "meta.json").stat().st_mtime_ns
    make_image_folder(again, progress=False, **TINY)  # same arguments: nothing is rewritten
    assert (again / "meta.json").stat().st_mtime_ns == stamp
    other = make_image_folder(again, progress=False, **{**TINY, "seed": 1})  # new arguments: rebuilt
    assert _tree_digest(other) != files


def test_synthetic_image_folder_leaves_foreign_folders_alone(tmp_path: Path) -> None:
    (tmp_path / "train" / "cat").mkdir(parents=True)
    with pytest.raises(FileExistsError):
        make_image_folder(tmp_path, progress=False, **TINY)


def test_feature_cache_skips_the_encoder(image_root: Path, tmp_path: Path) -> None:
    encoder = resolve_encoder("random:resnet18")
    calls = []
    encoder.register_forward_pre_hook(lambda module, args: calls.append(args[0].shape[0]))
    kwargs = dict(image_size=32, batch_size=16, device="cpu", cache_dir=tmp_path, workers=0, progress=False)
    features, labels, classes = extract_features(encoder, image_root / "train", **kwargs)
    num_images = sum(1 for _ in (image_root / "train").rglob("*.png"))
    assert sum(calls) == num_images and features.shape == (num_images, 512) and features.dtype == torch.float32
    assert labels.dtype == torch.int64 and classes == sorted(p.name for p in (image_root / "train").iterdir())

    calls.clear()
    cached = extract_features(encoder, image_root / "train", **kwargs)
    assert not calls
    torch.testing.assert_close(cached[0], features, rtol=0, atol=0)
    assert cached[1].tolist() == labels.tolist() and cached[2] == classes

    mid, _, _ = extract_features(encoder, image_root / "train", layer="layer3", **kwargs)  # another key
    assert calls and mid.shape == (num_images, 256)
    with pytest.raises(ValueError, match="layer3"):
        extract_features(encoder, image_root / "train", layer="layer_3", **kwargs)

    calls.clear()  # the gray input (a colorization encoder's) is another key and other features
    gray, _, _ = extract_features(encoder, image_root / "train", gray=True, **kwargs)
    assert calls and (gray - features).abs().max() > 1e-3
    calls.clear()
    torch.testing.assert_close(extract_features(encoder, image_root / "train", gray=True, **kwargs)[0], gray,
                               rtol=0, atol=0)
    assert not calls


def test_augmented_views_are_seeded(image_root: Path) -> None:
    encoder = resolve_encoder("random:resnet18")
    kwargs = dict(image_size=32, device="cpu", cache_dir=None, workers=0, progress=False)
    first = extract_features(encoder, image_root / "val", view=0, **kwargs)[0]
    assert torch.equal(first, extract_features(encoder, image_root / "val", view=0, **kwargs)[0])
    assert not torch.equal(first, extract_features(encoder, image_root / "val", view=1, **kwargs)[0])


@pytest.mark.parametrize("solver", ["lbfgs", "sgd"])
def test_eval_linear_end_to_end(image_root: Path, tmp_path: Path, solver: str, cache_dir: Path) -> None:
    out = tmp_path / "linear"
    argv = [
        "eval", "linear", "encoder=random:resnet18", f"data={image_root}", f"out={out}", f"solver={solver}",
        "image_size=32", "workers=0", "views=2", "epochs=5",
    ]
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert 0 <= results["top1"] <= results["top5"] <= 1
    assert results["weight_decay"] in results["config"]["weight_decays"]
    assert len(results["sweep"]) == len(results["config"]["weight_decays"])
    assert results["feature_dim"] == 512 and results["solver"] == solver
    _check_balanced(results, image_root)
    assert any((cache_dir / "features").glob("*.pt"))  # $VIDSSL_CACHE_DIR/features by default


def test_eval_knn_end_to_end(image_root: Path, tmp_path: Path, cache_dir: Path) -> None:
    out = tmp_path / "knn"
    argv = ["eval", "knn", str(image_root), "encoder=random:resnet18", f"out={out}", "image_size=32", "workers=0"]
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["by_k"]) == {"20", "200"}
    assert results["by_k"]["200"]["k"] == min(200, results["num_train"])
    assert results["top1"] == results["by_k"]["20"]["top1"]
    assert all(0 <= r["top1"] <= r["top5"] <= 1 for r in results["by_k"].values())
    assert results["top1_balanced"] == results["by_k"]["20"]["top1_balanced"]
    _check_balanced(results, image_root)


def _check_balanced(results: dict, root: Path) -> None:
    """The per-class figures add up to top-1 and balanced; the majority floor matches the folder."""
    per = results["per_class"]
    counts = {s: {c.name: len(list(c.iterdir())) for c in (root / s).iterdir()} for s in ("train", "val")}
    assert {c: v["val"] for c, v in per.items()} == counts["val"] and sum(counts["val"].values()) == results["num_val"]
    assert results["top1"] == pytest.approx(sum(v["val"] * v["top1"] for v in per.values()) / results["num_val"])
    assert results["top1_balanced"] == pytest.approx(sum(v["top1"] for v in per.values()) / len(per))
    most = max(counts["train"].values())  # ties: the one val holds most of, then the first name
    largest = max(sorted(c for c, n in counts["train"].items() if n == most), key=lambda c: counts["val"].get(c, 0))
    assert results["majority_class"] == largest
    assert results["majority"] == pytest.approx(counts["val"].get(largest, 0) / results["num_val"])
    assert results["largest_val_share"] == pytest.approx(max(counts["val"].values()) / results["num_val"])
