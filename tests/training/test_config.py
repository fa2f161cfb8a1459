"""Config: defaults, TOML, flags, precedence and clear errors."""

from __future__ import annotations

import re

import pytest

from training.config import ConfigError, TrainConfig, load_config


def test_seed_defaults():
    cfg = TrainConfig(store="s")
    assert (cfg.lr, cfg.epochs, cfg.batch_size, cfg.latent, cfg.hidden, cfg.layers, cfg.dropout) == (1e-5, 12000, 32, 40, 64, 2, 0.2)
    assert cfg.kld_coef == 0.001


def test_toml_then_flags(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('[train]\nstore = "a"\nepochs = 5\nlr = 0.01\nprogress = false\n')
    cfg = load_config(["--config", str(toml), "--epochs", "7", "--batch-size=16"])
    assert (cfg.store, cfg.epochs, cfg.lr, cfg.batch_size, cfg.progress) == ("a", 7, 0.01, 16, False)
    assert load_config(["--store", "x", "--no-amp"]).amp is False
    assert load_config(["--store", "x", "--amp"]).amp is True


@pytest.mark.parametrize("argv, message", [
    (["--store", "x", "--epoch", "3"], "did you mean 'epochs'"),
    (["--store", "x", "--batchsize", "3"], "did you mean 'batch_size'"),
    (["--store", "x", "--epochs", "many"], "epochs expects int"),
    (["--store", "x", "--lr"], "--lr: expected one argument"),
    (["store"], "unexpected argument"),
])
def test_errors(argv, message):
    with pytest.raises(ConfigError, match=message):
        load_config(argv)


def test_toml_unknown_key(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('[train]\nlattent = 3\n')
    with pytest.raises(ConfigError, match="did you mean 'latent'"):
        load_config(["--config", str(toml)])


def test_validate():
    with pytest.raises(ConfigError, match="--store is required"):
        TrainConfig().validate()
    with pytest.raises(ConfigError, match="dropout"):
        TrainConfig(store="s", dropout=1.5).validate()
    with pytest.raises(ConfigError, match="target"):
        TrainConfig(store="s", target="flux").validate()


def test_chi2_loss_needs_rate_targets():
    assert TrainConfig(store="s", loss="chi2").validate().loss == "chi2"
    with pytest.raises(ConfigError, match="needs target 'rates'"):
        TrainConfig(store="s", loss="chi2", target="all").validate()
    with pytest.raises(ConfigError, match="loss must be"):
        TrainConfig(store="s", loss="l1").validate()


def test_help_lists_every_field_with_its_doc():
    """--help lists every field, one spelling each, with its doc and default."""
    import subprocess
    import sys
    from pathlib import Path

    from training.config import FIELD_HELP

    proc = subprocess.run([sys.executable, "-m", "training.fit", "--help"], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())
    for name, doc in FIELD_HELP.items():
        assert f"--{name.replace('_', '-')}" in text
        assert " ".join(doc.split())[:30] in text, name
        if "_" in name:  # the underscore spelling is accepted, not listed: one spelling per flag
            assert f"--{name} " not in text and f"--no-{name} " not in text, name
    assert "--no-amp" in text and "--config" in text
    assert "(default: '')" not in text  # no empty default
    options = re.split(r"\s(?=--[a-z])", text.split("options:", 1)[1])
    assert all(o.count("(default") <= 1 for o in options), [o for o in options if o.count("(default") > 1]  # never two


def test_flag_spellings_and_precedence(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('[train]\nstore = "a"\nbatch-size = 8\namp = true\n')
    cfg = load_config(["--config", str(toml), "--batch_size", "4", "--no-amp"])
    assert (cfg.batch_size, cfg.amp) == (4, False)
    assert load_config(["--config", str(toml)]).batch_size == 8
    assert load_config(["--store=s", "--epochs=1e3"]).epochs == 1000


@pytest.mark.parametrize("argv, message", [
    (["--store", "x", "--lr", "nan"], "lr must be a finite number"),
    (["--store", "x", "--lr", "inf"], "lr must be a finite number"),
    (["--store", "x", "--kld-coef", "nan"], "kld_coef must be"),
    (["--store", "x", "--dropout", "nan"], "dropout must be"),
])
def test_nan_values_are_refused(argv, message):
    """NaN and infinite values are refused with exit 2 and the key's name."""
    with pytest.raises(ConfigError, match=message):
        load_config(argv).validate()


def test_config_from_values_checks_keys_and_types():
    from training.config import config_from_values

    cfg = config_from_values({"store": "s", "epochs": "3", "lr": 0.01, "amp": "false"})
    assert (cfg.epochs, cfg.lr, cfg.amp) == (3, 0.01, False)
    with pytest.raises(ConfigError, match="did you mean 'epochs'"):
        config_from_values({"store": "s", "epoch": 3})
    with pytest.raises(ConfigError, match="epochs expects int"):
        config_from_values({"store": "s", "epochs": 2.5})


def test_discovery_knobs_are_checked():
    from training.config import ConfigError, config_from_values

    assert config_from_values({"store": "s", "condition": "band_mean", "hide_band": 0.5, "loss": "poisson"}).validate()
    for bad, message in (({"hide_band": 0.5}, "needs condition 'band_mean'"), ({"decoder_time": True}, "needs time_inputs"),
                         ({"condition": "hardness"}, "condition must be"), ({"condition": "band_mean", "hide_band": 1.5}, "probability")):
        with pytest.raises(ConfigError, match=message):
            config_from_values({"store": "s", **bad}).validate()


def test_the_shipped_discovery_config_reads_and_validates():
    from pathlib import Path

    from training.config import load_config

    cfg = load_config(["--config", str(Path(__file__).resolve().parents[2] / "configs" / "discovery.toml"), "--store", "s"])
    assert (cfg.condition, cfg.loss, cfg.hide_band, cfg.time_inputs, cfg.decoder_time) == ("band_mean", "poisson", 0.5, True, True)


@pytest.mark.parametrize("content, message", [
    (b"[train]\nepochs = 1180591620717411303424\n", "epochs expects int"),  # 2**70: beyond what numpy and torch hold
    (b"train = 5\n", "train = 5, not a table"),
    (b"[[train]]\nepochs = 3\n", "an array of [[train]] tables"),
    (b"[train]\nepochs = \xff\xfe\n", "not UTF-8 text"),
    (b"[train]\nepochs = " + b"[" * 5000 + b"]" * 5000 + b"\n", "nested too deeply"),
    (b"", "no [train] table"),
    (b"# only a comment\n", "no [train] table"),
    (b"[other]\nx = 1\n", "no [train] table"),
    (b"[train]\n", "the [train] table is empty"),
])
def test_a_config_file_that_cannot_work_is_one_error_line(tmp_path, content, message):
    """Refused with the file's name and why, exit 2: never a traceback, never a config that says nothing."""
    import subprocess
    import sys
    from pathlib import Path

    path = tmp_path / "train.toml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(["--config", str(path), "--store", "s"])
    proc = subprocess.run([sys.executable, "-m", "training.fit", "--config", str(path), "--store", "s"], capture_output=True,
                          text=True, timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr[-2000:]
