"""Training configuration: defaults, an optional TOML file and ``--key value`` flags.

Precedence: defaults < TOML file (``--config FILE``) < command-line flags. Keys are the field
names of :class:`TrainConfig`; on the command line they are written with ``-`` (``--batch-size``;
``--batch_size`` is accepted too), booleans as ``--amp`` / ``--no-amp``. The command-line parser
is argparse, built from the fields: each flag's help text is its field's ``help``, so
``python -m training.fit --help`` always lists every knob with its default. An unknown key, on
the command line or in the TOML file, is an error with a "did you mean" suggestion. The config
saved in the run directory and sent to wandb is the one used.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import math
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

from common.errors import UserError


class ConfigError(UserError, ValueError):
    """A configuration key or value is invalid."""


def _knob(default, help: str):
    """A config field with its help text (the command line's ``--help`` shows it)."""
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    """Every knob of a training run (defaults: the seed pipeline's, unless noted)."""

    store: str = _knob("", "store path or URL (required unless --resume)")
    run_dir: str = _knob("", "run directory (default: runs/<local time stamp>; with --resume: the resumed run's)")
    resume: str = _knob("", "run directory or checkpoint .h5 to continue; outputs go to that run directory")
    epochs: int = _knob(12_000, "epochs to train (total, counting those before a resume)")
    batch_size: int = _knob(32, "light curves per batch")
    lr: float = _knob(1e-5, "Adam learning rate")
    hidden: int = _knob(64, "GRU hidden size")
    layers: int = _knob(2, "GRU layers (encoder and decoder)")
    dropout: float = _knob(0.2, "dropout between GRU layers")
    latent: int = _knob(40, "latent dimensions")
    kld_coef: float = _knob(0.001, "weight of the KL term")
    target: str = _knob("rates", "'rates': reconstruct the band rates; 'all': rates and both errors of every band")
    loss: str = _knob("mse", "'mse': the seed's squared error; 'chi2': residuals divided by the rate errors; "
                      "'poisson': Poisson likelihood of the counts (rate x exposure + background)")
    time_inputs: bool = _knob(False, "give the encoder the gap since the previous bin and the exposure as inputs")
    condition: str = _knob("none", "'none': one scale per source (the seed); 'band_mean': each band scaled by its own "
                           "mean and the decoder conditioned on those means, so the latents carry shape and spectral change")
    decoder_time: bool = _knob(False, "give the decoder the time inputs at every step too (needs time_inputs)")
    hide_band: float = _knob(0.0, "probability that a training light curve has one random band hidden from the encoder "
                             "(the decoder still reconstructs it): the model learns to predict a band from the others "
                             "(needs condition band_mean)")
    max_len: int = _knob(512, "cap on time steps per light curve (the seed cut at 20); longer ones are cut")
    min_len: int = _knob(2, "sources with fewer points are left out")
    limit: int = _knob(0, "train on a seeded random sample of this many sources (0: all)")
    seed: int = _knob(0, "seed of sampling, shuffling and initialisation")
    num_workers: int = _knob(0, "DataLoader worker processes (spawned)")
    device: str = _knob("auto", "'auto' (CUDA when available), 'cpu', 'cuda', 'cuda:1'")
    amp: bool = _knob(False, "float16 autocast on CUDA (ignored on CPU)")
    threads: int = _knob(0, "CPU threads; 0: timed on a few batches at the start (long runs only) and saved")
    checkpoint_every: int = _knob(50, "keep a numbered checkpoint every N epochs (best and last always)")
    plot_every: int = _knob(50, "benchmark reconstruction figure every N epochs")
    log_every: int = _knob(50, "read the loss back from the device every N steps (a sync point on GPUs)")
    n_benchmark: int = _knob(4, "light curves in the reconstruction figure")
    wandb_mode: str = _knob("", "'online', 'offline' or 'disabled'; default: WANDB_MODE, else offline without an API key")
    wandb_project: str = _knob("erosita-lcvae", "wandb project")
    cache_mib: int = _knob(256, "decoded-chunk cache of the store reader, MiB per process")
    progress: bool = _knob(True, "progress bars")
    evaluate: bool = _knob(True, "score the test split (anomaly scores, latents) at the end")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def predicts_hidden_bands(self) -> bool:
        """Whether the model learns to predict a band hidden from the encoder, on counts: what the
        ``discovery`` set's cross-band surprises need (``configs/discovery.toml``)."""
        return self.condition == "band_mean" and self.hide_band > 0 and self.loss == "poisson"

    def validate(self) -> "TrainConfig":
        """Raise :class:`ConfigError` for values that cannot work."""
        positive = ("epochs", "batch_size", "hidden", "layers", "latent", "max_len", "checkpoint_every", "plot_every",
                    "cache_mib", "log_every")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.dropout < 1:  # False for NaN too
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"lr must be a finite number > 0, got {self.lr}")
        if not (math.isfinite(self.kld_coef) and self.kld_coef >= 0):
            raise ConfigError(f"kld_coef must be a finite number >= 0, got {self.kld_coef}")
        if self.target not in ("rates", "all"):
            raise ConfigError(f"target must be 'rates' or 'all', got {self.target!r}")
        if self.loss not in ("mse", "chi2", "poisson"):
            raise ConfigError(f"loss must be 'mse', 'chi2' or 'poisson', got {self.loss!r}")
        if self.condition not in ("none", "band_mean"):
            raise ConfigError(f"condition must be 'none' or 'band_mean', got {self.condition!r}")
        if self.decoder_time and not self.time_inputs:
            raise ConfigError("decoder_time needs time_inputs")
        if not 0.0 <= self.hide_band <= 1.0:
            raise ConfigError(f"hide_band must be a probability in [0, 1], got {self.hide_band}")
        if self.hide_band and self.condition != "band_mean":
            raise ConfigError("hide_band needs condition 'band_mean' (the flags of hidden bands travel with the conditioning)")
        if self.loss in ("chi2", "poisson") and self.target != "rates":
            raise ConfigError(f"loss {self.loss!r} models the band rates: it needs target 'rates'")
        if self.wandb_mode not in ("", "online", "offline", "disabled"):
            raise ConfigError(f"wandb_mode must be online, offline or disabled, got {self.wandb_mode!r}")
        if self.limit < 0 or self.num_workers < 0 or self.threads < 0 or self.min_len < 1:
            raise ConfigError("limit, num_workers and threads must be >= 0, min_len >= 1")
        if not self.store and not self.resume:
            raise ConfigError("--store is required (a store path or URL)")
        return self


