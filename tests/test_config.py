"""The config base: presets, nested groups, dotted overrides, type checks, help, diffs."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from nfkit.config import (
    Presets,
    StageConfig,
    config_diff,
    field_help,
    group,
    option,
    parse_set_options,
)
from nfkit.errors import ConfigError
from nfkit.fit.config import PRESETS as FIT_PRESETS
from nfkit.fit.config import FitConfig


@dataclass(frozen=True)
class Optim(StageConfig):
    lr: float = option(1e-4, "learning rate", check=lambda v: v > 0, must="> 0")
    betas: tuple[float, ...] = option((0.9, 0.999), "Adam betas")


@dataclass(frozen=True)
class Train(StageConfig):
    epochs: int = option(250, "epochs", check=lambda v: v >= 1, must=">= 1")
    loss: str = option("R+C", "loss mode", choices=("R", "R+C", "C"))
    amp: bool = option(False, "mixed precision")
    optim: Optim = group(Optim, "optimiser")

    def validate(self) -> None:
        if self.loss == "C" and self.epochs > 1000:
            raise ConfigError("loss C with more than 1000 epochs is not supported")


PRESETS = Presets(Train, paper=Train(), tiny=Train(epochs=2, optim=Optim(lr=1e-3)))


def test_presets_and_dotted_overrides():
    cfg = PRESETS.resolve("tiny", {"optim.lr": "3e-4", "amp": "yes", "optim.betas": "0.5,0.9", "epochs": "1e1"})
    assert (cfg.epochs, cfg.amp, cfg.optim.lr, cfg.optim.betas) == (10, True, 3e-4, (0.5, 0.9))
    assert PRESETS["tiny"].optim.lr == 1e-3  # presets are not modified
    assert cfg.to_dict() == {"epochs": 10, "loss": "R+C", "amp": True, "optim": {"lr": 3e-4, "betas": [0.5, 0.9]}}
    assert Train.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"epochs": "many"}, "epochs='many': expected an int"),
        ({"epochs": "2.5"}, "expected an int"),
        ({"epochs": "0"}, "epochs=0: must be >= 1"),
        ({"optim.lr": "fast"}, "optim.lr='fast': expected a float"),
        ({"optim.lr": "-1"}, "optim.lr=-1.0: must be > 0"),
        ({"amp": "maybe"}, "amp='maybe': expected a bool"),
        ({"loss": "X"}, "loss='X': expected one of R, R+C, C"),
        ({"optim": "1"}, "is a group"),
        ({"optim.nope": "1"}, "unknown config key 'optim.nope'"),
        ({"epochz": "1"}, "unknown config key 'epochz'"),
        ({"epochs.x": "1"}, "not a group"),
        ({"loss": "C", "epochs": "2000"}, "not supported"),
    ],
)
def test_bad_values_are_one_line_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("+", r"\+").replace("(", r"\(")) as info:
        PRESETS.resolve("paper", overrides)
    assert "\n" not in str(info.value)


def test_unknown_preset_lists_the_choices():
    with pytest.raises(ConfigError, match="choose one of paper, tiny"):
        PRESETS.get("fast")


def test_wrong_types_in_code_are_refused_too():
    with pytest.raises(ConfigError, match="expected an int"):
        Train(epochs=2.5)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unknown config key"):
        Train.from_dict({"epochs": 1, "bogus": 2})


def test_help_covers_nested_keys_and_choices():
    helps = field_help(Train)
    assert set(helps) == {"epochs", "loss", "amp", "optim.lr", "optim.betas"}
    assert "R | R+C | C" in helps["loss"]


def test_set_parsing_and_diff():
    assert parse_set_options(["optim.lr=1", "grid-res = 4"]) == {"optim.lr": "1", "grid_res": "4"}
    with pytest.raises(ConfigError):
        parse_set_options(["lr"])
    a, b = Train().to_dict(), PRESETS.resolve("paper", {"optim.lr": "2e-4"}).to_dict()
    assert config_diff(a, b) == ["optim.lr: 0.0001 -> 0.0002"]


def test_fit_config_keeps_its_fields_and_presets_and_resolves_the_sampler():
    assert FIT_PRESETS["paper"] == FitConfig() and FitConfig().steps == 1500
    assert FIT_PRESETS["cpu"].sampler == "grid" and FitConfig().sampler == "auto"
    assert FitConfig().resolved(device="cpu").sampler == "grid"
    assert FIT_PRESETS["tiny"].resolved(device="cpu") == FIT_PRESETS["tiny"]
    with pytest.raises(ConfigError, match="sampler='x'"):
        FIT_PRESETS.resolve("cpu", {"sampler": "x"})
