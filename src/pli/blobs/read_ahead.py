"""Decrypting a blob's next segments on a helper thread while the current one is sent.

Serving a download alternates two jobs on one thread: reading and decrypting a segment,
then pushing it into the socket. Both release the GIL (pyca/cryptography's one-shot AEAD
calls do in the versions we lock; socket and file I/O always have), so a helper thread can
read and decrypt the following segments while the request's thread writes the current one.
On the 2-core benchmark machine (client on the same machine, over loopback, nothing else
running) the benchmarks' downloads went from about 2,000 to 2,550 MB/s (100 MB attachment)
and from 1,750 to 2,250 MB/s (50 MB patient document). The gain needs a spare core: with a
CPU-bound process beside them, both ways measured the same within a few percent. It costs
a thread start per download of two segments or more (1 MiB and up) and, while a download
runs, about 4 MiB: ``depth`` segments queued, one being put, one being sent.

The guarantees of :class:`~pli.blobs.store.BlobReader` hold unchanged: segments come out in
order, each only once it has authenticated, and an error (a truncated, reordered or altered
blob, an I/O error) is raised at the same place in the stream. Memory stays bounded: at most
``depth`` decrypted segments wait for the socket, plus the one being decrypted or put.
"""

from __future__ import annotations

import queue
import threading
import weakref
from collections.abc import Iterator

__all__ = ["ReadAhead"]

# Two segments in hand cover the jitter between the two threads; more only hold memory
# (measured: depth 1, 2 and 4 within noise of each other).
DEFAULT_DEPTH = 2
# Segments taken on the consumer's thread before the helper starts (see ReadAhead).
_SYNCHRONOUS = 2


class _End:
    """Sent by the helper after the last segment."""


_END = _End()
_Item = bytes | BaseException | _End


class ReadAhead(Iterator[bytes]):
    """An iterator of plaintext segments, decrypted ahead of the consumer on a helper thread.

    By default the first two segments are decrypted on the caller's thread, and the helper
    starts once the second is handed out: the first bytes leave as soon as they would
    without a helper, and a blob of one segment never starts a thread (a start costs about
    as much as decrypting a segment). With ``eager``, for a blob known to span several
    segments, the helper starts at once, so that the first segments are decrypted while the
    caller finishes its own work (a download's audit record is committed meanwhile; nothing
    is sent before). ``close()`` stops the helper and closes ``reader``; a ReadAhead dropped
    without ``close()`` stops its helper when it is garbage-collected.
    """

    def __init__(self, reader: Iterator[bytes], *, depth: int = DEFAULT_DEPTH, eager: bool = False) -> None:
        if depth < 1:
            raise ValueError("depth must be at least 1")
        self._reader = reader
        self._depth = depth
        self._queue: _Channel | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._taken = 0
        self._finished = False
        self._closed = False
        self._abandon: weakref.finalize[..., ReadAhead] | None = None
        self._held: bytes | None = None
        if eager:
            self._start()

    def __iter__(self) -> ReadAhead:
        return self

    def check_start(self) -> None:
        """Take the first segment now, to be handed out first: a blob that cannot be read
        from its very start (missing data, altered, wrong key) raises here, while its
        caller can still refuse cleanly, rather than once a response has begun."""
        if self._held is None and not self._finished:
            self._held = next(self, None)

    def __next__(self) -> bytes:
        if self._held is not None:
            piece, self._held = self._held, None
            return piece
        if self._finished:
            raise StopIteration
        if self._queue is None:
            try:
                piece = next(self._reader)
            except BaseException:
                self._finish()
                raise
            self._taken += 1
            if self._taken == _SYNCHRONOUS:
                self._start()
            return piece
        item = self._queue.get()
        if isinstance(item, bytes):
            return item
        # The helper has ended (and closed the reader).
        self._finish()
        if isinstance(item, BaseException):
            raise item
        raise StopIteration

    def _start(self) -> None:
        self._queue = _Channel(self._depth)
        self._thread = threading.Thread(
            target=_decrypt_ahead,
            args=(self._reader, self._queue, self._stop),
            name="pli-blob-read-ahead",
            daemon=True,
        )
        # The helper keeps no reference to self, so an abandoned ReadAhead can be collected;
        # this then unblocks and stops the helper.
        self._abandon = weakref.finalize(self, _release, self._queue, self._stop)
        self._thread.start()

    def _finish(self) -> None:
        self._finished = True
        self.close()

    def close(self) -> None:
        """Stop decrypting ahead and close the underlying reader; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._finished = True
        if self._thread is None:
            _close(self._reader)
            return
        assert self._abandon is not None  # noqa: S101 -- set with the thread
        self._abandon()
        # At most the segment being decrypted is left to finish; then the helper closes the
        # reader, so the file is closed when close() returns.
        self._thread.join()

    def __enter__(self) -> ReadAhead:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _Channel:
    """The hand-over from the helper to the consumer, bounded to ``depth`` waiting items.

    Built on two of the standard library's C-level SimpleQueues (the items, and credits
    for free places) rather than queue.Queue, whose Python-level condition variables cost
    more per segment than the rest of the hand-over."""

    def __init__(self, depth: int) -> None:
        self._items: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._credits: queue.SimpleQueue[None] = queue.SimpleQueue()
        for _ in range(depth):
            self._credits.put(None)

    def put(self, item: _Item) -> None:
        """Wait for a free place, then hand ``item`` over."""
        self._credits.get()
        self._items.put(item)

    def get(self) -> _Item:
        item = self._items.get()
        self._credits.put(None)
        return item

    def release(self) -> None:
        """Drop what waits and free one more place, so that a blocked ``put`` returns."""
        while True:
            try:
                self._items.get_nowait()
            except queue.Empty:
                break
            self._credits.put(None)
        self._credits.put(None)


def _decrypt_ahead(reader: Iterator[bytes], out: _Channel, stop: threading.Event) -> None:
    try:
        for piece in reader:
            # After stop, _release has made room for this one put; then nothing more is
            # decrypted.
            out.put(piece)
            if stop.is_set():
                return
        out.put(_END)
    except BaseException as exc:  # handed to the consumer, who raises it in order
        out.put(exc)
    finally:
        _close(reader)


def _release(out: _Channel, stop: threading.Event) -> None:
    """Tell the helper to stop, and make room in the channel so that a blocked put returns."""
    stop.set()
    out.release()


def _close(reader: Iterator[bytes]) -> None:
    close = getattr(reader, "close", None)
    if callable(close):
        close()
