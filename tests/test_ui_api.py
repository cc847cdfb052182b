"""The UI's HTTP API through `gradio_client`, as docs/ui.md shows it: photos -> identity,
personalise (an optimisation and an encoder method), generate, list, delete; errors as lines."""

from __future__ import annotations

import pytest
from gradio_client import Client, handle_file

from .ui_helpers import running_ui, world_people

SESSION = "c" * 32


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("ui-data")
    with running_ui(data) as (url, _):
        yield url, data


def test_personalise_and_generate_through_the_api(server):
    url, data = server
    client = Client(url, verbose=False)
    photos = next(iter(world_people().values()))
    found = client.predict(
        SESSION, "ada", [handle_file(str(p)) for p in photos], None, api_name="/create_identity"
    )
    assert found["photos"] == len(photos) and found["outliers"] == []
    assert "ada" in client.predict(
        SESSION, "ada", "textual-inversion", {"steps": 3}, "", api_name="/personalize"
    )
    client.predict(SESSION, "ada", "pulid", {}, "", api_name="/personalize")
    images = client.predict(
        SESSION,
        "ada",
        "pulid",
        ["a photo of <id>", "a sketch of <id>"],
        [0],
        "",
        4,
        7.5,
        {"id_scale": 0.8},
        True,
        api_name="/generate",
    )
    assert len(images) == 4 and all(str(p).endswith(".png") for p in images)
    listed = client.predict(SESSION, api_name="/people")
    assert listed == [
        {
            "name": "ada",
            "photos": len(photos),
            "methods": ["pulid", "textual-inversion"],
            "images": 4,
        }
    ]
    assert client.predict("d" * 32, api_name="/people") == []  # another session sees nothing

    removed = client.predict(SESSION, "ada", api_name="/delete_person")
    assert removed > 4
    assert client.predict(SESSION, api_name="/people") == []
    leftover = [p for p in (data / "sessions" / SESSION).rglob("*") if p.is_file()]
    cached = [p for p in (data / "cache").rglob("*.png")]
    assert leftover == [] and cached == []  # the served copies went too


def test_api_errors_are_one_readable_line(server):
    from gradio_client.exceptions import AppError

    client = Client(server[0], verbose=False)
    with pytest.raises(AppError, match="no person named nobody"):
        client.predict(
            SESSION, "nobody", "pulid", ["a <id>"], [0], "", 2, 7.5, {}, False, api_name="/generate"
        )
    with pytest.raises(AppError, match="a name is 1–48"):
        client.predict(SESSION, "../x", "pulid", {}, "", api_name="/personalize")
    with pytest.raises(AppError, match="not a valid session"):
        client.predict("../../etc", api_name="/people")
    assert client.predict(SESSION, api_name="/cancel") == "nothing is running"


def test_a_client_cannot_name_the_servers_files(server, tmp_path):
    """The API takes uploads by path; a raw client naming another server file gets a refusal,
    and the file stays where it is."""
    import json
    import shutil

    import httpx

    url, _ = server
    precious = tmp_path / "precious.png"
    shutil.copy(next(iter(world_people().values()))[0], precious)
    photo = {"path": str(precious), "meta": {"_type": "gradio.FileData"}}
    for files in ([photo], [{"path": str(precious)}]):
        start = httpx.post(
            f"{url}/gradio_api/call/create_identity",
            json={"data": [SESSION, "eve", files, None]},
        )
        if start.status_code != 200:  # refused before the handler
            continue
        event = start.json()["event_id"]
        stream = httpx.get(f"{url}/gradio_api/call/create_identity/{event}", timeout=60).text
        assert "event: error" in stream
        assert str(precious.parent) not in json.dumps(stream)  # no server paths echoed back
    assert precious.is_file()
    client = Client(url, verbose=False)
    assert client.predict(SESSION, api_name="/people") == []
