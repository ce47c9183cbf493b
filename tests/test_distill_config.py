"""`lrface distill` options generated from DistillConfig, and recipe files (--config).

No training here: the command line is parsed into a DistillConfig and compared.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lrface.cli.main import build_parser, main
from lrface.distill.config import DistillConfig, config_from_args

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"


def parse(*argv: str) -> DistillConfig:
    return config_from_args(build_parser().parse_args(["distill", *argv]))


def test_api_defaults_are_the_cli_defaults():
    """One source of defaults: the dataclass's are what `lrface distill` uses (the API
    once defaulted to losses ("kd",) while --loss defaulted to kd,crcd)."""
    cli = parse("--data", "faces/", "--out", "runs/x")
    assert cli == DistillConfig(data="faces/", out="runs/x")
    assert cli.losses == ("kd", "crcd") and (cli.min_size, cli.max_size) == (8, 32)


def test_flags_reach_their_fields():
    cfg = parse(
        *("--data", "lfw:a", "--data", "unlabelled:b.txt:weight=2", "--out", "o"),
        *("--loss", "kd,arc", "--sizes", "12-24", "--crcd-negatives", "0"),
        *("--width", "32", "--head-channels", "256", "--blocks", "1", "--crcd-warmup", "7"),
        *("--holdout-folds", "1,2", "--no-test-guard", "--save-rank-weights"),
        *("--val-sizes", "", "--val-every", "3", "--targets", "fused", "--lr", "1e-3"),
    )
    assert cfg.data == ("lfw:a", "unlabelled:b.txt:weight=2")
    assert cfg.losses == ("kd", "arc") and (cfg.min_size, cfg.max_size) == (12, 24)
    assert cfg.crcd_negatives is None and cfg.crcd_anchors == 1024  # 0 = all
    assert (cfg.tiny_width, cfg.tiny_head, cfg.tiny_blocks) == (32, 256, 1)
    assert cfg.crcd_warmup_steps == 7 and cfg.holdout_folds == (1, 2)
    assert cfg.test_guard is False and cfg.save_rank_weights is True
    assert cfg.val_sizes == () and cfg.val_every == 0  # no sizes: no validation
    assert cfg.targets == "fused" and cfg.lr == 1e-3


# the first stage of the shipped lrface-mbf, as benchmarks/train_shipped.sh spelt it
LONG_FLAGS = " ".join(
    [
        "--student lrface-mbf --name lrface-mbf --targets fused --loss kd,crcd --beta 0.2",
        "--crcd-warmup 200 --epochs 64 --batch-size 64 --lr 3e-4 --sizes 8-40 --p-hr 0.2",
        "--seed 0 --val-sizes 12,16,24 --val-every 4 --workers 3 --threads 2",
    ]
).split()


def test_a_recipe_file_equals_its_flags_and_flags_override_it():
    where = ["--data", "../shared/data/lfw", "--out", "runs/shipped/mbf-long"]
    recipe = str(CONFIGS / "lrface-mbf-long.toml")
    from_file = parse("--config", recipe, *where)
    assert from_file == parse(*LONG_FLAGS, *where)
    assert from_file.losses == ("kd", "crcd") and from_file.max_size == 40
    # command-line options win over the file; the rest stays the file's
    over = parse("--config", recipe, *where, "--epochs", "2", "--loss", "kd", "--sizes", "16")
    assert (over.epochs, over.losses, over.min_size, over.max_size) == (2, ("kd",), 16, 16)
    assert over.beta == 0.2 and over.val_sizes == (12, 16, 24)


def test_every_file_value_form(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text(
        'data = ["lfw:a", "b"]\nout = "o"\nlosses = "kd,nce"\ncrcd_anchors = 0\n'
        "holdout_folds = [1]\nval_sizes = []\ntest_guard = false\nlr = 1\nmin_size = 10\n"
    )
    cfg = parse("--config", str(recipe))
    assert cfg.data == ("lfw:a", "b") and cfg.out == "o" and cfg.losses == ("kd", "nce")
    assert cfg.crcd_anchors is None and cfg.holdout_folds == (1,) and cfg.val_every == 0
    assert cfg.test_guard is False and cfg.lr == 1.0 and isinstance(cfg.lr, float)
    assert (cfg.min_size, cfg.max_size) == (10, 32)
    assert cfg == parse(
        *("--data", "lfw:a", "--data", "b", "--out", "o", "--loss", "kd,nce"),
        *("--crcd-anchors", "0", "--holdout-folds", "1", "--val-sizes", ""),
        *("--no-test-guard", "--lr", "1", "--sizes", "10-32"),
    )


@pytest.mark.parametrize(
    "text, needles",
    [
        ('loss = "kd"\n', ["unknown key 'loss'", "did you mean 'losses'"]),
        ("epochz = 3\n", ["unknown key 'epochz'", "did you mean 'epochs'"]),
        ('epochs = "ten"\n', ["epochs: 'ten' is not an integer"]),
        ('targets = "views"\n', ["targets: 'views': use one of view, fused"]),
        ("test_guard = 0\n", ["test_guard: 0 is not true or false"]),
        ('holdout_folds = "x"\n', ["holdout_folds: --holdout-folds 'x'"]),
        ("epochs = [\n", ["not a TOML config file"]),
    ],
)
def test_bad_recipe_is_a_one_line_error(tmp_path, capsys, text, needles):
    recipe = tmp_path / "bad.toml"
    recipe.write_text(text)
    rc = main(["distill", "--config", str(recipe), "--data", "x", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith(f"error: {recipe}: "), err
    assert all(n in err[0] for n in needles), err


def test_data_and_out_come_from_somewhere(tmp_path, capsys):
    rc = main(["distill", "--config", str(CONFIGS / "lrface-tiny-16.toml")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "distill needs --data and --out" in err[0], err
    rc = main(["distill", "--config", str(tmp_path / "missing.toml"), "--out", "o"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "missing.toml: cannot read" in err[0], err


@pytest.mark.parametrize(
    "name", ["lrface-mbf", "lrface-tiny-16", "lrface-tiny-24", "lrface-tiny-32"]
)
def test_shipped_recipes_are_the_cards_training_settings(name):
    """configs/<model>.toml holds the settings the shipped card records (its "training"
    entry), but the --init path (a file of the machine that ran it)."""
    cfg = parse("--config", str(CONFIGS / f"{name}.toml"), "--data", "d", "--out", "o")
    card = json.loads((REPO / "weights" / f"{name}.json").read_text())["training"]
    mine = cfg.training_card()
    differ = {k: (v, mine[k]) for k, v in card.items() if mine[k] != v}
    assert set(differ) <= {"init"}, differ
    assert cfg.model_name == name
