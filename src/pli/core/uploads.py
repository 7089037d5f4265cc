"""The upload handler every request has unless its view installs its own."""

from __future__ import annotations

from django.core.files.uploadhandler import FileUploadHandler


class DropFiles(FileUploadHandler):
    """Reads the files of a form whose view takes none, keeping none of their bytes.

    Django's default handlers keep a small file in memory and write a larger one (over
    FILE_UPLOAD_MAX_MEMORY_SIZE) to a plaintext temporary file: a document sent by mistake
    to an endpoint that takes no files (a move, through the API's multipart parser) reached
    the disk in clear. The views that take files (pli.messaging.uploads.install) replace
    this with their encrypting handler before the body is read. (An empty handler list
    would not do: Django then falls back to its own handlers.)"""

    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:
        return None

    def file_complete(self, file_size: int) -> None:
        return None
