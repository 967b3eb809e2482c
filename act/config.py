"""The ACT model configuration: upstream ACT's defaults, in one dataclass.

Every module that builds or loads a model takes an `ACTConfig`. It is saved as JSON beside
each checkpoint (`policy_config.json`) so a run directory can be reloaded without the
command line that produced it.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from lerobot_bridge.atomic_io import atomic_write_text


@dataclass
class ACTConfig:
    state_dim: int = 14
    action_dim: int = 14
    camera_names: list[str] = field(default_factory=lambda: ["top"])
    chunk_size: int = 100
    hidden_dim: int = 512
    dim_feedforward: int = 3200
    nheads: int = 8
    enc_layers: int = 4
    dec_layers: int = 7
    latent_dim: int = 32
    dropout: float = 0.1
    kl_weight: float = 10.0
    pre_norm: bool = False
    backbone: str = "resnet18"
    # Upstream ACT takes the output of decoder layer 0 only (its decoder returns all layers'
    # outputs and the model indexes [0]); layers 1..N-1 never influence the actions. False
    # reproduces that exactly, so upstream code computes the same actions from our
    # checkpoints. True wires the decoder properly (last layer's output): same keys, but
    # upstream code would load such a checkpoint silently and compute different actions.
    use_all_decoder_layers: bool = False
    # [H, W] of the frames the policy trained on (after any resize at conversion). ACTRunner
    # resizes camera frames of another size to it with the conversion's area resize, so a policy
    # trained at 240x320 can be fed the camera's 480x640. None (configs written before it
    # existed): frames are used as given. Not read by the model: the weights fit any frame size.
    image_size: list[int] | None = None

    def __post_init__(self) -> None:
        self.validate()

    @classmethod
    def check(cls, flag_prefix: str = "", **values) -> None:
        """validate() for these field values (others at their defaults) without building a config:
        the CLI words the first problem with its flag names (flag_prefix="--")."""
        probe = cls.__new__(cls)
        for f in dataclasses.fields(cls):
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            setattr(probe, f.name, values.get(f.name, default))
        probe.validate(flag_prefix)

    def validate(self, flag_prefix: str = "") -> None:
        """Raise ValueError naming the first field that no model can be built from.

        The shape rules live here, not in a CLI: every way of making a config (the training CLI,
        a saved policy_config.json, a notebook) gets them. flag_prefix="--" words the message
        with the CLI's flag names, which are the field names."""
        def name(field_name: str) -> str:
            return f"{flag_prefix}{field_name}"

        for key in ("state_dim", "action_dim", "chunk_size", "hidden_dim", "dim_feedforward", "nheads",
                    "enc_layers", "dec_layers", "latent_dim"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name(key)} must be an integer >= 1 (got {value!r})")
        if self.hidden_dim % self.nheads:
            raise ValueError(f"{name('hidden_dim')} {self.hidden_dim} must be divisible by "
                             f"{name('nheads')} {self.nheads}")
        if self.hidden_dim % 2:
            raise ValueError(f"{name('hidden_dim')} {self.hidden_dim} must be even (2-D sine position "
                             "embedding)")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"{name('dropout')} must be in [0, 1) (got {self.dropout})")
        if self.kl_weight < 0:
            raise ValueError(f"{name('kl_weight')} must be >= 0 (got {self.kl_weight})")
        if len(set(self.camera_names)) != len(self.camera_names):
            raise ValueError(f"camera names must be unique (got {self.camera_names})")
        if self.image_size is not None and (len(self.image_size) != 2 or min(self.image_size) < 1):
            raise ValueError(f"image_size must be [H, W] with H, W >= 1 (got {self.image_size})")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ACTConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def save_json(self, path: str | Path) -> None:
        """Write atomically (temporary name, then rename)."""
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load_json(cls, path: str | Path) -> ACTConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))
