"""Issue #12, loading half: every file or folder sameface is given is untrusted.

Each case runs the CLI on a damaged copy and checks the exit code, one `error:` line naming
what is wrong, no traceback, and that nothing outside the output folder changed.
"""

from __future__ import annotations

import json
import shutil
import struct

import numpy as np
import pytest
import torch

from sameface.cli import main
from tests.hardening_helpers import CRAFTED, join, run_refused, split

PROMPT = "a photo of <id>"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory, obama):
    """A tiny SD1 base folder and a one-step textual-inversion artifact trained on it."""
    from sameface.models import save_base_model, tiny_base_model

    root = tmp_path_factory.mktemp("pristine")
    base = save_base_model(tiny_base_model("sd1"), root / "base")
    code = main(
        [
            "personalize",
            "--face",
            str(obama),
            "--base",
            str(base),
            "--out",
            str(root / "art"),
            "--steps",
            "1",
            "--init",
            "face",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    return root


@pytest.fixture
def work(tmp_path, pristine):
    """A private copy of the pristine folders; the artifact points at this copy's base."""
    shutil.copytree(pristine / "base", tmp_path / "base")
    shutil.copytree(pristine / "art", tmp_path / "art")
    meta_path = tmp_path / "art" / "artifact.json"
    meta = json.loads(meta_path.read_text())
    meta["base"] = str(tmp_path / "base")
    meta_path.write_text(json.dumps(meta))
    return tmp_path


def generate(work, *extra):
    return [
        "generate",
        "--identity",
        work / "art",
        PROMPT,
        "-n",
        "1",
        "--steps",
        "1",
        "--out",
        work / "out",
        "--device",
        "cpu",
        *extra,
    ]


# ---- class 2: crafted safetensors -------------------------------------------------------


@pytest.mark.parametrize("craft", sorted(CRAFTED))
def test_crafted_embeddings_file(capsys, work, craft):
    target = work / "art" / "learned_embeds.safetensors"
    CRAFTED[craft](target)
    run_refused(capsys, work, work / "out", generate(work), 1, str(target))


@pytest.mark.parametrize("craft", sorted(CRAFTED))
def test_crafted_identity_file(capsys, work, craft):
    target = work / "art" / "identity" / "identity.safetensors"
    CRAFTED[craft](target)
    argv = ["identity", "show", work / "art" / "identity"]
    run_refused(capsys, work, work / "out", argv, 1, str(target))


@pytest.mark.parametrize("craft", sorted(CRAFTED))
def test_crafted_base_unet_weights(capsys, work, craft):
    (target,) = (work / "base" / "unet").glob("*.safetensors")
    CRAFTED[craft](target)
    run_refused(capsys, work, work / "out", generate(work, "--base", work / "base"), 1, str(target))


@pytest.mark.parametrize(
    "craft", ["header_len_huge", "header_not_json", "offsets_overlap", "truncated"]
)
@pytest.mark.parametrize("component", ["vae", "text_encoder"])
def test_crafted_base_other_components(capsys, work, craft, component):
    (target,) = (work / "base" / component).glob("*.safetensors")
    CRAFTED[craft](target)
    run_refused(capsys, work, work / "out", generate(work, "--base", work / "base"), 1, str(target))


# ---- class 1: unpickling through diffusers ----------------------------------------------


@pytest.mark.parametrize(
    "component,cls",
    [
        ("scheduler", ["diffusers", "UNet2DConditionModel"]),
        ("scheduler", ["diffusers", "AutoencoderKL"]),
        ("scheduler", ["diffusers", "DiffusionPipeline"]),
        ("scheduler", ["diffusers", "NoSuchScheduler"]),
        ("scheduler", ["diffusers", "__class__"]),
        ("scheduler", ["transformers", 42]),
        ("unet", ["diffusers", "UNet2DModel"]),
        ("unet", ["diffusers", "AutoencoderKL"]),
        ("vae", ["diffusers", "AutoencoderTiny"]),
        ("vae", ["diffusers", "UNet2DConditionModel"]),
        ("text_encoder", ["transformers", "BertModel"]),
        ("text_encoder", ["transformers", "AutoModel"]),
        ("tokenizer", ["transformers", "AutoTokenizer"]),
        ("tokenizer", ["transformers", "GPT2Tokenizer"]),
    ],
)
def test_model_index_class_must_fit_component(capsys, work, component, cls):
    index_path = work / "base" / "model_index.json"
    index = json.loads(index_path.read_text())
    index[component] = cls
    index_path.write_text(json.dumps(index))
    run_refused(
        capsys,
        work,
        work / "out",
        generate(work, "--base", work / "base"),
        1,
        "model_index.json",
        component,
    )


@pytest.mark.parametrize("component", ["unet", "vae", "text_encoder"])
@pytest.mark.parametrize("suffix", [".bin", ".pt", ".ckpt"])
def test_pickled_weights_are_refused(capsys, work, component, suffix):
    folder = work / "base" / component
    for p in folder.glob("*.safetensors"):
        p.unlink()
    marker = work / "ran.txt"  # a pickle that would write this file if it were ever loaded
    payload = f"import pathlib; pathlib.Path({str(marker)!r}).write_text('x')"
    (folder / f"diffusion_pytorch_model{suffix}").write_bytes(payload.encode())
    run_refused(
        capsys,
        work,
        work / "out",
        generate(work, "--base", work / "base"),
        1,
        "pickle",
        component,
        one_line=False,  # the missing-files message goes on to say how to get safetensors
    )
    assert not marker.exists()


def test_scheduler_folder_pickle_never_loaded(capsys, work):
    """The reported case: a non-scheduler class for the scheduler next to a `.bin`."""
    index_path = work / "base" / "model_index.json"
    index = json.loads(index_path.read_text())
    index["scheduler"] = ["diffusers", "UNet2DConditionModel"]
    index_path.write_text(json.dumps(index))
    (work / "base" / "scheduler" / "diffusion_pytorch_model.bin").write_bytes(b"\x80\x04pickle")
    run_refused(capsys, work, work / "out", generate(work, "--base", work / "base"), 1, "scheduler")


# ---- class 5: tampered artifacts and identities ------------------------------------------


def _rewrite_tensor(path, name, fn):
    from sameface.tensorfile import read_safetensors, save_safetensors

    tensors, meta = read_safetensors(path, framework="np", finite=False, max_abs=None)
    key = name or sorted(tensors)[0]
    tensors[key] = fn(tensors[key])
    save_safetensors(tensors, path, meta)


VALUE_TAMPERS = {
    "nan": lambda a: np.full_like(a, np.nan),
    "one_nan": lambda a: np.where(np.arange(a.size).reshape(a.shape) == 0, np.nan, a).astype(
        a.dtype
    ),
    "inf": lambda a: np.full_like(a, np.inf),
    "neg_inf": lambda a: np.full_like(a, -np.inf),
    "huge": lambda a: np.full_like(a, 1e38),
    "big": lambda a: np.full_like(a, 1e7),
}


@pytest.mark.parametrize("tamper", sorted(VALUE_TAMPERS))
def test_embedding_values_refused(capsys, work, tamper):
    target = work / "art" / "learned_embeds.safetensors"
    _rewrite_tensor(target, None, VALUE_TAMPERS[tamper])
    run_refused(capsys, work, work / "out", generate(work), 1, str(target))


@pytest.mark.parametrize("tamper", sorted(VALUE_TAMPERS))
@pytest.mark.parametrize("name", ["embeddings", "embedding", "bboxes"])
def test_identity_values_refused(capsys, work, tamper, name):
    target = work / "art" / "identity" / "identity.safetensors"
    _rewrite_tensor(target, name, VALUE_TAMPERS[tamper])
    run_refused(capsys, work, work / "out", ["identity", "show", target.parent], 1, str(target))


IDENTITY_SHAPES = {
    "aligned_small": ("aligned", lambda a: a[:, :56, :56]),
    "squares_wrong_side": ("squares", lambda a: a[:, :-8, :-8]),
    "masks_extra_photo": ("masks", lambda a: np.concatenate([a, a])),
    "embeddings_wide": ("embeddings", lambda a: np.concatenate([a, a], axis=1)),
    "embedding_2d": ("embedding", lambda a: a[None]),
    "bboxes_3": ("bboxes", lambda a: a[:, :3]),
    "landmarks_4": ("landmarks", lambda a: a[:, :4]),
    "aligned_float": ("aligned", lambda a: a.astype(np.float32)),
    "embeddings_f16": ("embeddings", lambda a: a.astype(np.float16)),
    "embeddings_int": ("embeddings", lambda a: a.astype(np.int32)),
    "embeddings_not_unit": ("embeddings", lambda a: a * 3),
    "embeddings_empty": ("embeddings", lambda a: a[:0]),
}


@pytest.mark.parametrize("case", sorted(IDENTITY_SHAPES))
def test_identity_tensors_disagreeing_with_metadata(capsys, work, case):
    target = work / "art" / "identity" / "identity.safetensors"
    name, fn = IDENTITY_SHAPES[case]
    _rewrite_tensor(target, name, fn)
    run_refused(capsys, work, work / "out", ["identity", "show", target.parent], 1, str(target))


def _edit_json(path, fn):
    meta = json.loads(path.read_text())
    fn(meta)
    path.write_text(json.dumps(meta))


IDENTITY_META = {
    "format_version_99": lambda m: m.__setitem__("format_version", 99),
    "format_version_0": lambda m: m.__setitem__("format_version", 0),
    "format_version_text": lambda m: m.__setitem__("format_version", "1"),
    "format_version_bool": lambda m: m.__setitem__("format_version", True),
    "format_version_float": lambda m: m.__setitem__("format_version", 1.5),
    "photos_more": lambda m: m.__setitem__("photos", m["photos"] * 3),
    "photos_none": lambda m: m.__setitem__("photos", []),
    "photos_not_list": lambda m: m.__setitem__("photos", "many"),
    "square_size_other": lambda m: m.__setitem__("square_size", 64),
}


@pytest.mark.parametrize("case", sorted(IDENTITY_META))
def test_identity_metadata_tampered(capsys, work, case):
    folder = work / "art" / "identity"
    _edit_json(folder / "identity.json", IDENTITY_META[case])
    run_refused(capsys, work, work / "out", ["identity", "show", folder], 1, str(folder))


@pytest.mark.parametrize("missing", ["identity.safetensors", "identity.json"])
def test_identity_files_missing(capsys, work, missing):
    folder = work / "art" / "identity"
    (folder / missing).unlink()
    run_refused(capsys, work, work / "out", ["identity", "show", folder], 1, str(folder))


ARTIFACT_META = {
    "format_version_99": lambda m: m.__setitem__("format_version", 99),
    "format_version_0": lambda m: m.__setitem__("format_version", 0),
    "format_version_text": lambda m: m.__setitem__("format_version", "v1"),
    "format_version_null": lambda m: m.__setitem__("format_version", None),
}


@pytest.mark.parametrize("case", sorted(ARTIFACT_META))
def test_artifact_metadata_tampered(capsys, work, case):
    target = work / "art" / "artifact.json"
    _edit_json(target, ARTIFACT_META[case])
    run_refused(capsys, work, work / "out", generate(work), 1, str(target), "format_version")


EMBED_TENSORS = {
    "int_vectors": lambda a: a.astype(np.int32),
    "one_dim": lambda a: a.reshape(-1),
    "three_dim": lambda a: a[None],
}


@pytest.mark.parametrize("case", sorted(EMBED_TENSORS))
def test_embeddings_wrong_dtype_or_shape(capsys, work, case):
    target = work / "art" / "learned_embeds.safetensors"
    _rewrite_tensor(target, None, EMBED_TENSORS[case])
    run_refused(capsys, work, work / "out", generate(work), 1, str(target))


def test_embeddings_file_missing(capsys, work):
    (work / "art" / "learned_embeds.safetensors").unlink()
    run_refused(capsys, work, work / "out", generate(work), 1, "learned_embeds.safetensors")


# ---- class 3 and 4: bounds and options ---------------------------------------------------

BAD_GENERATE = [
    (["--height", "4096"], "height"),
    (["--width", "100000"], "width"),
    (["--height", "1032"], "height"),  # SD1: at most 1024
    (["--height", "60"], "height"),  # not a multiple of the VAE factor
    (["--width", "516"], "width"),
    (["--width", "0"], "width"),
    (["--height", "-64"], "height"),
    (["--guidance-scale", "nan"], "guidance_scale"),
    (["--guidance-scale", "inf"], "guidance_scale"),
    (["--guidance-scale=-inf"], "guidance_scale"),
    (["--guidance-scale=-1"], "guidance_scale"),
    (["--guidance-scale", "1e9"], "guidance_scale"),
    (["--id-scale", "0.5"], "id-scale"),  # textual inversion has no ID attention
    (["--steps", "5000"], "num_inference_steps"),
    (["-n", "100000"], "-n"),
]


@pytest.mark.parametrize("extra,needle", BAD_GENERATE, ids=[" ".join(e) for e, _ in BAD_GENERATE])
def test_generate_bounds(capsys, work, extra, needle):
    argv = generate(work)
    argv += extra  # later flags win in argparse
    run_refused(capsys, work, work / "out", argv, 2, needle)


def test_generate_within_bounds_still_works(capsys, work):
    code = main([str(a) for a in generate(work, "--height", "64", "--width", "64")])
    assert code == 0, capsys.readouterr().err


def test_pipeline_checks_bounds_before_allocating():
    from sameface.limits import check_generate_args

    class Base:
        family, vae_scale_factor = "sdxl", 8

    check_generate_args(
        Base(),
        prompts=["x"],
        num_inference_steps=1,
        num_images_per_prompt=1,
        guidance_scale=5.0,
        height=2048,
        width=2048,
    )
    for kw in (
        {"height": 2056},
        {"num_images_per_prompt": 65},
        {"num_images_per_prompt": 2.5},
        {"guidance_scale": float("nan")},
        {"guidance_scale": True},
        {"prompts": [["nested"]]},
        {"prompts": ["x" * 5000]},
        {"prompts": []},
        {"negative_prompt": [1]},
    ):
        args = (
            dict(
                prompts=["x"],
                num_inference_steps=1,
                num_images_per_prompt=1,
                guidance_scale=5.0,
                height=None,
                width=None,
            )
            | kw
        )
        with pytest.raises(ValueError):
            check_generate_args(Base(), **args)


SUITE_FIELDS = {
    "prompts_nested": {"prompts": [["a", ["b"]]]},
    "prompts_number": {"prompts": [5]},
    "prompts_text": {"prompts": "a photo of <id>"},
    "prompts_long": {"prompts": ["x" * 5000]},
    "prompts_many": {"prompts": ["p <id>"] * 1001},
    "seeds_float": {"seeds": [1.5]},
    "seeds_text": {"seeds": ["1"]},
    "seeds_negative": {"seeds": [-1]},
    "seeds_huge": {"seeds": [2**40]},
    "seeds_bool": {"seeds": [True]},
    "seeds_nested": {"seeds": [[1, 2]]},
    "seeds_many": {"seeds": list(range(1001))},
    "seeds_mapping": {"seeds": {"a": 1}},
    "images_per_prompt_huge": {"images_per_prompt": 10**9},
    "images_per_prompt_zero": {"images_per_prompt": 0},
    "steps_text": {"num_inference_steps": "many"},
    "steps_huge": {"num_inference_steps": 10**6},
    "resolution_huge": {"resolution": 100000},
    "resolution_odd": {"resolution": 513},
    "guidance_nan": {"guidance_scale": float("nan")},
    "guidance_text": {"guidance_scale": "high"},
    "negative_list": {"negative_prompt": ["a", "b"]},
    "name_list": {"name": ["a"]},
    "placeholder_long": {"placeholder": "<" * 100},
    "methods_list": {"methods": ["pulid"]},
    "identities_number": {"identities": 7},
    "identity_name_list": {"identities": [{"name": ["x"], "photos": ["p.png"]}]},
    "identity_photos_nested": {"identities": [{"name": "x", "photos": [["p.png"]]}]},
    "identity_not_mapping": {"identities": ["x"]},
}


@pytest.mark.parametrize("case", sorted(SUITE_FIELDS))
def test_suite_fields_type_checked(capsys, tmp_path, case):
    import yaml

    doc = {"name": "s", "prompts": ["a photo of <id>"], "seeds": [0]} | SUITE_FIELDS[case]
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump(doc))
    field = next(iter(SUITE_FIELDS[case]))
    argv = ["bench", "--suite", suite, "--base", "tiny", "--out", tmp_path / "out"]
    run_refused(capsys, tmp_path, tmp_path / "out", argv, 1, str(suite), field)


# ---- class 6: reproducible bytes ---------------------------------------------------------


def test_save_safetensors_is_byte_identical(tmp_path):
    from sameface.tensorfile import read_safetensors, save_safetensors

    tensors = {"b": torch.arange(6.0).reshape(2, 3), "a": torch.ones(4, dtype=torch.float16)}
    metas = [{f"k{i}": str(i) for i in order} for order in (range(20), reversed(range(20)))]
    blobs = []
    for i, meta in enumerate(metas):
        save_safetensors(
            dict(reversed(tensors.items())) if i else tensors, tmp_path / f"{i}.st", meta
        )
        blobs.append((tmp_path / f"{i}.st").read_bytes())
    assert blobs[0] == blobs[1]
    back, meta = read_safetensors(tmp_path / "0.st")
    assert meta == metas[0] and torch.equal(back["b"], tensors["b"])
    n, header, _ = split(tmp_path / "0.st")
    assert n % 8 == 0 and list(header) == sorted(header)


def test_artifacts_are_byte_identical_when_saved_twice(tmp_path, work):
    from sameface.identity import Identity
    from sameface.methods.textual_inversion.artifact import load_embeddings, save_embeddings

    vectors, meta = load_embeddings(work / "art")
    for name in ("one", "two"):
        save_embeddings(
            tmp_path / name,
            meta.get("family", "sd1"),
            meta.get("placeholder", "<id>"),
            vectors,
            meta,
        )
    assert (tmp_path / "one" / "learned_embeds.safetensors").read_bytes() == (
        tmp_path / "two" / "learned_embeds.safetensors"
    ).read_bytes()
    ident = Identity.load(work / "art" / "identity")
    ident.save(tmp_path / "i1", save_crops=False)
    ident.save(tmp_path / "i2", save_crops=False)
    assert (tmp_path / "i1" / "identity.safetensors").read_bytes() == (
        tmp_path / "i2" / "identity.safetensors"
    ).read_bytes()


def test_check_header_accepts_what_the_library_writes(tmp_path):
    from safetensors.torch import save_file

    from sameface.tensorfile import check_header

    save_file({"x": torch.zeros(3), "y": torch.zeros(2, 2, dtype=torch.int64)}, str(tmp_path / "a"))
    assert set(check_header(tmp_path / "a")) >= {"x", "y"}
    raw = join({"x": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}}, b"")
    (tmp_path / "b").write_bytes(raw)
    assert "x" in check_header(tmp_path / "b")
    assert struct.unpack("<Q", raw[:8])[0] == len(raw) - 8
