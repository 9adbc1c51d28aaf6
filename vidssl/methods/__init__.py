"""Training methods, one file each.

``METHODS`` maps a name to ``build(encoder, cfg) -> (Method, DataSpec)``; ``cfg`` is the run's
:class:`~vidssl.engine.trainer.TrainConfig`, extended with the fields of ``METHOD_OPTIONS[name]``
when the method has options of its own (a frozen dataclass of :func:`vidssl.config.option` fields
whose names differ from TrainConfig's), so ``vidssl train method=NAME key=value`` checks them too.
"""

from vidssl.methods.fti import build_fti, build_mocov2, build_simclr

METHODS = {
    "fti": build_fti,
    "simclr": build_simclr,
    "mocov2": build_mocov2,
}

METHOD_OPTIONS: dict[str, type] = {
}
