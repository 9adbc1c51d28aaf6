"""vidssl: self-supervised learning from video.

Learn image encoders from folders of unlabeled videos (frame-temporal invariance, object-track
positives, CPC, colorization), propagate masks and keypoints with them, and export them for image
tasks. The command line is ``vidssl``; see README.md.
"""

__version__ = "0.1.0"


def load_encoder(path):  # noqa: ANN001, ANN201 - typed in vidssl.export.load_encoder
    """Rebuild an exported encoder (``vidssl export``) from its safetensors file; needs no
    training code. See :func:`vidssl.export.load_encoder`."""
    from vidssl.export import load_encoder as _load_encoder

    return _load_encoder(path)
