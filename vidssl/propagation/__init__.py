"""Label propagation through videos with an encoder's dense features, and its evaluations.

    affinity.py   one propagation step: tiled local affinity (and the full-affinity reference)
    features.py   what is compared: encoder feature maps, or Lab pixels
    propagate.py  the streaming loop with a bounded context; masks and keypoints through a video
    masks.py      palette PNGs <-> soft labels on the feature grid
    keypoints.py  keypoint files (JSON, JHMDB .mat), Gaussian heatmaps, peaks
    metrics.py    DAVIS J and F, PCK
    davis.py      ``vidssl eval davis``
    jhmdb.py      ``vidssl eval jhmdb``
    overlay.py    masks and skeletons drawn over frames, for people to look at
"""
