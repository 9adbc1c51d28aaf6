"""How invariant is a representation to viewpoint, illumination, occlusion and instance changes?

The measurement of Purushwalkam & Gupta 2020 (arXiv:2007.13916), after Goodfellow et al. 2009:

    measure.py   the measure: firing thresholds, local firing rates L, top-k scores; on features or
                 on image sets through the shared feature source (vidssl.features)
    sets.py      image sets per transformation, from object tracks (vidssl.tracking.Track)
    plot.py      the bar chart invariance.png
    command.py   ``vidssl eval invariance``: InvarianceConfig, run_invariance, format_table
    (measure.py also holds paper_scores, the authors' released measure: ``protocol=paper``)

The public names are re-exported here::

    from vidssl.evaluation.invariance import TRANSFORMATIONS, build_sets, measure_invariance, tracks_from_synth

    tracks = tracks_from_synth(Path("runs/synth"))
    sets = {name: build_sets(tracks, transformation=name, sets=64, images_per_set=8,
                             image_size=64, seed=0) for name in TRANSFORMATIONS}
    results = measure_invariance(encoder, sets, rate=0.01, topk=(10, 25))
"""

from vidssl.evaluation.invariance.command import (
    PAPER_CLASSES,
    PROTOCOLS,
    InvarianceConfig,
    format_table,
    paper_set_labels,
    run_invariance,
)
from vidssl.evaluation.invariance.measure import (
    InvarianceScores,
    firing_thresholds,
    invariance_scores,
    measure_invariance,
    paper_firing_percent,
    paper_scores,
    score_sets,
    sets_features,
    top_k_mean,
)
from vidssl.evaluation.invariance.plot import plot_comparison, plot_invariance
from vidssl.evaluation.invariance.sets import (
    ILLUMINATIONS,
    TRANSFORMATIONS,
    Illumination,
    TrackSource,
    build_labelled_sets,
    build_sets,
    crop_object,
    occlude,
    square_box,
    tracks_from_folder,
    tracks_from_synth,
)

__all__ = [
    "ILLUMINATIONS",
    "PAPER_CLASSES",
    "PROTOCOLS",
    "TRANSFORMATIONS",
    "Illumination",
    "InvarianceConfig",
    "InvarianceScores",
    "TrackSource",
    "build_labelled_sets",
    "build_sets",
    "crop_object",
    "firing_thresholds",
    "format_table",
    "invariance_scores",
    "measure_invariance",
    "occlude",
    "paper_firing_percent",
    "paper_scores",
    "paper_set_labels",
    "plot_comparison",
    "plot_invariance",
    "run_invariance",
    "score_sets",
    "sets_features",
    "square_box",
    "top_k_mean",
    "tracks_from_folder",
    "tracks_from_synth",
]
