"""How invariant is a representation to viewpoint, illumination, occlusion and instance changes?

The measurement of Purushwalkam & Gupta, "Demystifying Contrastive Self-Supervised Learning:
Invariances, Augmentations and Dataset Biases" (NeurIPS 2020, arXiv:2007.13916, Sec. 3), which
follows Goodfellow et al., "Measuring Invariances in Deep Networks" (NeurIPS 2009):

* A transformation is represented by *sets*: images of one instance under that transformation
  (one object tracked over time; one crop under several illuminations; ...).
* Neuron ``i`` (one channel of the pooled representation) *fires* on image ``x`` when
  ``f_i(x) > t_i``. The threshold ``t_i`` is set over all images ``U`` of the transformation's
  sets so that the neuron fires on a fixed small fraction of them: its global firing rate
  ``G(i) = |{x in U: f_i(x) > t_i}| / |U|`` is ``rate`` (1% by default; more where responses
  tie, as equal responses always fire together: see :func:`firing_thresholds`).
* The local firing rate is Goodfellow's: over the images ``z`` on which the neuron fires, the
  mean fraction of the *other* images of ``z``'s set on which it fires too. With ``c_ij`` the
  number of images of set ``j`` (of ``n_j``) on which neuron ``i`` fires::

      L(i) = sum_j c_ij (c_ij - 1) / (n_j - 1)  /  sum_j c_ij

  which, when all sets have the same size, is the fraction of ordered pairs ``(x, x')`` of one
  set, ``x != x'``, with the neuron firing on both among those where it fires on ``x``. Neurons
  that fire on no image (of a set of two or more) have no ``L`` and are not ranked.
* Reported per transformation: ``top{k}`` = the mean ``L(i)`` of the ``k`` neurons with the
  largest ``L(i)`` (k = 10 and 25 by default), and ``ratio_top{k}`` = the mean ``L(i) / G(i)`` of the
  ``k`` neurons with the largest ratio: the paper's (and Goodfellow's) invariance score.

Why thresholds per transformation rather than over the union of every transformation's images:
the score of one transformation then does not depend on which others are measured alongside, and
sets that hold near-copies of one crop (illumination, occlusion) cannot take all of a neuron's
top responses away from the sets of the other transformations.

Why ``L`` is the headline number and ``L / G`` the secondary one: ``L / G`` goes up to ``1 / G``
(100 at a 1% firing rate), so "perfectly invariant" has no fixed value and runs at different
``rate`` cannot be compared. ``L`` lies in [0, 1]: it is exactly 1 when every neuron that fires on
one image of a set fires on all of them (an encoder whose features ignore the transformation
scores 1), and about ``G`` for a neuron that fires independently of the instance. Since the
thresholds hold ``G(i)`` at ``rate`` for every neuron (up to ties), both rankings agree.

The measure works on features (:func:`score_sets`) or on image sets and an encoder
(:func:`measure_invariance`, features from :func:`vidssl.features.pooled_features`); the sets
themselves come from :mod:`vidssl.evaluation.invariance.sets`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from vidssl.features import pooled_features
from vidssl.models.encoders import Encoder


def firing_thresholds(features: torch.Tensor, *, rate: float = 0.01, tolerance: float = 1e-6) -> torch.Tensor:
    """Per-neuron thresholds ``t`` such that each neuron fires (``f > t``) on a fraction ``rate``.

    Args:
        features: (N, D) responses of D neurons to N images.
        rate: the global firing rate G: ``k = max(1, round(rate * N))`` images fire per neuron.
        tolerance: responses closer than ``tolerance`` times the neuron's range (max - min) count
            as equal.

    Returns:
        (D,) float64 thresholds, just below each neuron's k-th largest response: it fires on its
        ``k`` largest responses, and on every response equal to the k-th one (within the
        tolerance). Equal responses are never split, so a neuron that gives a whole set one value
        fires on all of it or on none of it (a strict quantile would cut the set at an arbitrary
        image, and an encoder that ignores the transformation would not score 1), and the slack
        absorbs floating-point differences between recomputations of one response (another batch
        composition or device). Responses at the neuron's minimum never fire, so a constant
        neuron fires nowhere and a mostly silent one (a ReLU unit at 0 on more than ``N - k``
        images) fires only where it is active. The realised rate is therefore ``rate`` up to ties.

    Raises:
        ValueError: ``rate`` outside (0, 1), or fewer than ``k + 1`` images.
    """
    if not 0 < rate < 1:
        raise ValueError(f"rate must be in (0, 1), got {rate}")
    n = features.shape[0]
    k = max(1, round(rate * n))
    if n <= k:
        raise ValueError(f"{n} images are too few for a firing rate of {rate}: need more than {k}")
    values = features.double()
    kth = torch.topk(values, k, dim=0).values[-1]  # (D,)
    low, high = values.min(dim=0).values, values.max(dim=0).values
    slack = tolerance * (high - low)
    return torch.maximum(kth - slack, low + slack)


@dataclass(frozen=True)
class InvarianceScores:
    """Per-neuron results of :func:`invariance_scores`; NaN marks neurons that never fired in a set."""

    local: torch.Tensor  # (D,) L(i) in [0, 1]
    ratio: torch.Tensor  # (D,) L(i) / G(i)


def invariance_scores(
    features_by_set: Sequence[torch.Tensor], thresholds: torch.Tensor, *, global_rate: float | torch.Tensor
) -> InvarianceScores:
    """Local firing rates ``L`` (and ``L / G``) of every neuron over sets of one transformation.

    Args:
        features_by_set: one (n_j, D) tensor per set (images of one instance under the
            transformation); sets of one image have no other image and are ignored.
        thresholds: (D,) from :func:`firing_thresholds`.
        global_rate: G, a float or (D,) per neuron (the realised rate over all images).

    Returns:
        ``local`` = sum_j c_j (c_j - 1) / (n_j - 1) / sum_j c_j, with c_j the number of images of
        set j on which the neuron fires: over the images that fire, the mean fraction of the other
        images of their set that fire too (Goodfellow et al. 2009). ``ratio`` = local / G. Both
        NaN for neurons that fire on no image of a set of two or more.
    """
    both = torch.zeros(thresholds.shape[0], dtype=torch.float64)
    fired = torch.zeros_like(both)
    for features in features_by_set:
        n = features.shape[0]
        if n < 2:
            continue
        count = (features > thresholds).sum(dim=0).double()  # (D,) c_j
        both += count * (count - 1) / (n - 1)
        fired += count
    local = torch.where(fired > 0, both / fired.clamp(min=1), torch.full_like(both, math.nan))
    return InvarianceScores(local=local, ratio=local / torch.as_tensor(global_rate, dtype=torch.float64))


def top_k_mean(scores: torch.Tensor, *, k: int) -> float:
    """Mean of the ``k`` largest finite entries of ``scores`` (D,); over all of them when fewer
    than ``k`` are finite, NaN when none is (NaN marks neurons that never fired)."""
    valid = scores[torch.isfinite(scores)]
    if valid.numel() == 0:
        return math.nan
    return float(torch.topk(valid, min(k, valid.numel())).values.mean())


def score_sets(
    features_by_transformation: Mapping[str, Sequence[torch.Tensor]],
    *,
    rate: float = 0.01,
    topk: Sequence[int] = (10, 25),
) -> dict[str, dict[str, float | int]]:
    """The whole measure from features. Per transformation: thresholds over the images of its
    sets, then ``top{k}`` (mean L), ``ratio_top{k}`` (mean L / G), ``sets``, ``images`` and
    ``neurons_scored`` (neurons that fired on some image, i.e. were ranked).

    Args:
        features_by_transformation: name -> list of (n_j, D) features, one per set.
    """
    results: dict[str, dict[str, float | int]] = {}
    for name, sets in features_by_transformation.items():
        everything = torch.cat(list(sets))
        if round(rate * everything.shape[0]) < 2:
            # A neuron that fires on one image has no partner firing: L would be 0 by construction.
            raise ValueError(
                f"{name}: {everything.shape[0]} images at rate={rate} let each neuron fire on fewer than 2;"
                f" measure at least {math.ceil(1.5 / rate)} images (more sets or data) or raise the rate"
            )
        thresholds = firing_thresholds(everything, rate=rate)
        # The realised G(i): equal to `rate` except for neurons whose top responses tie.
        global_rate = (everything > thresholds).double().mean(dim=0)
        scores = invariance_scores(sets, thresholds, global_rate=global_rate)
        row: dict[str, float | int] = {f"top{k}": top_k_mean(scores.local, k=k) for k in topk}
        row |= {f"ratio_top{k}": top_k_mean(scores.ratio, k=k) for k in topk}
        row |= {
            "sets": len(sets),
            "images": sum(f.shape[0] for f in sets),
            "neurons_scored": int(torch.isfinite(scores.local).sum()),
        }
        results[name] = row
    return results


def sets_features(
    encoder: Encoder,
    sets: Mapping[str, Sequence[torch.Tensor]],
    *,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    layer: str | None = None,
    gray: bool = False,
) -> dict[str, list[torch.Tensor]]:
    """The features of image sets, in one pass over all of them: transformation name -> list of
    (n_j, 3, H, W) uint8 sets becomes name -> list of (n_j, D) float32.

    Features come from the shared source, :func:`vidssl.features.pooled_features`: the encoder's
    pooled output, or with ``layer`` (e.g. ``layer3``) that module's output averaged over space.
    They are computed in float32 even on CUDA (no bf16 autocast): a neuron's firing threshold sits
    among its top 1% of responses, where bf16 rounding would merge responses into ties. ``gray``:
    the encoder reads Lab lightness (a colorization encoder; see
    :func:`vidssl.features.encoder_input`).

    Raises:
        ValueError: ``layer`` names no module of the encoder.
    """
    flat = [s for name in sets for s in sets[name]]
    features = pooled_features(encoder, torch.cat(flat), batch_size=batch_size, device=device, layer=layer,
                               autocast=False, gray=gray)
    parts = iter(torch.split(features, [s.shape[0] for s in flat]))
    return {name: [next(parts) for _ in sets[name]] for name in sets}


def measure_invariance(
    encoder: Encoder,
    sets: Mapping[str, Sequence[torch.Tensor]],
    *,
    rate: float = 0.01,
    topk: Sequence[int] = (10, 25),
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    layer: str | None = None,
    gray: bool = False,
) -> dict[str, dict[str, float | int]]:
    """:func:`score_sets` on the features of image sets (transformation name -> list of
    (n_j, 3, H, W) uint8 sets, e.g. from :func:`build_sets`)."""
    features = sets_features(encoder, sets, batch_size=batch_size, device=device, layer=layer, gray=gray)
    return score_sets(features, rate=rate, topk=topk)


# --------------------------------------------------------------------------------------------------
# protocol=paper: the measurement of the authors' released code
# --------------------------------------------------------------------------------------------------

PAPER_MIN_SET = 3
"""The released code scores only sets of at least this many images."""


def paper_firing_percent(num_classes: int) -> float:
    """The released code's global firing rate in percent: ``max(100 / C, 5)`` for ``C`` classes.

    Computed as it does, ``100 - min((1 - 1 / C) * 100, 95)``, so the float is bit-identical to
    the one that scales its reported number.
    """
    return 100 - min((1.0 - 1.0 / num_classes) * 100, 95)


def paper_scores(
    features_by_set: Sequence[torch.Tensor],
    classes: Sequence[str | int],
    *,
    topk: Sequence[int] = (10, 25),
) -> dict[str, float | int]:
    """One transformation scored exactly as the authors' released code does
    (``senthilps8/demystifyssl``, ``measure_invariances.py``; re-implemented, not copied).

    Args:
        features_by_set: one (n_j, D) tensor per set (one instance under the transformation).
        classes: one label per set; ``C`` = the number of distinct labels, counted over every set
            (also those too small to score).
        topk: numbers of neurons averaged; each must be at most D.

    The steps, over the N images of all sets:

    1. Firing rate ``p = max(1/C, 5%)`` (:func:`paper_firing_percent`). With ``P = 100 - 100 p``
       and ``i = floor(N * P / 100)``, the top threshold is the i-th smallest response (0-based)
       and the bottom threshold the i-th largest.
    2. ``G`` = the fraction of images with response ``>=`` the top threshold (top direction only).
    3. For each set of at least :data:`PAPER_MIN_SET` images: ``c`` = the larger of the number of
       its images strictly above the top threshold and the number strictly below the bottom one
       (a neuron counts in whichever direction fires more). Where ``c > 0`` the set adds ``c / n``
       to its class's sum and 1 to its class's count.
    4. Per class, ``L = sum / (count + 1e-20)`` (0 for neurons that fired in none of its sets),
       score ``L / G``, sorted; the class's value for k is the mean of its k largest scores.
    5. Reported: the mean over classes, times ``100 p`` (so about 100 L, on a 0-100 scale).

    Returns:
        ``top{k}`` per k, ``firing_rate`` (p as a fraction), ``classes`` (C), ``sets``,
        ``sets_scored`` (sets of 3 images or more), ``images`` (N), ``neurons_scored`` (neurons
        that fired in some scored set).

    Raises:
        ValueError: mismatched lengths, or a k above the number of neurons (the released code
            would index past its sorted scores).
    """
    if len(classes) != len(features_by_set):
        raise ValueError(f"{len(classes)} class labels for {len(features_by_set)} sets")
    everything = torch.cat(list(features_by_set)).double()  # (N, D)
    n_images, n_neurons = everything.shape
    if max(topk) > n_neurons:
        raise ValueError(f"top-{max(topk)} neurons asked of features with {n_neurons} neurons")
    labels = sorted({str(c) for c in classes})
    percent = paper_firing_percent(len(labels))
    index = int((n_images * (100 - percent)) // 100)
    ascending = torch.sort(everything, dim=0).values
    top, bottom = ascending[index], ascending[n_images - 1 - index]  # (D,) each
    global_rate = (everything >= top).double().mean(dim=0)  # (D,), >= 1/N: never zero
    sums = torch.zeros(len(labels), n_neurons, dtype=torch.float64)
    counts = torch.zeros_like(sums)
    scored = 0
    for features, label in zip(features_by_set, classes, strict=True):
        n = features.shape[0]
        if n < PAPER_MIN_SET:
            continue
        scored += 1
        f = features.double()
        c = torch.maximum((f > top).sum(dim=0), (f < bottom).sum(dim=0)).double()  # (D,)
        row = labels.index(str(label))
        sums[row] += torch.where(c > 0, c / n, 0.0)
        counts[row] += (c > 0).double()
    local = sums / (counts + 1e-20)  # (C, D)
    ranked = torch.sort(local / global_rate, dim=1, descending=True).values
    row: dict[str, float | int] = {
        f"top{k}": float(ranked[:, :k].mean(dim=1).mean()) * percent for k in topk
    }
    return row | {
        "firing_rate": percent / 100,
        "classes": len(labels),
        "sets": len(features_by_set),
        "sets_scored": scored,
        "images": n_images,
        "neurons_scored": int((counts > 0).any(dim=0).sum()),
    }
