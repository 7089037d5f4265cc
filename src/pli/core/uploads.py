"""The upload handler every request has unless its view installs its own."""

from __future__ import annotations

from typing import Any

from django.core.files.uploadhandler import FileUploadHandler
from django.http import HttpRequest

_DROPPED = "_pli_dropped_files"


class DropFiles(FileUploadHandler):
    """Reads the files of a form whose view takes none, keeping none of their bytes.

    Django's default handlers keep a small file in memory and write a larger one (over
    FILE_UPLOAD_MAX_MEMORY_SIZE) to a plaintext temporary file: a document sent by mistake
    to an endpoint that takes no files (a move, through the API's multipart parser) reached
    the disk in clear. The views that take files (pli.messaging.uploads.install) replace
    this with their encrypting handler before the body is read. (An empty handler list
    would not do: Django then falls back to its own handlers.) The files' field names are
    kept, for the view to refuse them by name (:func:`dropped_files`)."""

    def new_file(self, field_name: str, *args: Any, **kwargs: Any) -> None:
        super().new_file(field_name, *args, **kwargs)
        if self.request is not None:
            names = self.request.__dict__.setdefault(_DROPPED, [])
            if field_name not in names:
                names.append(field_name)

    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:
        return None

    def file_complete(self, file_size: int) -> None:
        return None


def dropped_files(request: HttpRequest) -> list[str]:
    """The field names of the files :class:`DropFiles` read and dropped from ``request``'s body."""
    return list(request.__dict__.get(_DROPPED, ()))
