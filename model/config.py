"""Typed configuration of a SPADE generator (+ optional style encoder), stored as JSON beside the weights.

Field names follow the original options (``label_nc``, ``ngf``, ``norm_G`` ...) so a user can map their
``opt.txt`` onto it line by line.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from spade_rt.errors import ConfigError
from spade_rt.labels import LabelSpec
from spade_rt.presets import UPSAMPLING_LAYERS, describe_channels, get_preset, latent_size, output_size

# spade(norm)(ks)x(ks), optionally prefixed by 'spectral' (spectral norm on the resblock convs)
NORM_G_PATTERN = re.compile(r"^(spectral)?spade(syncbatch|batch|instance)(\d)x(\d)$")


@dataclass(frozen=True)
class GeneratorConfig:
    preset: str = "coco"
    label_nc: int = 182
    contain_dontcare_label: bool = True
    use_instance: bool = True
    ngf: int = 64
    num_upsampling_layers: str = "normal"
    crop_size: int = 256
    aspect_ratio: float = 1.0
    use_vae: bool = False
    z_dim: int = 256
    norm_G: str = "spectralspadesyncbatch3x3"
    has_encoder: bool = False  # a ConvEncoder (style image -> z) is stored beside the generator
    norm_E: str = "spectralinstance"  # the encoder's norm (only used when has_encoder)

    def __post_init__(self) -> None:
        get_preset(self.preset)
        for name, lo in (("label_nc", 1), ("ngf", 2), ("z_dim", 1), ("crop_size", 8)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < lo:
                raise ConfigError(f"{name} must be an integer >= {lo}, got {value!r}")
        if self.num_upsampling_layers == "most" and self.ngf % 2:
            raise ConfigError(f"ngf must be even with 'most' upsampling (up_4 has ngf/2 channels), got {self.ngf}")
        if not self.aspect_ratio > 0:
            raise ConfigError(f"aspect_ratio must be > 0, got {self.aspect_ratio!r}")
        match = NORM_G_PATTERN.match(self.norm_G)
        if not match or match.group(3) != match.group(4) or match.group(3) not in ("3", "5"):
            raise ConfigError(
                f"norm_G {self.norm_G!r} is not supported: expected [spectral]spade{{syncbatch,batch,instance}}"
                f"{{3x3,5x5}}, e.g. spectralspadesyncbatch3x3"
            )
        if self.has_encoder and not self.use_vae:
            raise ConfigError("an encoder only makes sense with use_vae")
        latent_size(self.crop_size, self.aspect_ratio, self.num_upsampling_layers)  # raises if empty

    # ---- derived quantities -------------------------------------------------------------------------
    @property
    def num_label_ids(self) -> int:
        return self.label_nc + (1 if self.contain_dontcare_label else 0)

    @property
    def semantic_nc(self) -> int:
        return self.num_label_ids + (1 if self.use_instance else 0)

    @property
    def latent_hw(self) -> tuple[int, int]:
        """(sh, sw) of the first feature map."""
        return latent_size(self.crop_size, self.aspect_ratio, self.num_upsampling_layers)

    @property
    def output_hw(self) -> tuple[int, int]:
        return output_size(self.crop_size, self.aspect_ratio, self.num_upsampling_layers)

    @property
    def num_up(self) -> int:
        return UPSAMPLING_LAYERS[self.num_upsampling_layers]

    @property
    def spectral(self) -> bool:
        return self.norm_G.startswith("spectral")

    @property
    def param_free_norm(self) -> str:
        """'batch' (syncbatch is batch norm synchronised across processes) or 'instance'."""
        kind = NORM_G_PATTERN.match(self.norm_G).group(2)
        return "instance" if kind == "instance" else "batch"

    @property
    def spade_kernel_size(self) -> int:
        return int(NORM_G_PATTERN.match(self.norm_G).group(3))

    @property
    def label_spec(self) -> LabelSpec:
        h, w = self.output_hw
        return LabelSpec(self.label_nc, self.contain_dontcare_label, self.use_instance, h, w)

    def describe_channels(self) -> str:
        return describe_channels(self.label_nc, self.contain_dontcare_label, self.use_instance)

    # ---- construction ------------------------------------------------------------------------------
    @classmethod
    def from_preset(cls, preset: str, **overrides: Any) -> GeneratorConfig:
        """Preset defaults, then any explicit option (None means 'keep the preset's value')."""
        p = get_preset(preset)
        values: dict[str, Any] = dict(
            preset=p.name,
            label_nc=p.label_nc,
            contain_dontcare_label=p.contain_dontcare_label,
            use_instance=p.use_instance,
            crop_size=p.crop_size,
            aspect_ratio=p.aspect_ratio,
            num_upsampling_layers=p.num_upsampling_layers,
        )
        known = {f.name for f in dataclasses.fields(cls)}
        for key, value in overrides.items():
            if key not in known:
                raise ConfigError(f"unknown generator option {key!r}")
            if value is not None:
                values[key] = value
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GeneratorConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown generator option(s) in config: {', '.join(unknown)}")
        return cls(**data)

    def replace(self, **changes: Any) -> GeneratorConfig:
        return dataclasses.replace(self, **changes)
