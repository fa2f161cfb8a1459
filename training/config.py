"""Training configuration: defaults, an optional TOML file and ``--key value`` flags.

Precedence: defaults < TOML file (``--config FILE``) < command-line flags. Keys are the field
names of :class:`TrainConfig`; on the command line ``_`` may be written ``-``. An unknown key
is an error with a "did you mean" suggestion. The config saved in the run directory and sent
to wandb is the one used.
"""

from __future__ import annotations

import dataclasses
import difflib
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path


class ConfigError(ValueError):
    """A configuration key or value is invalid."""


@dataclass
class TrainConfig:
    """Every knob of a training run (defaults: the seed pipeline's, unless noted)."""

    store: str = ""  # store path or URL (required)
    run_dir: str = ""  # default: runs/<UTC time stamp>
    resume: str = ""  # run directory or checkpoint .h5 to continue
    epochs: int = 12_000
    batch_size: int = 32
    lr: float = 1e-5
    hidden: int = 64
    layers: int = 2
    dropout: float = 0.2
    latent: int = 40
    kld_coef: float = 0.001  # the seed logged 0.0035 but applied 0.001; 0.001 is used and logged
    target: str = "rates"  # "rates": the 3 band rates; "all": all 9 input features
    loss: str = "mse"  # "mse": the seed's squared error; "chi2": residuals divided by the rate errors (target rates)
    max_len: int = 512  # cap on time steps per light curve (the seed cut at 20); longer ones are cut
    min_len: int = 2  # sources with fewer points are left out
    limit: int = 0  # train on a seeded random sample of this many sources (0: all; the seed used 16384)
    seed: int = 0
    num_workers: int = 0  # DataLoader worker processes (spawned)
    device: str = "auto"  # "auto" (CUDA when available), "cpu", "cuda", "cuda:1"
    amp: bool = False  # float16 autocast on CUDA (off: the seed-size GRU does too little arithmetic to gain); ignored on CPU
    threads: int = 0  # CPU threads per process; 0: the fastest of 1, 2, 4, ... cores, timed at the start and saved here
    checkpoint_every: int = 50  # keep a numbered checkpoint every N epochs (best and last always)
    plot_every: int = 50  # benchmark reconstruction figure every N epochs
    n_benchmark: int = 4  # light curves in the reconstruction figure
    wandb_mode: str = ""  # "online", "offline" or "disabled"; default: WANDB_MODE, else offline without an API key
    wandb_project: str = "erosita-lcvae"
    cache_mib: int = 256  # decoded-chunk cache of the store reader, per process
    progress: bool = True
    evaluate: bool = True  # score the test split (anomaly scores, latents) at the end

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def validate(self) -> "TrainConfig":
        """Raise :class:`ConfigError` for values that cannot work."""
        positive = ("epochs", "batch_size", "hidden", "layers", "latent", "max_len", "checkpoint_every", "plot_every", "cache_mib")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.lr <= 0 or self.kld_coef < 0:
            raise ConfigError("lr must be > 0 and kld_coef >= 0")
        if self.target not in ("rates", "all"):
            raise ConfigError(f"target must be 'rates' or 'all', got {self.target!r}")
        if self.loss not in ("mse", "chi2"):
            raise ConfigError(f"loss must be 'mse' or 'chi2', got {self.loss!r}")
        if self.loss == "chi2" and self.target != "rates":
            raise ConfigError("loss 'chi2' weights the band rates by their errors: it needs target 'rates'")
        if self.wandb_mode not in ("", "online", "offline", "disabled"):
            raise ConfigError(f"wandb_mode must be online, offline or disabled, got {self.wandb_mode!r}")
        if self.limit < 0 or self.num_workers < 0 or self.threads < 0 or self.min_len < 1:
            raise ConfigError("limit, num_workers and threads must be >= 0, min_len >= 1")
        if not self.store and not self.resume:
            raise ConfigError("--store is required (a store path or URL)")
        return self


FIELD_TYPES = {f.name: f.type for f in fields(TrainConfig)}


def _suggest(key: str) -> str:
    close = difflib.get_close_matches(key, FIELD_TYPES, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def coerce(key: str, value) -> object:
    """Convert ``value`` (a string from the command line, or a TOML value) to the key's type."""
    if key not in FIELD_TYPES:
        raise ConfigError(f"unknown config key {key!r}{_suggest(key)}")
    kind = FIELD_TYPES[key]
    try:
        if kind == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if kind == "int":
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(float(value)) if isinstance(value, str) and "e" in value.lower() else int(value)
        if kind == "float":
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key} expects {kind}, got {value!r}") from None


def load_config(argv: list[str] | None = None, base: dict | None = None) -> TrainConfig:
    """Build a config from ``base`` values, ``--config FILE`` and ``--key value`` flags.

    ``--flag`` with no value sets a boolean key to true; ``--no-flag`` sets it to false.
    """
    values: dict = dict(base or {})
    args = list(argv or [])
    flags: dict = {}
    config_file = None
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--"):
            raise ConfigError(f"unexpected argument {arg!r}: options are --key value")
        key, value = arg[2:], None
        if "=" in key:
            key, value = key.split("=", 1)
        key = key.replace("-", "_")
        if key == "config":
            config_file = value if value is not None else _next(args, i, arg)
            i += 1 if value is not None else 2
            continue
        negated = key.startswith("no_") and FIELD_TYPES.get(key[3:]) == "bool"
        if negated:
            key = key[3:]
        if key not in FIELD_TYPES:
            raise ConfigError(f"unknown option --{key.replace('_', '-')}{_suggest(key)}")
        if value is None and FIELD_TYPES[key] == "bool" and (i + 1 >= len(args) or args[i + 1].startswith("--")):
            value, step = str(not negated), 1
        elif value is None:
            value, step = _next(args, i, arg), 2
        else:
            step = 1
        flags[key] = coerce(key, value)
        i += step
    if config_file:
        path = Path(config_file)
        if not path.exists():
            raise ConfigError(f"config file {path} does not exist")
        with path.open("rb") as fh:
            table = tomllib.load(fh)
        table = table.get("train", table)
        for key, value in table.items():
            values[key.replace("-", "_")] = coerce(key.replace("-", "_"), value)
    values.update(flags)
    unknown = [k for k in values if k not in FIELD_TYPES]
    if unknown:
        raise ConfigError(f"unknown config key {unknown[0]!r}{_suggest(unknown[0])}")
    return TrainConfig(**values)


def _next(args: list[str], i: int, flag: str) -> str:
    if i + 1 >= len(args):
        raise ConfigError(f"{flag} needs a value")
    return args[i + 1]


def config_from_dict(data: dict) -> TrainConfig:
    """Rebuild a config saved with :meth:`TrainConfig.to_dict` (checkpoints); unknown keys are dropped."""
    return TrainConfig(**{k: v for k, v in data.items() if k in FIELD_TYPES})