FIELD_TYPES = {f.name: f.type for f in fields(TrainConfig)}
FIELD_HELP = {f.name: f.metadata["help"] for f in fields(TrainConfig)}


def _suggest(key: str) -> str:
    close = difflib.get_close_matches(key, FIELD_TYPES, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def coerce(key: str, value) -> object:
    """Convert ``value`` (a string from the command line, or a TOML/JSON value) to the key's type."""
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
            if isinstance(value, bool) or isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            if isinstance(value, str) and "e" in value.lower():
                number = float(value)
                if not number.is_integer():
                    raise ValueError(value)
                value = int(number)
            number = int(value)
            if not -(2**63) <= number < 2**63:  # what numpy and torch can hold
                raise OverflowError(value)
            return number
        if kind == "float":
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        if not isinstance(value, str):
            raise ValueError(value)
        return value
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{key} expects {kind}, got {value!r}") from None


class _Parser(argparse.ArgumentParser):
    """argparse that raises :class:`ConfigError` (the callers turn it into exit code 2)."""

    def error(self, message: str):
        raise ConfigError(message)


def build_parser(prog: str = "python -m training.fit") -> argparse.ArgumentParser:
    """The command-line parser: one flag per :class:`TrainConfig` field, plus ``--config``.

    Flags default to "not given" (``argparse.SUPPRESS``), so a TOML file's values are only
    overridden by flags the user typed.
    """
    defaults = TrainConfig()
    parser = _Parser(prog=prog, description="Train the GRU-VAE on a light-curve store. Every flag is also a key "
                     "of a TOML file given with --config (its [train] table); flags win over the file. Keys may be "
                     "spelled with - or _ (--batch-size, --batch_size).",
                     argument_default=argparse.SUPPRESS, allow_abbrev=False)
    parser.add_argument("--config", metavar="FILE.toml", help="TOML file whose [train] table holds any of the keys below")
    for name, kind in FIELD_TYPES.items():
        flag = f"--{name.replace('_', '-')}"
        default = getattr(defaults, name)
        text = FIELD_HELP[name]
        if "default" not in text and default != "":
            text += f" (default: {'on' if default is True else 'off' if default is False else default})"
        alias = [f"--{name}"] if "_" in name else []  # accepted, not listed: one spelling per flag in --help
        if kind == "bool":
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, help=text)
            if alias:
                parser.add_argument(*alias, dest=name, action=argparse.BooleanOptionalAction, help=argparse.SUPPRESS)
        else:
            parser.add_argument(flag, dest=name, metavar=kind.upper(), type=_typed(name), help=text)
            if alias:
                parser.add_argument(*alias, dest=name, metavar=kind.upper(), type=_typed(name), help=argparse.SUPPRESS)
    return parser


