"""The CLI: inspect output (text and JSON), identity commands, one-line errors, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from sameface.cli import main


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_inspect_json(capsys, tmp_path, obama, obama2, biden):
    blank = tmp_path / "blank.png"
    Image.new("RGB", (200, 200), "gray").save(blank)
    code, out, err = run(capsys, "inspect", "--json", obama, obama2, biden, blank)
    doc = json.loads(out)
    assert code == 1  # the blank image has no face
    assert err.strip().splitlines() == [f"error: {blank}: no face found"]
    assert [len(r["faces"]) for r in doc["images"]] == [1, 1, 1, 0]
    face = doc["images"][0]["faces"][0]
    assert set(face) >= {
        "bbox",
        "landmarks",
        "score",
        "size",
        "blur",
        "yaw",
        "pitch",
        "roll",
        "warnings",
    }
    assert len(face["bbox"]) == 4 and len(face["landmarks"]) == 5
    sim = doc["similarity"]
    assert len(sim) == 4 and all(len(r) == 4 for r in sim)
    assert sim[0][0] == pytest.approx(1.0, abs=1e-3)
    assert sim[0][1] > sim[0][2] + 0.2  # obama-obama2 above obama-biden
    assert sim[3] == [None] * 4 and sim[0][3] is None
    assert doc["recognizer"]["name"] == "sface"


def test_inspect_text_and_crops(capsys, tmp_path, obama, obama2):
    code, out, err = run(capsys, "inspect", obama, obama2, "--save-crops", tmp_path / "crops")
    assert code == 0 and err == ""
    assert "identity similarity" in out and "score" in out
    names = sorted(p.name for p in (tmp_path / "crops").iterdir())
    assert names == [
        "00_obama_aligned.png",
        "00_obama_square.png",
        "01_obama2_aligned.png",
        "01_obama2_square.png",
    ]
    assert Image.open(tmp_path / "crops" / "00_obama_aligned.png").size == (112, 112)


def _bad_files(tmp_path, obama):
    data = obama.read_bytes()
    files = {
        "zero.jpg": b"",
        "trunc.jpg": data[: len(data) // 3],
        "text.png": b"hello world\n" * 20,
        "garbage.jpg": bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8)),
    }
    paths = []
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
        paths.append(tmp_path / name)
    from tests.test_imageio import png_header

    paths.append(png_header(tmp_path / "bomb.png", 9000, 8000))
    paths.append(tmp_path / "missing.jpg")
    return paths


def test_each_bad_input_is_one_line_and_nonzero(capsys, tmp_path, obama):
    for path in _bad_files(tmp_path, obama):
        code, out, err = run(capsys, "inspect", path)
        assert code == 1, path
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and str(path) in lines[0], err
        assert "Traceback" not in err


def test_unusual_modes_work_from_the_cli(capsys, tmp_path, obama):
    im = Image.open(obama)
    im.convert("CMYK").save(tmp_path / "cmyk.jpg")
    im.convert("P").save(tmp_path / "palette.png")
    im.convert("L").save(tmp_path / "gray.png")
    im.convert("RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(np.asarray(im.convert("L"), np.uint16) * 257).save(tmp_path / "16bit.png")
    paths = sorted(tmp_path.iterdir())
    code, out, err = run(capsys, "inspect", "--json", *paths)
    assert code == 0, err
    doc = json.loads(out)
    assert all(len(r["faces"]) == 1 for r in doc["images"])
    sims = [v for row in doc["similarity"] for v in row]
    assert min(sims) > 0.6  # the same face whatever the colour mode


def test_missing_model_file_is_one_line(capsys, tmp_path, monkeypatch, obama):
    import importlib.resources

    monkeypatch.setattr(importlib.resources, "files", lambda pkg: tmp_path)
    code, out, err = run(capsys, "inspect", obama)
    assert code == 1
    assert len(err.strip().splitlines()) == 1 and "reinstall" in err


def test_bad_policy_is_a_usage_error(capsys, obama):
    code, out, err = run(capsys, "inspect", obama, "--face", "leftmost")
    assert code == 2 and err.startswith("error: face policy")


def test_identity_commands(capsys, tmp_path, obama, obama2):
    out_dir = tmp_path / "me"
    code, out, err = run(
        capsys,
        "identity",
        "create",
        "--face",
        obama,
        obama2,
        "--out",
        out_dir,
        "--mask",
        "landmarks",
    )
    assert code == 0, err
    assert (out_dir / "identity.safetensors").is_file()
    code, out, err = run(capsys, "identity", "create", "--face", obama, "--out", out_dir)
    assert code == 1 and "already saved" in err
    code, out, err = run(capsys, "identity", "show", out_dir, "--json")
    assert code == 0 and len(json.loads(out)["photos"]) == 2
    code, out, err = run(capsys, "identity", "delete", out_dir)
    assert code == 0 and not out_dir.exists()


def test_console_script_runs_without_traceback(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    cmd = [sys.executable, "-m", "sameface.cli", "inspect", str(bad)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"error: {bad}: not an image, or a format Pillow cannot read"
    ]
    help_text = subprocess.run(
        [sys.executable, "-m", "sameface.cli", "--help"], capture_output=True, text=True
    ).stdout
    assert "inspect" in help_text and "identity" in help_text


def test_missing_extra_is_one_line(capsys, monkeypatch, obama):
    monkeypatch.setitem(sys.modules, "dlib", None)  # as if the dlib extra were not installed
    code, out, err = run(capsys, "inspect", obama, "--recognizer", "dlib")
    assert code == 1
    assert len(err.strip().splitlines()) == 1 and "sameface[dlib]" in err


def test_folders_expand_to_their_images(capsys, tmp_path, obama, obama2):
    import shutil

    shutil.copy(obama, tmp_path / "a.jpg")
    shutil.copy(obama2, tmp_path / "b.jpg")
    (tmp_path / "notes.txt").write_text("not an image")
    code, out, err = run(capsys, "inspect", "--json", tmp_path)
    assert code == 0, err
    assert [r["path"] for r in json.loads(out)["images"]] == [
        str(tmp_path / "a.jpg"),
        str(tmp_path / "b.jpg"),
    ]
    empty = tmp_path / "empty"
    empty.mkdir()
    code, out, err = run(capsys, "inspect", empty)
    assert code == 1 and "no image files" in err


def test_output_paths_that_cannot_be_written(capsys, tmp_path, obama):
    (tmp_path / "file.txt").write_text("x")
    code, out, err = run(capsys, "inspect", obama, "--save-crops", tmp_path / "file.txt")
    assert code == 1 and err.startswith("error: ") and "cannot create output folder" in err
    code, out, err = run(
        capsys, "identity", "create", "--face", obama, "--out", tmp_path / "file.txt" / "me"
    )
    assert code == 1 and "is a file" in err and "Traceback" not in err


def test_debug_flag_after_the_command(capsys, obama):
    code, out, err = run(capsys, "inspect", obama, "--json", "--debug")
    assert code == 0


def test_personalize_then_generate(capsys, tmp_path, obama, obama2):
    from sameface.models import save_base_model, tiny_base_model

    base_dir = save_base_model(tiny_base_model("sd1"), tmp_path / "base")
    art = tmp_path / "me"
    code, out, err = run(
        capsys,
        "personalize",
        "--face",
        obama,
        obama2,
        "--base",
        base_dir,
        "--out",
        art,
        "--steps",
        "3",
        "--init",
        "face",
        "--reparam-base",
        "e",
        "--set",
        "num_tokens=3",
        "--device",
        "cpu",
    )
    assert code == 0, err
    assert "sameface generate" in out
    meta = json.loads((art / "artifact.json").read_text())
    assert (
        meta["num_tokens"] == 3
        and abs(meta["reparam_base"] - 2.718281828) < 1e-6
        and meta["base"] == str(base_dir)
    )
    code, out, err = run(capsys, "personalize", "--face", obama, "--base", base_dir, "--out", art)
    assert code == 1 and "--force" in err
    imgs = tmp_path / "imgs"
    code, out, err = run(
        capsys,
        "generate",
        "--identity",
        art,
        "a photo of <id> as a chef",
        "-n",
        "2",
        "--steps",
        "2",
        "--out",
        imgs,
        "--seed",
        "5",
    )
    assert code == 0, err
    assert sorted(p.name for p in imgs.iterdir()) == [
        "a-photo-of-id-as-a-chef_5.png",
        "a-photo-of-id-as-a-chef_6.png",
        "generation.json",
    ]
    code, out, err = run(capsys, "generate", "--identity", art, "a photo of a chef", "--out", imgs)
    assert code == 2 and "<id>" in err
    code, out, err = run(
        capsys,
        "personalize",
        "--face",
        obama,
        "--base",
        base_dir,
        "--out",
        tmp_path / "x",
        "--set",
        "colour=blue",
    )
    assert code == 2 and "unknown setting" in err
    code, out, err = run(
        capsys, "generate", "--identity", tmp_path, "a photo of <id>", "--out", imgs
    )
    assert code == 1 and "personalize" in err


def test_personalize_with_a_celebrity_bank_uses_the_id_init(capsys, tmp_path, obama, obama2, biden):
    import shutil

    from sameface.models import save_base_model, tiny_base_model

    photos = tmp_path / "photos"
    (photos / "Barack_Obama").mkdir(parents=True)
    (photos / "Joe_Biden").mkdir()
    shutil.copy(obama, photos / "Barack_Obama" / "a.jpg")
    shutil.copy(biden, photos / "Joe_Biden" / "b.jpg")
    code, out, err = run(capsys, "celebs", "build", "--photos", photos, "--out", tmp_path / "bank")
    assert code == 0, err
    base_dir = save_base_model(tiny_base_model("sd1"), tmp_path / "base")
    art = tmp_path / "me"
    code, out, err = run(
        capsys,
        "personalize",
        "--face",
        obama2,
        "--base",
        base_dir,
        "--out",
        art,
        "--steps",
        "2",
        "--celeb-bank",
        tmp_path / "bank",
        "--device",
        "cpu",
    )
    assert code == 0, err
    init = json.loads((art / "artifact.json").read_text())["init"]
    assert (
        init["used"] == "id"
        and init["celebrity"] == "Barack Obama"
        and init["token_ids"] == [22481, 4276]
    )
    code, out, err = run(
        capsys,
        "celebs",
        "nearest",
        "--bank",
        tmp_path / "bank",
        "--identity",
        art / "identity",
        "--json",
    )
    assert code == 0 and json.loads(out)[0]["name"] == "Barack Obama"


def test_personalize_and_generate_argument_errors(capsys, tmp_path, obama, monkeypatch):
    import torch

    from sameface.models import save_base_model, tiny_base_model

    base_dir = save_base_model(tiny_base_model("sd1"), tmp_path / "base")
    capsys.readouterr()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    common = ["personalize", "--face", obama, "--base", base_dir, "--out", tmp_path / "me"]
    code, out, err = run(capsys, *common, "--device", "cuda")
    assert code == 1 and "CUDA is not available" in err and len(err.strip().splitlines()) == 1
    code, out, err = run(capsys, *common, "--device", "gpu0")
    assert code == 2 and "unknown device" in err
    code, out, err = run(capsys, *common, "--set", "steps=abc")
    assert code == 2 and "whole number" in err
    monkeypatch.chdir(tmp_path)
    code, out, err = run(
        capsys,
        "personalize",
        "--face",
        obama,
        "--base",
        "base",
        "--out",
        "me",
        "--steps",
        "1",
        "--device",
        "cpu",
    )
    assert code == 0, err
    assert json.loads((tmp_path / "me" / "artifact.json").read_text())["base"] == str(
        base_dir.resolve()
    )
    with pytest.raises(SystemExit) as exit_info:  # argparse's own usage error
        main(["generate", "--identity", "me", "a photo of <id>", "--steps", "0", "--out", "imgs"])
    assert exit_info.value.code == 2 and "at least 1" in capsys.readouterr().err


def test_method_flags_come_from_the_registry(monkeypatch, capsys):
    """A registered method's settings become flags with no CLI edit; another method's flag is a
    one-line usage error; `train` offers exactly the methods that have a trainer."""
    import dataclasses
    import types

    import sameface.methods as methods
    from sameface.cli import build_parser, main
    from sameface.methods.spec import MethodSpec

    @dataclasses.dataclass
    class ToyConfig:
        """Toy.

        Attributes:
            toy_strength: how strongly the toy acts.
            steps: optimisation steps.
        """

        toy_strength: float = 0.5
        steps: int = 3

    toy = types.ModuleType("toy_method")
    toy.METHOD = MethodSpec(
        "toy", "encoder", "none", ToyConfig, personalize="x:y", pipeline_cls="x:y", train="x:y"
    )
    monkeypatch.setitem(__import__("sys").modules, "toy_method", toy)
    monkeypatch.setitem(methods.METHOD_PACKAGES, "toy", "toy_method")
    parser = build_parser()
    train = parser.parse_args(
        ["train", "toy", "--data", "d", "--base", "b", "--out", "o", "--toy-strength", "2"]
    )
    assert train.toy_strength == 2 and train.method == "toy"
    with pytest.raises(SystemExit):
        parser.parse_args(
            ["train", "textual-inversion", "--data", "d", "--base", "b", "--out", "o"]
        )
    with pytest.raises(SystemExit):
        parser.parse_args(["personalize", "--help"])
    assert "--toy-strength" in capsys.readouterr().out
    code = main(
        ["personalize", "--method", "textual-inversion", "--face", "x.jpg", "--base", "b",
         "--out", "o", "--toy-strength", "1"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "--toy-strength is not a setting of textual-inversion" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_generate_refuses_options_of_other_methods(tmp_path, capsys):
    from sameface.cli import main

    (tmp_path / "art").mkdir()
    (tmp_path / "art" / "artifact.json").write_text('{"method": "textual-inversion"}')
    code = main(
        ["generate", "a photo of <id>", "--identity", str(tmp_path / "art"), "--out",
         str(tmp_path / "o"), "--id-scale", "0.5"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert (
        code == 2
        and "--id-scale is an option of ip-adapter-faceid and pulid, not of textual-inversion"
        in err
    )
    assert "Traceback" not in err
