"""Training methods, one file each.

``METHODS`` maps a name to ``build(encoder, cfg) -> (Method, DataSpec)``; ``cfg`` is the run's
:class:`~vidssl.engine.trainer.TrainConfig`, extended with the fields of ``METHOD_OPTIONS[name]``
when the method has options of its own (a frozen dataclass of :func:`vidssl.config.option` fields
whose names differ from TrainConfig's), so ``vidssl train method=NAME key=value`` checks them too.
"""

from vidssl.methods.byol import BYOLOptions, build_byol
from vidssl.methods.colorization import ColorizationOptions, build_colorization
from vidssl.methods.cpc import CPCOptions, build_cpc
from vidssl.methods.dino import DINOOptions, build_dino
from vidssl.methods.fti import build_fti, build_mocov2, build_simclr
from vidssl.methods.jigsaw import JigsawOptions, build_jigsaw
from vidssl.methods.relpatch import RelPatchOptions, build_relpatch
from vidssl.methods.rotation import RotationOptions, build_rotation
from vidssl.methods.simsiam import SimSiamOptions, build_simsiam
from vidssl.methods.track import TrackOptions, build_track

METHODS = {
    "fti": build_fti,
    "simclr": build_simclr,
    "mocov2": build_mocov2,
    "track": build_track,
    "byol": build_byol,
    "simsiam": build_simsiam,
    "dino": build_dino,
    "cpc": build_cpc,
    "colorization": build_colorization,
    "rotation": build_rotation,
    "jigsaw": build_jigsaw,
    "relpatch": build_relpatch,
}

METHOD_OPTIONS: dict[str, type] = {
    "fti": TrackOptions,  # tracks=DIR adds object-track pairs to the frame pairs
    "track": TrackOptions,
    "byol": BYOLOptions,
    "simsiam": SimSiamOptions,
    "dino": DINOOptions,
    "cpc": CPCOptions,
    "colorization": ColorizationOptions,
    "rotation": RotationOptions,
    "jigsaw": JigsawOptions,
    "relpatch": RelPatchOptions,
}
