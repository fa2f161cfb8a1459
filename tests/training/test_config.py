"""Config: defaults, TOML, flags, precedence and clear errors."""

from __future__ import annotations

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
    (["--store", "x", "--lr"], "--lr needs a value"),
    (["store"], "unexpected argument"),
])
def test_errors(argv, message):
    with pytest.raises(ConfigError, match=message):
        load_config(argv)


def test_toml_unknown_key(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('lattent = 3\n')
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
