"""Serving the UI safely: loopback by default, auth files, the CLI's refusals."""

from __future__ import annotations

import pytest

from sameface.errors import UsageError
from sameface.ui.serve import ServeOptions, check_host, read_auth


def test_loopback_needs_nothing_and_other_addresses_need_a_flag():
    assert check_host(ServeOptions()) is None
    assert check_host(ServeOptions(host="::1")) is None
    with pytest.raises(UsageError, match="--allow-remote"):
        check_host(ServeOptions(host="0.0.0.0"))
    warning = check_host(ServeOptions(host="0.0.0.0", allow_remote=True))
    assert "WITHOUT authentication" in warning
    warning = check_host(ServeOptions(host="10.0.0.2", allow_remote=True, auth_file="f"))
    assert "with basic auth" in warning
    with pytest.raises(UsageError, match="--share opens a public link"):
        check_host(ServeOptions(share=True))
    assert "public share link" in check_host(ServeOptions(share=True, allow_remote=True))


def test_auth_files(tmp_path):
    f = tmp_path / "auth"
    f.write_text("# users\nada:s3cret:with:colons\n\nbob:pw\n")
    assert read_auth(f) == [("ada", "s3cret:with:colons"), ("bob", "pw")]
    assert read_auth(None) is None
    f.write_text("ada\n")
    with pytest.raises(UsageError, match=r"auth:1: expected user:password"):
        read_auth(f)
    f.write_text("# nobody\n")
    with pytest.raises(UsageError, match="no user:password"):
        read_auth(f)
    with pytest.raises(UsageError, match="cannot read"):
        read_auth(tmp_path / "missing")


def test_the_cli_refuses_a_public_address_before_loading_anything(capsys):
    from sameface.cli import main

    assert main(["ui", "--host", "0.0.0.0"]) == 2
    assert "--allow-remote" in capsys.readouterr().err


def test_basic_auth_guards_the_page_and_the_api(tmp_path):
    import httpx

    from .ui_helpers import running_ui

    auth = tmp_path / "auth"
    auth.write_text("ada:pw\n")
    with running_ui(tmp_path / "data", options={"auth_file": str(auth)}) as (url, _):
        assert httpx.get(f"{url}/gradio_api/info").status_code == 401
        assert (
            httpx.post(f"{url}/login", data={"username": "ada", "password": "no"}).status_code
            == 400
        )
        with httpx.Client() as client:
            ok = client.post(f"{url}/login", data={"username": "ada", "password": "pw"})
            assert ok.status_code == 200
            assert client.get(f"{url}/gradio_api/info").status_code == 200
