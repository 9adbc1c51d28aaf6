"""Training methods, one file each, and the one registry.

A new method is one file holding a :class:`~vidssl.methods.base.Method` subclass (with its
``Config``, ``data()``, ``training_step()`` and, if it has any, ``ema()``) plus one line here.
Object-track positives are not a method: they are a pair source of every two-view method
(``positives=tracks|both``, :mod:`vidssl.data.pairs`).
"""

from vidssl.methods.base import Method, PairMethod, StepOutput
from vidssl.methods.byol import BYOL
from vidssl.methods.colorization import Colorization
from vidssl.methods.cpc import CPC
from vidssl.methods.crw import CRW
from vidssl.methods.dino import DINO
from vidssl.methods.fti import FTI, MoCoV2, SimCLR
from vidssl.methods.jigsaw import Jigsaw
from vidssl.methods.relpatch import RelPatch
from vidssl.methods.rotation import Rotation
from vidssl.methods.simsiam import SimSiam
from vidssl.methods.vfs import VFS

METHODS: dict[str, type[Method]] = {
    "fti": FTI,
    "simclr": SimCLR,
    "mocov2": MoCoV2,
    "byol": BYOL,
    "simsiam": SimSiam,
    "dino": DINO,
    "cpc": CPC,
    "colorization": Colorization,
    "crw": CRW,
    "vfs": VFS,
    "rotation": Rotation,
    "jigsaw": Jigsaw,
    "relpatch": RelPatch,
}

__all__ = ["METHODS", "Method", "PairMethod", "StepOutput"]
