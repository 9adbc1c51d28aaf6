"""Training methods: one file each; ``METHODS`` maps a name to ``build(encoder, cfg) -> (Method, DataSpec)``."""

from vidssl.methods.fti import build_fti, build_mocov2, build_simclr

METHODS = {
    "fti": build_fti,
    "simclr": build_simclr,
    "mocov2": build_mocov2,
}
