"""Gunicorn, configured in-process, so `pli serve` needs no config file."""

from __future__ import annotations

import os
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger

from pli.core.logging import redact


class RedactingLogger(Logger):  # type: ignore[misc]
    """Gunicorn's access log, with patient-link and invitation tokens masked."""

    def atoms(self, resp: Any, req: Any, environ: Any, request_time: Any) -> dict[str, Any]:
        atoms: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        for name in ("r", "U", "q", "f"):
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

        return application


def serve(host: str, port: int, workers: int | None = None, threads: int = 4) -> None:
    cores = os.cpu_count() or 1
    PliServer(
        {
            "bind": f"{host}:{port}",
            "workers": workers or max(2, cores),
            "worker_class": "gthread",
            "threads": threads,
            "preload_app": True,
            "accesslog": "-",
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
