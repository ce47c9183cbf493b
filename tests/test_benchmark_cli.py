"""``lrface benchmark`` through its argument parser, :class:`BenchmarkConfig`,
:func:`run_benchmark` and the CLI's printing, on real data."""

from __future__ import annotations

import argparse
import json

import cv2
import pytest
from conftest import PHOTOS, SHARED

from lrface import __version__
from lrface.argconfig import from_namespace
from lrface.cli.main import print_benchmark
from lrface.errors import DatasetError, LrfaceError
from lrface.eval.benchmark import (
    BenchmarkConfig,
    add_benchmark_arguments,
    parse_ids,
    parse_sizes,
    run_benchmark,
)

LFW_ROOT = SHARED / "data" / "lfw"
TEACHER_SHA = "e72a5710cce378dc46472b6b845cb90647634f2738d8c3e581735cf195b9866f"


def parse(*argv: str) -> BenchmarkConfig:
    parser = argparse.ArgumentParser(prog="lrface benchmark")
    add_benchmark_arguments(parser)
    args = parser.parse_args(list(argv))
    return from_namespace(BenchmarkConfig, args, command_line="lrface benchmark " + " ".join(argv))


def parse_lfw(*argv: str) -> BenchmarkConfig:
    """``lrface benchmark --protocol lfw --data <../shared's LFW> ARGV``."""
    return parse("--protocol", "lfw", "--data", str(LFW_ROOT), *argv)


def run_and_print(config: BenchmarkConfig) -> dict:
    """What ``lrface benchmark`` does: run, then print the table or JSON."""
    result = run_benchmark(config)
    print_benchmark(config, result)
    return result


def _strict(text: str) -> dict:
    def no_nan(c: str) -> None:
        raise AssertionError(f"non-standard JSON constant {c}")

    return json.loads(text, parse_constant=no_nan)


def test_lfw_quick_run_json_and_plots(tmp_path, capsys):
    out = tmp_path / "out"
    args = parse_lfw(
        "--max-pairs-per-fold",
        "20",
        "--mode",
        "hr-hr,hr-lr",
        "--sizes",
        "8",
        "--out",
        str(out),
        "--json",
        "--plot",
        "--no-cache",
        "--no-progress",
    )
    result = run_and_print(args)
    printed = _strict(capsys.readouterr().out)
    written = _strict((out / "results.json").read_text())
    assert printed == written == result
    assert written["lrface_version"] == __version__
    assert written["command"].startswith("lrface benchmark --protocol lfw")
    assert written["utc_time"].endswith("+00:00") and written["elapsed_s"] > 0
    assert written["models"][0]["sha256"] == TEACHER_SHA
    d = written["description"]
    assert d["official_folds"] == [6, 7, 8, 9, 10] and d["n_pairs"] == 100
    assert d["recipes"] == {"8": "area-down to 8px, model resizes (bicubic up)"}
    hr = next(e for e in written["results"] if e["mode"] == "hr-hr")
    assert hr["metrics"]["accuracy_mean"] > 0.9
    assert set(hr["metrics"]["tar_at_far"]) == {"0.1", "0.01", "0.001"}
    assert hr["metrics"]["tar_at_far"]["0.001"] is None  # 50 negatives: unresolvable
    assert sorted(written["plots"]) == ["roc_8px.png", "roc_hr_112px.png"]
    for name in written["plots"]:
        img = cv2.imread(str(out / name))
        assert img is not None and img.shape[2] == 3


