"""The dashboard in a real browser: Debian's headless Chromium driven by Playwright.

One server (the real app under uvicorn, its worker on) and one browser serve every test here;
a job trained by the CLI at the start (the embedded model, 2 steps) is on every page. Each
page is screenshot at 1280x800 and at phone width into test-artifacts/dashboard/ (or
$TUNELAB_TEST_ARTIFACTS), and every test fails on a console error or an uncaught exception.

Chromium is Debian's package (`make test` installs it); Playwright's own browser download is
never used. Without it these tests fail, saying how to install it: they never skip.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from faultproxy import serve_in_thread
from tunelab.cli import main
from tunelab.registry import JobRecord, open_registry
from tunelab.server import ServeSettings, create_app

CHROMIUM = Path(os.environ.get("TUNELAB_CHROMIUM", "/usr/bin/chromium"))
# As Debian's chromium runs here: as root, on a closed network, no first-run work.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(os.environ.get("TUNELAB_TEST_ARTIFACTS")
                 or Path(__file__).resolve().parents[1] / "test-artifacts" / "dashboard")
SIZES = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}
HOSTILE = "<script>alert('x')</script>"
KEY = "browser-key-91c2"
WAIT_MS = 120_000  # a model load on a busy 2-core box


def dialogues(path: Path, count: int, hostile_at: int) -> Path:
    rows = []
    for n in range(count):
        reply = f"{HOSTILE} is text here" if n == hostile_at else f"Start with one step, {n}."
        rows.append(json.dumps({"messages": [
            {"role": "system", "content": "You are Natasha, a warm coach."},
            {"role": "user", "content": f"How do I begin project {n}?"},
            {"role": "assistant", "content": reply}]}))
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tunelab_home(tmp_path_factory: pytest.TempPathFactory, shared_cache: Path) -> Iterator[Path]:
    """One home for the module: the server thread reads the environment as it works, so it
    must not change between these tests (conftest's home is per test)."""
    home = tmp_path_factory.mktemp("dashboard") / "home"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TUNELAB_HOME", str(home))
        patch.setenv("TUNELAB_CACHE_DIR", str(shared_cache))
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("TRANSFORMERS_OFFLINE", "1")
        patch.setenv("TUNELAB_TODAY", "2026-12-02")
        for key in ("OPENAI_API_KEY", "MOONSHOT_API_KEY", "KIMI_API_KEY"):
            patch.delenv(key, raising=False)
        yield home


@pytest.fixture(scope="module")
def files(tunelab_home: Path) -> dict[str, Path]:
    folder = tunelab_home.parent
    config = folder / "tiny.yaml"
    # No sample answers: they cost a second model load (test_dashboard.py shows samples).
    config.write_text("max_samples: 0\nsave_every: 1\neval_every: 1\n", encoding="utf-8")
    return {"train": dialogues(folder / "train.jsonl", 12, hostile_at=0),
            "valid": dialogues(folder / "valid.jsonl", 4, hostile_at=0), "config": config}


@pytest.fixture(scope="module")
def cli_job(files: dict[str, Path]) -> str:
    """A job made by `tunelab train`, as a user would: 2 steps on the embedded model (the
    first training in a process pays a one-off warm-up of about 20 s here, per new shape)."""
    out = files["train"].parent / "train.json"
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main(["train", str(files["train"]), "--validation-file", str(files["valid"]),
                     "--config", str(files["config"]),
                     "--max-steps", "2", "--max-length", "64", "--batch-size", "2",
                     "--yes", "--json"])
    assert code == 0, buffer.getvalue()[-2000:]
    out.write_text(buffer.getvalue(), encoding="utf-8")
    return json.loads(buffer.getvalue().strip().splitlines()[-1])["id"]


@pytest.fixture(scope="module")
def hostile_job(tunelab_home: Path) -> str:
    """An imported-looking cloud job whose suffix and model name hold a script tag."""
    now = time.time()
    with open_registry() as registry:
        registry.create_job(JobRecord(
            id="ftjob-hostile", provider="openai", status="succeeded", created_at=now,
            updated_at=now, base_model="gpt-4o-mini-2024-07-18", suffix=HOSTILE,
            fine_tuned_model=f"ft:gpt-4o-mini-2024-07-18:{HOSTILE}"))
    return "ftjob-hostile"


@pytest.fixture(scope="module")
def site(cli_job: str, hostile_job: str) -> Iterator[str]:
    with serve_in_thread(create_app(ServeSettings(max_steps=40, max_length=64))) as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: the dashboard's browser tests need Debian's "
                    "Chromium. Install it with `apt-get install chromium` (make test does).")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the playwright package is missing: `pip install -e '.[dev]'` (make "
                    "test does; never `playwright install`, Debian's chromium is used)")
    with sync_playwright() as playwright:
        # launch() gives every run a fresh temporary profile (user data dir) of its own.
        found = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
                                           headless=True)
        yield found
        found.close()


