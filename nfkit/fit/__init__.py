"""Fitting many NeRFs from shared initializations.

- :mod:`nfkit.fit.config`   :class:`FitConfig` and the presets ``paper``, ``cpu``, ``tiny``
- :mod:`nfkit.fit.trainer`  :func:`fit_batch`: B NeRFs of one architecture as one batched model
- :mod:`nfkit.fit.driver`   :func:`fit_dataset`: a dataset -> NeRF shards (sharding, resume)
- :mod:`nfkit.fit.malloc`   glibc settings that avoid page faults between steps
"""

from nfkit.fit.config import PRESETS, FitConfig, resolve_config

__all__ = ["PRESETS", "FitConfig", "resolve_config"]