def test_folder_table_on_stdout(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LRFACE_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "people"
    for name in ("Colin_Powell", "Tony_Blair", "Donald_Rumsfeld"):
        (root / name).mkdir(parents=True)
        for p in sorted((LFW_ROOT / "lfw-deepfunneled" / name).glob("*.jpg"))[:3]:
            (root / name / p.name).symlink_to(p)
    args = parse(
        "--protocol",
        "folder",
        "--data",
        str(root),
        "--sizes",
        "16",
        "--no-detect",
        "--out",
        str(tmp_path / "out"),
        "--no-progress",
    )
    result = run_benchmark(args)
    assert capsys.readouterr().out == ""  # the library prints nothing; the CLI does
    print_benchmark(args, result)
    text = capsys.readouterr().out
    assert "| model | 16px R1 | 16px mAP | 16px DIR@1% |" in text
    assert "| mobilefacenet-arcface |" in text
    assert result["description"]["n_probes"] == 6
    assert result["results"][0]["metrics"]["dir_at_fpir"]["0.01"] is None
    assert (tmp_path / "out" / "results.json").is_file()


@pytest.mark.parametrize("protocol", ["lfw", "tinyface", "scface", "folder"])
def test_wrong_dataset_is_a_one_line_dataset_error(tmp_path, protocol):
    (tmp_path / "stray.txt").write_text("x")
    with pytest.raises(DatasetError) as err:
        run_benchmark(
            parse("--protocol", protocol, "--data", str(tmp_path), "--out", str(tmp_path / "o"))
        )
    assert "\n" not in str(err.value) and str(tmp_path) in str(err.value)
    with pytest.raises(DatasetError, match="not found"):
        run_benchmark(parse("--protocol", protocol, "--data", str(tmp_path / "nope")))
    assert not (tmp_path / "o").exists()


def test_option_parsing_errors(tmp_path):
    assert parse_sizes("8, 12,16") == [8, 12, 16]
    with pytest.raises(LrfaceError, match="not an integer"):
        parse_sizes("8,x")
    with pytest.raises(LrfaceError, match="outside"):
        parse_sizes("2")
    ids = tmp_path / "ids.txt"
    ids.write_text("1, 2\n3\n")
    assert parse_ids(f"@{ids}") == [1, 2, 3] and parse_ids("4,5") == [4, 5]
    with pytest.raises(LrfaceError, match="unknown LFW mode"):
        run_benchmark(parse_lfw("--mode", "hr-x", "--out", str(tmp_path / "o")))
    with pytest.raises(SystemExit):
        parse_lfw("--split", "train")


def test_lfw_condition_options_in_results_and_table(tmp_path, capsys):
    out = tmp_path / "out"
    args = parse_lfw(
        "--max-pairs-per-fold",
        "4",
        "--mode",
        "hr-lr",
        "--sizes",
        "16",
        "--degrade",
        "realistic",
        "--probe-crop",
        "box",
        "--out",
        str(out),
        "--no-cache",
        "--no-progress",
    )
    result = run_and_print(args)
    printed = capsys.readouterr().out
    written = _strict((out / "results.json").read_text())
    assert written == result
    cond = written["description"]["condition"]
    assert cond["degrade"] == "realistic" and cond["probe_crop"] == "box"
    assert (
        "JPEG q30-70" in cond["degrade_recipe"] and "1.1 x max(w, h)" in cond["probe_crop_recipe"]
    )
    (entry,) = written["results"]
    assert entry["degrade"] == "realistic" and entry["probe_crop"] == "box"
    assert written["command"].endswith("--no-cache --no-progress")
    assert "--degrade realistic --probe-crop box" in written["command"]
    # the printed table says which condition it measured
    assert "probes: detector-box crops, realistic blur/noise/JPEG" in printed
    assert "| mobilefacenet-arcface hr-lr |" in printed


def test_bad_condition_options_are_one_line_errors(tmp_path, capsys):
    from lrface.cli.main import main

    base = ["benchmark", "--protocol", "lfw", "--data", str(LFW_ROOT), "--out", str(tmp_path)]
    for extra, word in (
        (["--degrade", "heavy"], "--degrade"),
        (["--probe-crop", "eyes"], "--probe"),
    ):
        assert main([*base, *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: {word}") and "\n" not in err and "choose" in err
    folder = ["--protocol", "folder", "--data", str(tmp_path), "--no-detect", "--probe-crop", "box"]
    with pytest.raises(LrfaceError, match="--no-detect"):
        run_benchmark(parse(*folder))
    assert not (tmp_path / "results.json").exists()


def test_config_is_the_one_source_of_defaults(tmp_path, capsys):
    """The parsed options equal the dataclass defaults; options that do not apply to the
    protocol are named (the CLI notes them on stderr) and change nothing."""
    assert parse("--protocol", "lfw", "--data", "d") == BenchmarkConfig(
        "lfw", "d", command_line="lrface benchmark --protocol lfw --data d"
    )
    c = parse("--protocol", "folder", "--data", "d", "--sizes", "16,8", "--no-detect")
    assert c.sizes == (16, 8) and c.detect is False and c.modes == ("hr-hr", "hr-lr", "lr-lr")
    assert c.ignored_options() == []
    t = parse("--protocol", "tinyface", "--data", "d", "--sizes", "8", "--no-detect")
    assert t.ignored_options() == ["--sizes", "--no-detect"]
    assert t.out_dir.name == "benchmark-tinyface"
    from lrface.cli.main import main

    assert (
        main(["benchmark", "--protocol", "tinyface", "--data", str(tmp_path), "--sizes", "8"]) == 2
    )
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "note: --sizes does not apply to the tinyface protocol; ignored"
    assert err[1].startswith("error: ") and str(tmp_path) in err[1]


def test_the_protocol_table_is_what_the_cli_offers():
    """One table: the --protocol choices, the options each protocol takes (others note them
    as ignored) and, per protocol, its layout check and evaluator."""
    from lrface.argconfig import option_fields
    from lrface.eval.benchmark import PROTOCOL_TABLE, PROTOCOLS, Protocol

    parser = argparse.ArgumentParser()
    add_benchmark_arguments(parser)
    choices = next(a.choices for a in parser._actions if a.dest == "protocol")
    assert tuple(choices) == PROTOCOLS == tuple(PROTOCOL_TABLE) == (
        "lfw", "tinyface", "scface", "folder"
    )
    fields = {f.name for f in option_fields(BenchmarkConfig)}
    for name, p in PROTOCOL_TABLE.items():
        assert isinstance(p, Protocol) and p.name == name and set(p.options) <= fields
    specific = {o for p in PROTOCOL_TABLE.values() for o in p.options}
    given = {"sizes": "8", "mode": "hr-hr", "split": "all", "no-detect": None,
             "max-pairs-per-fold": "2", "max-distractors": "2", "exclude-subjects": "1",
             "distractors": "x", "nonmated-fraction": "0.5", "degrade": "realistic",
             "probe-crop": "box"}  # fmt: skip
    argv = [t for k, v in given.items() for t in (f"--{k}", *([v] if v else []))]
    assert len(given) == len(specific)
    for name, p in PROTOCOL_TABLE.items():
        ignored = parse("--protocol", name, "--data", "d", *argv).ignored_options()
        flags = {"--mode" if o == "modes" else "--no-detect" if o == "detect"
                 else "--" + o.replace("_", "-") for o in specific - set(p.options)}  # fmt: skip
        assert set(ignored) == flags, name


def test_a_protocol_is_one_object_in_the_table(tmp_path, monkeypatch):
    """A protocol added to the table (here: a two-photo check with the real teacher) is
    checked, laid out and run by run_benchmark like the shipped ones."""
    from lrface.eval import benchmark
    from lrface.faces.pipeline import CropOptions, prepare_face

    photos = tmp_path / "photos"

    def layout(data: str) -> object:
        if not (photos / "a.jpg").is_file():
            raise DatasetError(f"{data}: no a.jpg")
        return data

    def run(config, embedders, hr):
        a, b = (prepare_face(str(photos / n), CropOptions()) for n in ("a.jpg", "b.jpg"))
        e = embedders[0].embed_crops([a.crop, b.crop])
        cos = float(e[0] @ e[1])
        entry = {"row": embedders[0].name, "cells": {"cos": f"{cos:.3f}"}, "cosine": cos}
        return {"caption": "two photos", "description": {"protocol": "pair"}, "results": [entry]}

    (tmp_path / "photos").mkdir()
    for n, src in (("a.jpg", "George_W_Bush_0001.jpg"), ("b.jpg", "George_W_Bush_0002.jpg")):
        (tmp_path / "photos" / n).write_bytes((PHOTOS / src).read_bytes())
    table = {**benchmark.PROTOCOL_TABLE, "pair": benchmark.Protocol("pair", layout, run)}
    monkeypatch.setattr(benchmark, "PROTOCOL_TABLE", table)
    config = BenchmarkConfig("pair", str(tmp_path / "photos"), out=str(tmp_path / "o"))
    result = run_benchmark(config)
    assert result["results"][0]["row"] == "mobilefacenet-arcface"
    assert result["results"][0]["cosine"] > 0.5  # the same person
    assert json.loads((tmp_path / "o" / "results.json").read_text())["caption"] == "two photos"
    (tmp_path / "photos" / "a.jpg").unlink()
    with pytest.raises(DatasetError, match="no a\\.jpg"):
        run_benchmark(config)


def test_lfw_given_probes_through_the_default_routing(tmp_path, capsys):
    """`--model auto --probe-crop given`: each probe read and embedded as `lrface embed
    --no-detect` would (the share of each path in the results); on the same probes as
    lrface-mbf, the routed row equals it where every probe took lrface-mbf alone."""
    from lrface.faces.routing import FUSE_GIVEN, FUSED_MODEL

    out = tmp_path / "out"
    args = parse_lfw(
        "--max-pairs-per-fold", "2", "--mode", "hr-lr", "--sizes", "16", "--probe-crop",
        "given", "--model", "auto,lrface-mbf", "--out", str(out), "--no-cache", "--no-progress",
    )  # fmt: skip
    result = run_and_print(args)
    auto, mbf = result["results"]
    assert auto["model"] == "auto" and mbf["model"] == "lrface-mbf"
    assert auto["hr_model"] == mbf["hr_model"] == "mobilefacenet-arcface"
    paths = auto["given_paths"]
    aligned = f"aligned+box -> {FUSED_MODEL}" if FUSE_GIVEN else "aligned-5pt -> lrface-mbf"
    assert set(paths) <= {aligned, "box -> lrface-box"}
    assert sum(paths.values()) == pytest.approx(1.0)
    assert paths.get(aligned, 0.0) == pytest.approx(auto["given_aligned_fraction"])
    if paths.get(aligned) == 1.0 and not FUSE_GIVEN:
        assert auto["metrics"]["accuracy_mean"] == mbf["metrics"]["accuracy_mean"]
    with pytest.raises(LrfaceError, match="--probe-crop given"):
        run_benchmark(parse_lfw("--model", "auto", "--probe-crop", "box", "--out", str(out)))
