"""One object per event loop and channel layer, made on first use (``PerLoopAndLayer.of``).

A process's calls share some channel-layer work: the control plane's one reader
(``telephony.controlplane.ControlHub``), the live monitor's one sender (``monitor.MonitorOutbox``).
Each belongs to the event loop that runs its tasks and to the layer it talks to; tests run many
loops, and a settings change builds a new layer. Both registries are weak: a closed loop or a
dropped layer takes its objects with it.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Self


class PerLoopAndLayer:
    """Mixin: ``cls.of(layer)`` is this class's instance for ``layer`` on the running loop."""

    _instances: weakref.WeakKeyDictionary

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        cls._instances = weakref.WeakKeyDictionary()  # loop → layer → instance, per subclass

    def __init__(self, layer) -> None:
        self.layer = layer

    @classmethod
    def of(cls, layer) -> Self:
        per_layer = cls._instances.setdefault(
            asyncio.get_running_loop(), weakref.WeakKeyDictionary()
        )
        instance = per_layer.get(layer)
        if instance is None:
            instance = per_layer[layer] = cls(layer)
        return instance
