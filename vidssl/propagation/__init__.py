"""Label propagation through videos with an encoder's dense features (``vidssl propagate``).

    affinity.py   one propagation step: tiled local affinity (and the full-affinity reference)
    propagate.py  the streaming loop with a bounded context; masks and keypoints through a video
    masks.py      palette PNGs <-> soft labels on the feature grid
    keypoints.py  keypoint files (JSON, JHMDB .mat), Gaussian heatmaps, peaks
    overlay.py    masks and skeletons drawn over frames, for people to look at

What is compared (encoder feature maps, or Lab pixels) comes from :mod:`vidssl.features`, the
feature source shared with the evaluations. Scoring propagation (``vidssl eval davis | jhmdb``,
J and F, PCK) lives in :mod:`vidssl.evaluation`, which imports this package, never the reverse.
"""
