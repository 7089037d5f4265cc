from __future__ import annotations

import threading

from django.db import close_old_connections, connection, transaction

from pli.audit import services as audit
from pli.audit.models import AuditEvent


def test_concurrent_writers_keep_one_unbroken_chain(transactional_db: None) -> None:
    """Several threads (one database connection each) append at once: on PostgreSQL the
    head-row lock serialises them; on SQLite the immediate transactions do."""
    writers, per_writer = 6, 15
    errors: list[BaseException] = []
    start = threading.Barrier(writers)

    def write(n: int) -> None:
        try:
            start.wait()
            for i in range(per_writer):
                with transaction.atomic():
                    audit.record("test.concurrent", actor=("user", str(n)), target=("thing", str(i)))
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            close_old_connections()
            connection.close()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    seqs = list(AuditEvent.objects.order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, writers * per_writer + 1))
    result = audit.verify()
    assert result.ok, result.problem
