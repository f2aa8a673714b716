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
from spade_rt.limits import (
    ASPECT_RATIO_RANGE,
    MAX_OUTPUT_SIDE,
    check_bool,
    check_choice,
    check_float,
    check_int,
    shown,
)
from spade_rt.presets import PRESETS, UPSAMPLING_LAYERS, describe_channels, get_preset, latent_size, output_size

# spade(norm)(ks)x(ks), optionally prefixed by 'spectral' (spectral norm on the resblock convs)
NORM_G_PATTERN = re.compile(r"^(spectral)?spade(syncbatch|batch|instance)(\d)x(\d)$")
# the encoder's norm (layers.norm_wrapped_conv): [spectral] + instance | batch | syncbatch | none
NORM_E_PATTERN = re.compile(r"^(spectral)?(instance|batch|syncbatch|sync_batch|none)?$")


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
        # every value may come from a file header: types and ranges first (spade_rt.limits), then consistency
        check_choice("preset", self.preset, tuple(PRESETS))
        for name in ("label_nc", "ngf", "z_dim", "crop_size"):
            check_int(name, getattr(self, name))
        for name in ("contain_dontcare_label", "use_instance", "use_vae", "has_encoder"):
            check_bool(name, getattr(self, name))
        check_choice("num_upsampling_layers", self.num_upsampling_layers, tuple(UPSAMPLING_LAYERS))
        check_float("aspect_ratio", self.aspect_ratio, *ASPECT_RATIO_RANGE)
        if not isinstance(self.norm_E, str) or not NORM_E_PATTERN.match(self.norm_E):
            raise ConfigError(
                f"norm_E {shown(self.norm_E)} is not supported: expected [spectral]{{instance,batch,syncbatch,none}}, "
                "e.g. spectralinstance"
            )
        if self.num_upsampling_layers == "most" and self.ngf % 2:
            raise ConfigError(f"ngf must be even with 'most' upsampling (up_4 has ngf/2 channels), got {self.ngf}")
        match = NORM_G_PATTERN.match(self.norm_G) if isinstance(self.norm_G, str) else None
        if not match or match.group(3) != match.group(4) or match.group(3) not in ("3", "5"):
            raise ConfigError(
                f"norm_G {shown(self.norm_G)} is not supported: expected [spectral]spade{{syncbatch,batch,instance}}"
                f"{{3x3,5x5}}, e.g. spectralspadesyncbatch3x3"
            )
        if self.has_encoder and not self.use_vae:
            raise ConfigError("an encoder only makes sense with use_vae")
        h, w = output_size(self.crop_size, self.aspect_ratio, self.num_upsampling_layers)  # raises if empty
        if max(h, w) > MAX_OUTPUT_SIDE:
            raise ConfigError(
                f"crop_size {self.crop_size} with aspect_ratio {self.aspect_ratio:g} gives a {h}x{w} output: height "
                f"and width must be at most {MAX_OUTPUT_SIDE}"
            )

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
        if not isinstance(data, dict):
            raise ConfigError(f"a generator config must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
            raise ConfigError(f"unknown generator option(s) in config: {', '.join(map(shown, unknown[:5]))}{more}")
        return cls(**data)

    def replace(self, **changes: Any) -> GeneratorConfig:
        return dataclasses.replace(self, **changes)
