"""Licences of the models sameface runs (`sameface.licenses`): looked up by name, carried by
method configs and trained folders, listed by `sameface models`, shown in the UI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sameface.cli import main
from sameface.licenses import KNOWN, base_license, config_licenses, license_of, license_text
from sameface.methods import get_method

SHIPPED = Path(__file__).resolve().parents[1] / "src" / "sameface" / "world" / "shipped"


@pytest.mark.parametrize(
    ("model", "key"),
    [
        ("sface", "sface"),
        ("insightface", "insightface"),
        ("/home/me/.insightface/models/antelopev2", "insightface"),
        ("buffalo_l", "insightface"),
        ("openai/clip-vit-large-patch14-336", "openai-clip"),
        ("/weights/EVA02-CLIP-L-14-336.safetensors", "eva02-clip"),
        ("/weights/pulid_v1.1.safetensors", "pulid"),
        ("ip-adapter-faceid_sd15.bin", "ip-adapter-faceid"),
        ("world-judge", "world"),
        ("tiny:sdxl", "tiny"),
        ("stabilityai/stable-diffusion-xl-base-1.0", "sdxl"),
        ("runwayml/stable-diffusion-v1-5", "sd1"),
    ],
)
def test_models_are_looked_up_by_name_id_or_path(model, key):
    assert license_of(model) is KNOWN[key]


def test_non_commercial_terms_say_so_and_unknown_models_say_unknown():
    assert not license_of("insightface").commercial
    assert "non-commercial" in license_text("antelopev2")
    assert license_of("sface").commercial and license_text("sface") == "Apache-2.0"
    assert license_of("/models/my-own-net") is None
    assert license_text("/models/my-own-net").startswith("unknown")
    # A base model is known by its official name only: a fine-tune has terms of its own.
    assert base_license("/models/my-sdxl-finetune") is None
    assert base_license("stabilityai/sdxl-turbo").commercial is False
    hub = "/cache/hub/models--stabilityai--stable-diffusion-xl-base-1.0/snapshots/abc"
    assert base_license(hub) is KNOWN["sdxl"]
    assert base_license(SHIPPED / "base") is KNOWN["world"]
    assert license_of("/models/ip-adapter/faceid_sd15.bin").commercial is False
    assert license_of("parsing_bisenet.pth").commercial is False  # CelebAMask-HQ weights


def test_configs_carry_the_licences_of_the_models_they_pick(tmp_path):
    pulid = get_method("pulid").config_cls
    out = config_licenses(pulid(recognizer="insightface"))
    assert out["recognizer"]["license"]["commercial"] is False
    assert out["clip_vision"]["model"] == "openai/clip-vit-large-patch14-336"
    # Trained weights name what they were trained with, and that is what runs.
    shipped = config_licenses(pulid(adapter=str(SHIPPED / "pulid")))
    assert shipped["recognizer"]["model"] == "world"
    assert Path(shipped["clip_vision"]["model"]) == (SHIPPED / "clip").resolve()
    assert {e["license"]["name"] for e in shipped.values()} == {"Apache-2.0"}
    # An imported release records its terms.
    (tmp_path / "pulid.json").write_text(json.dumps({"license": "pulid"}))
    imported = config_licenses(pulid(adapter=str(tmp_path)))
    assert imported["adapter"]["license"]["commercial"] is False
    assert config_licenses(get_method("textual-inversion").config_cls()) == {}
    # Weights that record only their config: the config's backbone is what encoding reads.
    trained = tmp_path / "di"
    trained.mkdir()
    meta = {"method": "dreamidentity", "config": {"backbone": "vit:/m/glint360k_vit_b.pt"}}
    (trained / "dreamidentity.json").write_text(json.dumps(meta))
    di = get_method("dreamidentity").config_cls(adapter=str(trained))
    assert config_licenses(di)["backbone"]["license"]["commercial"] is False
    # Weights trained here are not a release because their folder's name recalls one.
    faceid = get_method("ip-adapter-faceid").config_cls
    own = tmp_path / "my-faceid"
    own.mkdir()
    (own / "ip_adapter_faceid.json").write_text(json.dumps({"trained": {}, "config": {}}))
    assert (
        config_licenses(faceid(adapter=str(own), recognizer="sface"))["adapter"]["license"] is None
    )
    (own / "ip_adapter_faceid.json").write_text(json.dumps({"license": "ip-adapter-faceid"}))
    release = config_licenses(faceid(adapter=str(own)))
    assert release["adapter"]["license"]["commercial"] is False


def test_cli_models_lists_each_model_with_its_licence(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if "insightface" in x)
    assert "NON-COMMERCIAL" in line
    assert "NON-COMMERCIAL" not in next(x for x in out.splitlines() if " sface " in x)
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["model"] for r in rows} >= {"sface", "yunet", "insightface", "world"}
    assert all(r["license"] is not None for r in rows)


def test_the_ui_shows_the_licences_of_a_methods_models():
    from sameface.ui.backend import Backend
    from sameface.ui.forms import form_fields

    line = Backend().licenses("pulid")  # the shipped world
    assert line.startswith("Licences") and "trained weights: Apache-2.0" in line
    fields = {f.name: f for f in form_fields(get_method("pulid").config_cls, {})}
    assert fields["recognizer"].info.endswith("licence of sface: Apache-2.0")
