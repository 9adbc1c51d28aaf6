"""vidssl: self-supervised learning from video.

Learn image encoders from folders of unlabeled videos (frame-temporal invariance, object-track
positives, CPC, colorization), propagate masks and keypoints with them, and export them for image
tasks. The command line is ``vidssl``; see README.md.
"""

__version__ = "0.1.0"
