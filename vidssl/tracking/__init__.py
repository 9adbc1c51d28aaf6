"""Object tracks from video: an off-the-shelf detector plus an ultralytics tracker (``vidssl tracks``).

    from vidssl.tracking import read_tracks
    tracks = read_tracks("runs/tracks")   # {video rel path: [Track, ...]}

Modules: :mod:`~vidssl.tracking.offline` (importing ultralytics without network),
:mod:`~vidssl.tracking.detectors` (YOLO and ground-truth adapters), :mod:`~vidssl.tracking.trackers`
(tracker recipes), :mod:`~vidssl.tracking.run` (the folder run). The output format, its writer and
its reader live in :mod:`vidssl.data.tracks` (training reads it too); the reader is re-exported
here. Importing this package imports neither ultralytics nor torch.
"""

from vidssl.data.tracks import Track, read_manifest, read_tracks, read_tracks_csv

__all__ = ["Track", "read_manifest", "read_tracks", "read_tracks_csv"]
