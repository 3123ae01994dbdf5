"""What a saved genlab model records in its ``genlab.json``, as typed, frozen dataclasses.

Each type *is* its file's content: ``from_json(mapping, source)`` is the one place that reads and
checks it (one GenlabError naming ``source`` for a missing or mistyped field) and ``to_json()`` the
one place that writes it, key for key as genlab has always written it, so saved models keep
loading. Facts a loader derives from the weights (an image model's classes, channels and
resolution) sit beside the saved ones but are not written.

:class:`ImageModelInfo` and :class:`VideoModelInfo` describe the base models; the methods keep
their own (:class:`genlab.disco.model.DisCoInfo`, :class:`genlab.camera.model.CameraModelInfo`).
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from genlab.core.checkpoint import json_field
from genlab.core.edm import EDMSchedule
from genlab.core.loading import read_schedule
from genlab.core.nets import ImageDiT, ImageUNet
from genlab.errors import GenlabError

MODEL_INFO_FILE = "genlab.json"
#: The image networks, by their ``--arch`` name.
ARCHITECTURES = {"unet": ImageUNet, "dit": ImageDiT}


def is_number(value) -> bool:
    """Whether a JSON value is a finite number (``true`` is not)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class ModelInfo(ABC):
    """A model's ``genlab.json``: subclasses give :meth:`to_json`, this writes it."""

    @abstractmethod
    def to_json(self) -> dict[str, Any]:
        """The JSON object of ``genlab.json``, key for key."""

    def save(self, folder: Path | str) -> None:
        """Write :meth:`to_json` to ``folder/genlab.json``."""
        (Path(folder) / MODEL_INFO_FILE).write_text(json.dumps(self.to_json(), indent=2))


@dataclass(frozen=True)
class ImageModelInfo(ModelInfo):
    """An image model (:func:`genlab.base.image_model.load_image_model`).

    Saved: the data set it was trained on, its network's class name, its σ settings and, for models
    saved since genlab recorded it, the training probability of the null label (None: unknown).
    Derived from the network at load time (0 until then): ``num_classes`` (0: unconditional),
    ``channels`` and ``resolution``.
    """

    data: str
    architecture: str
    schedule: EDMSchedule = EDMSchedule()
    label_dropout: float | None = None
    num_classes: int = 0
    channels: int = 0
    resolution: int = 0

    @classmethod
    def of(cls, denoiser, data: str, label_dropout: float | None = None) -> ImageModelInfo:
        """The whole info of an image ``denoiser`` trained on ``data``."""
        dropout = None if label_dropout is None else float(label_dropout)
        return cls(data, type(denoiser.net).__name__, denoiser.schedule, dropout).with_net(denoiser.net)

    def with_net(self, net) -> ImageModelInfo:
        """This info with the facts of ``net``'s config (classes, channels, resolution)."""
        return replace(self, num_classes=net.config.num_classes, channels=net.config.in_channels,
                       resolution=net.config.resolution)

    @property
    def net_class(self) -> type:
        """The network class that :attr:`architecture` names."""
        return {cls.__name__: cls for cls in ARCHITECTURES.values()}[self.architecture]

    @classmethod
    def from_json(cls, info: Mapping, source: Path | str) -> ImageModelInfo:
        """The info in a ``genlab.json`` object ``info`` read from ``source``; GenlabError naming ``source``
        for a missing or mistyped field or an unknown architecture."""
        architecture = json_field(info, "architecture", str, source)
        data = json_field(info, "data", str, source)
        if "method" in info:
            json_field(info, "method", str, source)
        dropout = info.get("label_dropout")
        if dropout is not None and not (is_number(dropout) and 0 <= dropout < 1):
            raise GenlabError(f"{source} is corrupt: 'label_dropout' should be a number in [0, 1), got {dropout!r}")
        schedule = read_schedule(info, source)
        names = sorted(net.__name__ for net in ARCHITECTURES.values())
        if architecture not in names:
            raise GenlabError(f"{source} names an unknown architecture {architecture!r}; "
                              f"expected one of {', '.join(names)}")
        return cls(data, architecture, schedule, None if dropout is None else float(dropout))

    def to_json(self) -> dict[str, Any]:
        info = {"data": self.data, "architecture": self.architecture, **asdict(self.schedule)}
        if self.label_dropout is not None:
            info["label_dropout"] = self.label_dropout
        return info


@dataclass(frozen=True)
class VideoModelInfo(ModelInfo):
    """A video model (:func:`genlab.base.video_model.load_video_model`): its network's class name, σ settings and,
    for a latent video model, the subfolder holding its frame autoencoder (None: the net denoises pixels)."""

    architecture: str
    schedule: EDMSchedule = EDMSchedule()
    autoencoder: str | None = None

    @classmethod
    def from_json(cls, info: Mapping, source: Path | str) -> VideoModelInfo:
        """The info in a ``genlab.json`` object ``info`` read from ``source`` (GenlabError naming it if broken)."""
        autoencoder = json_field(info, "autoencoder", str, source) if "autoencoder" in info else None
        return cls(json_field(info, "architecture", str, source), read_schedule(info, source), autoencoder)

    def to_json(self) -> dict[str, Any]:
        latent = {} if self.autoencoder is None else {"autoencoder": self.autoencoder}
        return {"method": "video", "architecture": self.architecture, **asdict(self.schedule), **latent}
