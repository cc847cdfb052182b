"""The web UI as a person meets it: headless Chromium (the distribution's, driven by
Playwright) against `sameface ui` on the shipped world. Screenshots go to test-artifacts/ui/.

Marked `browser`: they run in CI (`.ci/run` installs Chromium); skip them locally with
`-m "not browser"`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image

from .ui_helpers import SCREENSHOTS, running_ui, world_people

pytestmark = pytest.mark.browser

CHROMIUM_FLAGS = [
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # No calls home: on a closed network each would fail (and be retried) many times.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 120_000  # a busy 2-core CI machine trains and samples slowly


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail(
            "the browser tests need the distribution's Chromium (apt-get install chromium; "
            "scripts/setup.sh installs it with the ui extra), or skip them: -m 'not browser'"
        )
    return found


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=_chromium(), headless=True, args=CHROMIUM_FLAGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """A bench run folder with a report that shows an image by a relative link."""
    run = tmp_path_factory.mktemp("runs") / "demo-run"
    (run / "images").mkdir(parents=True)
    Image.new("RGB", (32, 32), (10, 120, 200)).save(run / "images" / "cell.png")
    (run / "report.html").write_text(
        '<html><body><h1 id="title">bench report</h1><img id="cell" src="images/cell.png">'
        "</body></html>"
    )
    return run.parent


@pytest.fixture(scope="module")
def server(tmp_path_factory, reports):
    data = tmp_path_factory.mktemp("ui-browser")
    with running_ui(data, reports=[reports]) as (url, _):
        yield url, data


def _open(browser, url):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(url, wait_until="load")
    page.locator("#photos").wait_for(timeout=WAIT_MS)
    # The page asks the server for its session on load; a person is slower than that.
    page.wait_for_function(
        "document.querySelector('#session textarea, #session input')?.value.length === 32",
        timeout=WAIT_MS,
    )
    return context, page


def _shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def _text(page, elem_id: str):
    return page.locator(f"#{elem_id} textarea, #{elem_id} input").first


def _save_person(page, name: str, photos: list[Path]) -> None:
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Photos").click()
    page.locator("#photos input[type=file]").set_input_files([str(p) for p in photos])
    expect(page.locator("#photo-report")).to_contain_text("using face 0", timeout=WAIT_MS)
    _text(page, "person-name").fill(name)
    page.locator("#save-identity").click()
    expect(page.locator("#photo-report")).to_contain_text(f"Saved {name}", timeout=WAIT_MS)


def _choose(page, elem_id: str, option: str) -> None:
    box = page.locator(f"#{elem_id} input")
    box.click()
    page.locator(f"#{box.get_attribute('aria-controls')} li[aria-label='{option}']").click()


def _personalise(page, method: str, settings: dict | None = None) -> None:
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Personalise").click()
    _choose(page, "method", method)
    if settings:
        page.get_by_text("Settings").locator("visible=true").first.click()
        for key, value in settings.items():
            _text(page, f"{method}-{key}").fill(str(value))
    page.locator("#personalise").click()
    expect(page.locator("#personalise-status")).to_contain_text(
        f"is personalised with {method}", timeout=WAIT_MS
    )


def _generate(page, method: str, *, seeds: str, without: bool, expected: int) -> None:
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Generate").click()
    _choose(page, "g-method", method)
    _text(page, "steps").fill("4")
    _text(page, "seeds").fill(seeds)
    if without:
        page.locator("#without input").check()
    page.locator("#generate").click()
    expect(page.locator("#generate-status")).to_contain_text(
        f"{expected} image(s)", timeout=WAIT_MS
    )
    expect(page.locator("#gallery img")).to_have_count(expected, timeout=WAIT_MS)


def test_photos_to_images_and_back_to_nothing(browser, server):
    from playwright.sync_api import expect

    url, data = server
    context, page = _open(browser, url)
    photos = next(iter(world_people().values()))
    _save_person(page, "ada", photos)
    expect(page.locator("#faces img")).to_have_count(len(photos))  # each photo, faces boxed
    _shot(page, "1-photos")

    _personalise(page, "textual-inversion", {"steps": 3})
    _personalise(page, "pulid")  # an encoder method: its trained weights are picked for it
    _shot(page, "2-personalise")
    _generate(page, "textual-inversion", seeds="0, 1", without=True, expected=4)
    expect(page.locator("#gallery")).to_contain_text("without the person")
    _shot(page, "3-generate")

    page.get_by_role("tab", name="Identities").click()
    expect(page.locator("#people")).to_contain_text("pulid, textual-inversion")
    _choose(page, "i-method", "textual-inversion")
    page.locator("#export").click()
    expect(page.locator("#identities-status")).to_contain_text("Artifact of ada")
    _shot(page, "4-identities")
    page.locator("#delete").click()
    expect(page.locator("#identities-status")).to_contain_text("tick the box")
    page.locator("#confirm input").check()
    page.locator("#delete").click()
    expect(page.locator("#identities-status")).to_contain_text("Deleted ada", timeout=WAIT_MS)
    expect(page.locator("#people")).not_to_contain_text("ada")
    _shot(page, "5-deleted")
    session = _text(page, "session").input_value()
    left = [p for p in (data / "sessions" / session).rglob("*") if p.is_file()]
    assert left == []  # identity, artifacts, checkpoints, images, exports: all gone
    context.close()


def test_bad_uploads_show_a_readable_message(browser, server, tmp_path):
    from playwright.sync_api import expect

    context, page = _open(browser, server[0])
    fake = tmp_path / "holiday.png"
    fake.write_text("this is not a picture")
    page.locator("#photos input[type=file]").set_input_files([str(fake)])
    expect(page.locator("#photo-report")).to_contain_text(
        "holiday.png: not an image this tool can read", timeout=WAIT_MS
    )
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    page.locator("#photos input[type=file]").set_input_files([str(text)])
    expect(page.get_by_text("Invalid file type: notes.txt")).to_be_visible(timeout=WAIT_MS)
    wall = tmp_path / "wall.png"
    Image.new("RGB", (64, 64), (200, 200, 200)).save(wall)
    page.locator("#photos input[type=file]").set_input_files([str(wall)])
    expect(page.locator("#photo-report")).to_contain_text(
        "wall.png: no face found", timeout=WAIT_MS
    )
    expect(page.locator("#photo-report")).not_to_contain_text(str(server[1]))  # no server paths
    _text(page, "person-name").fill("nobody")
    page.locator("#save-identity").click()
    expect(page.locator("#photo-report")).to_contain_text("no face", timeout=WAIT_MS)
    _shot(page, "bad-upload")
    assert "Traceback" not in page.content()
    context.close()


def test_cancel_keeps_the_checkpoint_and_personalise_resumes(browser, server):
    from playwright.sync_api import expect

    context, page = _open(browser, server[0])
    _save_person(page, "cy", list(world_people().values())[1])
    page.get_by_role("tab", name="Personalise").click()
    _choose(page, "method", "textual-inversion")
    page.get_by_text("Settings").locator("visible=true").first.click()
    _text(page, "textual-inversion-steps").fill("100000")
    _text(page, "textual-inversion-checkpoint_every").fill("0")
    page.locator("#personalise").click()
    expect(page.locator("#personalise-status")).to_contain_text("step", timeout=WAIT_MS)  # progress
    page.locator("#cancel").click()
    expect(page.locator("#cancel-status")).to_contain_text("Stopping after this step")
    expect(page.locator("#personalise-status")).to_contain_text(
        "the checkpoint is kept: personalising again resumes", timeout=WAIT_MS
    )
    expect(page.locator("#personalise-status")).not_to_contain_text(str(server[1]))
    _shot(page, "cancelled")
    session = _text(page, "session").input_value()
    art = server[1] / "sessions" / session / "people" / "cy" / "textual-inversion"
    assert any(art.glob("**/checkpoint-*"))  # kept: running again resumes
    context.close()


def test_two_sessions_generate_at_once_and_both_finish(browser, server):
    photos = list(world_people().values())
    pages = []
    for i in range(2):
        context, page = _open(browser, server[0])
        _save_person(page, f"p{i}", photos[2 + i])
        _personalise(page, "pulid")
        pages.append((context, page))
    # Both click Generate before either finishes; the queue runs them in turn.
    for _, page in pages:
        page.get_by_role("tab", name="Generate").click()
        _text(page, "steps").fill("20")
        _text(page, "seeds").fill("0, 1, 2")
    for _, page in pages:
        page.locator("#generate").click()
    from playwright.sync_api import expect

    for _, page in pages:
        expect(page.locator("#generate-status")).to_contain_text("3 image(s)", timeout=WAIT_MS)
        expect(page.locator("#gallery img")).to_have_count(3)
    sessions = {_text(page, "session").input_value() for _, page in pages}
    assert len(sessions) == 2  # each browser its own session folder
    for context, _ in pages:
        context.close()


def test_a_bench_report_opens_inside_the_ui(browser, server):
    from playwright.sync_api import expect

    context, page = _open(browser, server[0])
    page.get_by_role("tab", name="Reports").click()
    frame = page.frame_locator("#report-frame iframe")
    expect(frame.locator("#title")).to_have_text("bench report", timeout=WAIT_MS)
    width = frame.locator("#cell").evaluate("img => img.naturalWidth")
    assert width == 32  # the report's relative image links are served too
    _shot(page, "report")
    context.close()


@pytest.mark.parametrize("width", [1280, 1366])
def test_a_report_leads_with_the_pictures_and_fits_a_laptop(browser, tmp_path, width):
    """`make demo`'s report and every bench report: the image grid, then one line per
    method, then the tables and the protocol; nothing scrolls sideways."""
    from sameface.eval.report import write_report

    from .test_eval_report import _make_run

    methods = ["known-by-name", "copy-reference", "dreamidentity", "feedface", "magicapture",
               "pulid", "textual-inversion"]  # fmt: skip
    prompts = [f"a close-up photo of <id> wearing glasses and a hat, prompt {i}, "
               "striped blue background, oil painting in the style of an old master"
               for i in range(8)]  # fmt: skip
    run = _make_run(tmp_path, truncated=False, methods=methods, prompts=prompts, context=True)
    _, html_path = write_report(run)
    page = browser.new_page(viewport={"width": width, "height": 800})
    page.goto(html_path.as_uri())
    wide, window = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert wide <= window  # nothing scrolls sideways
    headings = page.locator("h2").all_inner_texts()
    assert headings[:2] == ["Images", "At a glance"] and headings[-1] == "Protocol"
    grid_top = page.locator("img").first.bounding_box()["y"]
    assert grid_top < 800  # the pictures start on the first screen
    glance = page.locator("h2:text('At a glance') + p + table tbody tr")
    assert glance.count() == len(methods) - 1  # one line per method (known-by-name left out)
    _shot(page, f"report-{width}")
    page.close()