class Tab:
    """A page at one size that records console errors and uncaught exceptions."""

    def __init__(self, browser: object, base: str, size: str = "desktop") -> None:
        self.base = base
        self.context = browser.new_context(viewport=SIZES[size])  # type: ignore[attr-defined]
        self.problems: list[str] = []
        self.dialogs: list[str] = []
        self.page = self.new_page()

    def new_page(self) -> object:
        page = self.context.new_page()
        page.on("console", lambda msg: msg.type == "error"
                and self.problems.append(f"console: {msg.text}"))
        page.on("pageerror", lambda error: self.problems.append(f"pageerror: {error}"))
        page.on("dialog", self._dialog)
        return page

    def _dialog(self, dialog: object) -> None:
        self.dialogs.append(dialog.message)  # type: ignore[attr-defined]
        dialog.dismiss()  # type: ignore[attr-defined]

    def go(self, path: str) -> object:
        return self.page.goto(self.base + path)

    def shoot(self, name: str) -> None:
        """Both sizes of the page now shown."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        for size, viewport in SIZES.items():
            self.page.set_viewport_size(viewport)
            target = ARTIFACTS / f"{name}-{size}.png"
            self.page.screenshot(path=str(target), full_page=True)
            assert target.stat().st_size > 5_000, target  # a page, not a blank
        self.page.set_viewport_size(SIZES["desktop"])

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def tab(browser: object, site: str) -> Iterator[Tab]:
    opened = Tab(browser, site)
    yield opened
    problems, dialogs = opened.problems, opened.dialogs
    opened.close()
    assert problems == [], problems
    assert dialogs == [], f"a script ran: {dialogs}"


def test_the_jobs_page_shows_the_cli_job_and_names_as_text(tab: Tab, cli_job: str,
                                                            hostile_job: str) -> None:
    tab.go("/")
    row = tab.page.locator(f'tr[data-job="{cli_job}"]')
    assert row.locator(".status").inner_text() == "succeeded"
    assert cli_job in row.inner_text()  # the whole id, never cut
    hostile = tab.page.locator(f'tr[data-job="{hostile_job}"] .name').inner_text()
    assert HOSTILE in hostile  # shown as the text it is, not run
    assert "days left" in tab.page.locator(f'tr[data-job="{hostile_job}"]').inner_text()
    tab.shoot("jobs")
    tab.page.select_option('select[name="provider"]', "openai")
    tab.page.wait_for_url("**/?provider=openai**")
    assert tab.page.locator(f'tr[data-job="{cli_job}"]').count() == 0


def test_a_job_made_while_the_jobs_page_is_open_appears_without_a_reload(
        tab: Tab, cli_job: str) -> None:
    tab.go("/?provider=local")
    tab.page.evaluate("() => { window.notReloaded = true; }")  # gone if the page reloads
    assert tab.page.locator('tr[data-job="ftjob-live-row"]').count() == 0
    now = time.time()
    with open_registry() as registry:
        for job_id, provider in (("ftjob-live-cloud", "openai"), ("ftjob-live-row", "local")):
            registry.create_job(JobRecord(id=job_id, provider=provider, status="queued",
                                          created_at=now, updated_at=now, suffix=HOSTILE))
    row = tab.page.locator('tr[data-job="ftjob-live-row"]')
    row.wait_for(timeout=WAIT_MS)
    assert tab.page.evaluate("() => window.notReloaded") is True
    assert row.locator(".status").inner_text() == "queued"
    assert HOSTILE in row.locator(".name").inner_text()  # text, not markup
    assert tab.page.locator('tr[data-job="ftjob-live-cloud"]').count() == 0  # filtered out
    # The newest first, above the CLI job.
    assert tab.page.locator("#jobs tbody tr").first.get_attribute("data-job") == "ftjob-live-row"


def test_the_cli_job_page_shows_its_curves_live_from_the_registry(tab: Tab,
                                                                  cli_job: str) -> None:
    tab.go(f"/jobs/{cli_job}")
    tab.page.wait_for_function(
        "() => Number(document.getElementById('loss-chart').dataset.points) >= 4")
    assert tab.page.locator("#loss-chart polyline").count() == 2  # train and validation
    assert tab.page.locator("#events tbody tr").count() >= 5
    assert tab.page.locator("#checkpoints tbody tr").count() >= 1
    tab.shoot("job")


def test_a_dpo_jobs_page_draws_its_reward_accuracy(tab: Tab) -> None:
    """A preference-tuned job's accuracy chart is its reward accuracy, named so."""
    now = time.time()
    with open_registry() as registry:
        registry.create_job(JobRecord(id="ftjob-dpo-curves", provider="local",
                                      status="succeeded", created_at=now, updated_at=now))
        for step, accuracy in ((1, 0.0), (2, 0.5), (3, 0.75)):
            registry.add_metrics("ftjob-dpo-curves", step, {
                "train_loss": 0.69 - step / 10, "train_reward_accuracy": accuracy,
                "train_reward_margin": step / 10, "valid_reward_accuracy": accuracy})
    tab.go("/jobs/ftjob-dpo-curves")
    tab.page.wait_for_function(
        "() => Number(document.getElementById('accuracy-chart').dataset.points) >= 6")
    assert tab.page.locator("#accuracy-chart polyline").count() == 2  # train and validation
    caption = tab.page.locator("#accuracy-chart + figcaption").inner_text()
    assert "train reward accuracy" in caption and "token" not in caption