def _typed(name: str):
    def convert(text: str):
        try:
            return coerce(name, text)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = FIELD_TYPES[name]
    return convert


def load_config(argv: list[str] | None = None, base: dict | None = None) -> TrainConfig:
    """Build a config from ``base`` values, ``--config FILE`` and the command-line flags.

    Raises
    ------
    ConfigError
        Unknown flag or key (with a "did you mean"), a value of the wrong type, a missing value.
    """
    parser = build_parser()
    args, unknown = parser.parse_known_args(list(argv or []))
    if unknown:
        first = unknown[0]
        if not first.startswith("--"):
            raise ConfigError(f"unexpected argument {first!r}: options are --key value")
        key = first[2:].split("=", 1)[0].replace("-", "_")
        key = key[3:] if key.startswith("no_") and key[3:] in FIELD_TYPES else key
        raise ConfigError(f"unknown option {first.split('=', 1)[0]}{_suggest(key)}")
    flags = vars(args)
    values: dict = dict(base or {})
    config_file = flags.pop("config", None)
    if config_file:
        values.update(read_toml(config_file))
    values.update(flags)
    return config_from_values(values)


def read_toml(path) -> dict:
    """The keys of a TOML config file (its ``[train]`` table, or the top level), coerced."""

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        with path.open("rb") as fh:
            document = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path}: not UTF-8 text (byte {exc.start}); TOML files are UTF-8") from None
    except RecursionError:
        raise ConfigError(f"config file {path}: nested too deeply to read") from None
    table = document.get("train")
    if not isinstance(table, dict):
        found = "an array of [[train]] tables" if isinstance(table, list) else \
            f"train = {table!r}, not a table" if table is not None else "no [train] table"
        raise ConfigError(f"config file {path}: {found}; its keys go under one [train] table "
                          "(python -m training.fit --help lists them)")
    if not table:
        raise ConfigError(f"config file {path}: the [train] table is empty")
    return {key.replace("-", "_"): coerce(key.replace("-", "_"), value) for key, value in table.items()}


def config_from_values(values: dict) -> TrainConfig:
    """A config from a dict of keys (Python values or strings); unknown keys are errors.

    This is how flows and scripts build a config: no argv round trip.
    """
    unknown = [k for k in values if k not in FIELD_TYPES]
    if unknown:
        raise ConfigError(f"unknown config key {unknown[0]!r}{_suggest(unknown[0])}")
    return TrainConfig(**{k: coerce(k, v) for k, v in values.items()})


def config_from_dict(data: dict) -> TrainConfig:
    """Rebuild a config saved with :meth:`TrainConfig.to_dict` (checkpoints); unknown keys are dropped."""
    return TrainConfig(**{k: v for k, v in data.items() if k in FIELD_TYPES})
