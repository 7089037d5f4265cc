"""Gunicorn, configured in-process, so `pli serve` needs no config file."""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import platform
import socket
import struct
import sys
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger

from pli.core.logging import RedactFilter, redact

# One instance, so that setting the logger up again (a reload) does not add a second one.
_REDACT = RedactFilter()


class RedactingLogger(Logger):  # type: ignore[misc]
    """Gunicorn's access and error logs, with patient-link and invitation tokens masked; a
    client let go after PLI_CLIENT_TIMEOUT is one warning line, not an error with a traceback."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        # The error log names the request too: "Error handling request GET /p/<token>/…"
        # when a response fails before its first byte (a document whose blob does not
        # authenticate), "Invalid request from ip=…: Invalid Request Line '…'".
        self.error_log.addFilter(_REDACT)

    def exception(self, msg: str, *args: Any, **kwargs: Any) -> None:
        if isinstance(sys.exc_info()[1], TimeoutError | BlockingIOError):
            self.warning("client stopped reading or sending for PLI_CLIENT_TIMEOUT seconds: connection closed")
            return
        super().exception(msg, *args, **kwargs)

    def atoms(self, resp: Any, req: Any, environ: Any, request_time: Any) -> dict[str, Any]:
        atoms: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        for name in ("r", "U", "q", "f", "a"):
            if isinstance(atoms.get(name), str):
                atoms[name] = redact(atoms[name])
        return atoms


class PliServer(BaseApplication):  # type: ignore[misc]
    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from pli.wsgi import application

        warm_up()
        freeze_loaded_objects()
        return application


logger = logging.getLogger(__name__)

# What Pli's template directories hold that Django renders (pages, e-mails, SMS texts).
TEMPLATE_SUFFIXES = frozenset({".html", ".txt"})

# glibc's mallopt() parameters and the values `pli serve` sets (see tune_allocator).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 4 * 1024 * 1024
TRIM_THRESHOLD = 32 * 1024 * 1024
_OPERATOR_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def tune_allocator() -> bool:
    """Keep the 1 MiB buffers of uploads and downloads on the heap, reused between requests.

    By default glibc gives each allocation of 128 KiB and more its own fresh pages from the
    kernel and returns them when freed (or trims the heap soon after), so every segment a
    download decrypts or an upload reads first takes some 256 page faults. With these two
    thresholds the memory a worker freed is reused instead: the 100 MB attachment download
    of the benchmark went from about 2,600 to 3,000 MB/s (best of 12, back to back). A
    worker keeps up to 32 MiB of freed memory for reuse. Set by the master before it forks
    the workers, which inherit it; an operator's own MALLOC_*_ variables win. Returns
    whether the settings were applied.
    """
    if platform.libc_ver()[0] != "glibc" or any(name in os.environ for name in _OPERATOR_SETTINGS):
        return False
    libc = ctypes.CDLL(None)
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return False
    applied = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    if not applied:
        logger.warning("mallopt refused the allocator settings; using glibc's defaults")
    return applied


def warm_up() -> None:
    """Do once in the master, before it forks, what each worker would otherwise do on its
    first requests: import the URLconf (and with it every view), build the URL lookups,
    load the translation catalogs and compile Pli's templates.

    Without it, the first page each new worker served took 30 to 60 ms instead of 3 to 5
    (measured on the patient link page, 4 workers): after every restart the first patients
    and practitioners waited for it, once per worker. With it, 12 to 25 ms; what remains is
    each thread's own database connection and the memory pages a worker copies from the
    master as it first touches them. Done here, the work is shared by the workers' memory
    and frozen with the rest (see freeze_loaded_objects). It opens no database connection,
    which the workers must not inherit.
    """
    from django.conf import settings
    from django.template import engines
    from django.template.backends.django import DjangoTemplates
    from django.urls import get_resolver
    from django.utils import translation
    from django.utils.module_loading import import_string

    import pli

    get_resolver().reverse_dict  # noqa: B018 -- imports every urls module and view, compiles the patterns
    # What Django imports by name on a first request.
    for dotted in (
        settings.MESSAGE_STORAGE,
        settings.SESSION_ENGINE + ".SessionStore",
        settings.SESSION_SERIALIZER,
        *(str(cache["BACKEND"]) for cache in settings.CACHES.values()),
    ):
        import_string(dotted)
    for code, _name in settings.LANGUAGES:
        with translation.override(code):
            pass  # activating a language loads its catalogs, kept for the process
    package = Path(pli.__file__).resolve().parent
    for engine in engines.all():
        for directory in map(Path, engine.template_dirs):
            if not directory.resolve().is_relative_to(package):
                continue
            for path in sorted(directory.rglob("*")):
                if path.suffix in TEMPLATE_SUFFIXES and path.is_file():
                    engine.get_template(path.relative_to(directory).as_posix())
        if isinstance(engine, DjangoTemplates):
            engine.engine.template_context_processors  # noqa: B018 -- imports them


def freeze_loaded_objects() -> None:
    """Keep the objects of the loaded application out of the garbage collector's full passes.

    Loading Django, DRF, allauth and Pli leaves some 90,000 objects that live as long as the
    worker. Each full collection walked them all: measured in a worker serving downloads,
    a pause of 50 to 55 ms about every 1,500 requests, landing on whichever request was
    running. Frozen in the master before it forks, they are never walked again (and their
    memory pages stay shared with the workers instead of being copied when the collector
    writes to them).
    """
    gc.collect()
    gc.freeze()


def limit_client_waits(server: Any) -> None:
    """Let a client go once it has sent (or read) nothing for PLI_CLIENT_TIMEOUT seconds,
    from the first byte of its request on.

    gunicorn reads a request's line and headers before Pli's code runs, on a blocking socket
    without a limit: ten clients sending half a request line held every thread (pli.core.
    middleware.ClientTimeoutMiddleware only covers the body and the answer). The kernel's
    receive and send timeouts, set on the listening sockets, pass to every accepted one.
    """
    from django.conf import settings

    timeval = struct.pack("ll", int(settings.PLI_CLIENT_TIMEOUT), 0)
    for listener in server.LISTENERS:
        for option in (socket.SO_RCVTIMEO, socket.SO_SNDTIMEO):
            listener.sock.setsockopt(socket.SOL_SOCKET, option, timeval)


def serve(host: str, port: int, workers: int | None = None, threads: int = 4) -> None:
    cores = os.cpu_count() or 1
    tune_allocator()
    PliServer(
        {
            "bind": f"{host}:{port}",
            "workers": workers or max(2, cores),
            "worker_class": "gthread",
            "threads": threads,
            "preload_app": True,
            "when_ready": limit_client_waits,
            "accesslog": "-",
            # gunicorn's usual line, then the request id (X-Request-Id) that the
            # application's log lines of the same request carry.
            "access_log_format": '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" rid=%({x-request-id}o)s',
            "errorlog": "-",
            "logger_class": "pli.core.server.RedactingLogger",
            # Large attachments stream through; the timeout guards a stuck worker, not a slow upload.
            "timeout": 120,
            "graceful_timeout": 20,
            "forwarded_allow_ips": os.environ.get("PLI_FORWARDED_ALLOW_IPS", "127.0.0.1"),
            "proc_name": "pli",
            # One shared control socket in $HOME would clash between instances on a host.
            "control_socket_disable": True,
        }
    ).run()