def test_a_run_started_from_the_page_trains_with_a_live_curve(tab: Tab, files: dict) -> None:
    tab.go("/new")
    with tab.page.expect_navigation():
        tab.page.set_input_files("#upload-file", str(files["train"]))
    assert tab.page.locator("#cost-table tbody tr").count() > 3
    assert HOSTILE in tab.page.locator("#check").inner_text()  # the example, as text
    tab.page.fill('input[name="max_steps"]', "14")
    tab.page.fill('input[name="max_length"]', "64")
    tab.page.fill('input[name="max_samples"]', "0")
    tab.page.fill('input[name="save_every"]', "7")
    tab.shoot("new")
    with tab.page.expect_navigation():
        tab.page.click("#start")
    job_id = tab.page.url.split("/jobs/")[1].split("?")[0]
    tab.page.evaluate("() => { window.__sameDocument = true; }")
    jobs = tab.new_page()  # the jobs list, open in another tab while the run goes on
    jobs.goto(tab.base + "/")
    jobs.evaluate("() => { window.__sameDocument = true; }")
    row = jobs.locator(f'tr[data-job="{job_id}"] .status')
    assert row.inner_text() in ("queued", "running")
    seen = []  # (points on the loss chart, status) as the page shows them
    deadline = time.monotonic() + WAIT_MS / 1000
    while time.monotonic() < deadline:
        points, status = tab.page.evaluate(
            "() => [Number(document.getElementById('loss-chart').dataset.points),"
            " document.getElementById('status').textContent]")
        seen.append((points, status))
        if status in ("succeeded", "failed", "cancelled"):
            break
        tab.page.wait_for_timeout(100)
    assert seen[-1][1] == "succeeded", seen[-5:]
    running = [points for points, status in seen if status == "running" and points > 0]
    assert running and max(running) > min(running), seen  # points came while it ran
    assert tab.page.evaluate("() => window.__sameDocument === true")  # no reload
    assert "ETA" in tab.page.locator("#progress").inner_text()
    jobs.wait_for_function(f"() => document.querySelector('tr[data-job=\"{job_id}\"] .status')"
                           ".textContent === 'succeeded'", timeout=10_000)
    assert jobs.evaluate("() => window.__sameDocument === true")  # updated, not reloaded


def test_the_compare_page_shows_two_models_side_by_side(tab: Tab, cli_job: str) -> None:
    tab.go("/compare")
    tab.page.check('input[name="model"][value="base"]')
    tab.page.check(f'input[name="model"][value="{cli_job}"]')
    tab.page.fill('input[name="limit"]', "1")
    tab.page.fill('input[name="max_new_tokens"]', "8")
    tab.shoot("compare")
    with tab.page.expect_navigation():
        tab.page.click("#compare-start")
    tab.page.wait_for_selector("#scores", timeout=WAIT_MS)
    labels = tab.page.locator("#scores tr.model th").all_inner_texts()
    assert len(labels) == 2 and "base" in labels[0]
    # The reference is the validation file's first reply, which holds the script tag.
    assert HOSTILE in tab.page.locator(".cell.reference").first.inner_text()
    tab.shoot("comparison")


def test_with_a_key_the_browser_logs_in_and_nothing_answers_before(browser: object,
                                                                   hostile_job: str) -> None:
    settings = ServeSettings(host="0.0.0.0", api_key=KEY, run_worker=False)
    with serve_in_thread(create_app(settings)) as port:
        tab = Tab(browser, f"http://127.0.0.1:{port}")
        try:
            # What a page's script (or a link) gets before logging in: no data, no stream.
            tab.go("/login")
            job = f"/jobs/{hostile_job}"
            for path in ("/jobs.json", f"{job}/stream", f"{job}/metrics.json",
                         "/static/dashboard.js", "/compare"):
                status = tab.page.evaluate("(url) => fetch(url).then((r) => r.status)", path)
                assert status == 401, path
            tab.go(f"/jobs/{hostile_job}")
            assert "/login" in tab.page.url and tab.page.locator("#status").count() == 0
            tab.page.fill('input[name="key"]', "not-the-key")
            with tab.page.expect_navigation():
                tab.page.click('button[type="submit"]:has-text("Log in")')
            assert tab.page.locator("#login-failed").count() == 1
            tab.shoot("login")
            tab.page.fill('input[name="key"]', KEY)
            with tab.page.expect_navigation():
                tab.page.click('button[type="submit"]:has-text("Log in")')
            assert tab.page.url.endswith(f"/jobs/{hostile_job}")
            assert tab.page.locator("#status").inner_text() == "succeeded"
            cookie = next(c for c in tab.context.cookies() if c["name"] == "tunelab_session")
            assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
            assert KEY not in cookie["value"]
            assert tab.dialogs == []
            # The refused requests above are the only console errors (401s), by design.
            assert all("401" in problem for problem in tab.problems), tab.problems
        finally:
            tab.close()

