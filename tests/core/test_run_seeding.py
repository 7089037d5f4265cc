"""`pli run` (what `make run` calls) seeds the demo and its example content once, in
development only, then serves: here the server and the worker are replaced by stand-ins so
that the command's own steps run in the test's database."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.template import Context

from pli.accounts.models import Organisation
from pli.audit.models import AuditEvent
from pli.messaging.models import Message
from pli.sharing.models import PatientShare, ShareNotification


@pytest.fixture(autouse=True)
def cached_templates() -> Iterator[None]:
    """`pli run` makes the process read templates afresh: the tests after these get
    Django's cached templates back."""
    from django.template import engines

    engine = engines["django"].engine
    loaders = engine.loaders
    yield
    engine.loaders = loaders
    engine.__dict__.pop("template_loaders", None)


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    calls: list[tuple[str, int]] = []

    @contextlib.contextmanager
    def no_worker(out: Any) -> Iterator[None]:
        yield

    monkeypatch.setattr("pli.core.server.serve", lambda host, port: calls.append((host, port)))
    monkeypatch.setattr("pli.sharing.background.background_worker", no_worker)
    return calls


def run(port: int = 8765) -> str:
    out = io.StringIO()
    call_command("run", "--port", str(port), stdout=out)
    return out.getvalue()


def content_counts() -> tuple[int, ...]:
    return (
        Organisation.objects.count(),
        Message.objects.count(),
        PatientShare.objects.count(),
        ShareNotification.objects.count(),
        AuditEvent.objects.count(),
    )


def test_first_run_seeds_the_example_content_and_says_where_to_look(db: None, served: list[Any]) -> None:
    output = run()
    assert served == [("127.0.0.1", 8765)]
    assert Organisation.objects.get().is_demo
    assert Message.objects.count() == 4 and PatientShare.objects.count() == 2
    assert "(just created)" in output
    assert "4 example messages" in output
    assert "/dev/outbox/" in output and "14/06/1991" in output


def test_a_second_run_duplicates_nothing(db: None, served: list[Any]) -> None:
    run()
    before = content_counts()
    output = run()
    assert content_counts() == before
    assert "(just created)" not in output and "4 example messages" in output


def test_an_existing_demo_gets_no_content_afterwards(db: None, served: list[Any]) -> None:
    """Content is seeded only with a demo created by this run: a demo from an earlier run
    (or whose users emptied it) is left as it is."""
    from pli.accounts.demo import seed_demo

    assert seed_demo() is not None
    output = run()
    assert not Message.objects.exists() and not PatientShare.objects.exists()
    assert "example messages" not in output and "/dev/outbox/" not in output


def test_production_refuses_to_run_and_seeds_nothing(db: None, served: list[Any], settings: Any) -> None:
    settings.PLI_ENV = "production"
    with pytest.raises(CommandError, match="development"):
        run()
    assert content_counts()[:4] == (0, 0, 0, 0) and served == []


def test_run_serves_static_files_as_they_are_edited(db: None, monkeypatch: pytest.MonkeyPatch, settings: Any) -> None:
    """A developer editing a stylesheet under `make run` sees it on the next reload, not a
    page left unstyled by the size WhiteNoise read at start-up; `pli serve` keeps the list
    it read once."""
    from django.conf import settings as live

    seen: list[bool] = []

    @contextlib.contextmanager
    def no_worker(out: Any) -> Iterator[None]:
        yield

    monkeypatch.setattr("pli.core.server.serve", lambda host, port: seen.append(live.WHITENOISE_AUTOREFRESH))
    monkeypatch.setattr("pli.sharing.background.background_worker", no_worker)
    settings.WHITENOISE_AUTOREFRESH = False  # through the fixture, which puts it back after the run
    run()
    assert seen == [True]


def test_run_renders_templates_as_they_are_edited(
    db: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, settings: Any
) -> None:
    """A developer editing a template under `make run` sees the change on the next reload;
    `pli serve`'s cached templates are left to it."""
    from django.template import engines

    engine = engines["django"].engine
    monkeypatch.setattr(engine, "dirs", [tmp_path, *engine.dirs])
    page = tmp_path / "edited.html"
    seen: list[str] = []

    def serve(host: str, port: int) -> None:
        for text in ("avant", "après"):
            page.write_text(text, encoding="utf-8")
            seen.append(engine.get_template("edited.html").render(Context()))

    @contextlib.contextmanager
    def no_worker(out: Any) -> Iterator[None]:
        yield

    monkeypatch.setattr("pli.core.server.serve", serve)
    monkeypatch.setattr("pli.sharing.background.background_worker", no_worker)
    # As `pli serve` does: the template compiled once is served as it was.
    page.write_text("avant", encoding="utf-8")
    engine.get_template("edited.html")
    page.write_text("après", encoding="utf-8")
    assert engine.get_template("edited.html").render(Context()) == "avant"
    run()
    assert seen == ["avant", "après"]
