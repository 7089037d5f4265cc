"""Encrypted blob storage (attachment contents) on the local file system; no Django import."""

from pli.blobs.read_ahead import ReadAhead
from pli.blobs.store import (
    BlobError,
    BlobInfo,
    BlobNotFound,
    BlobReader,
    BlobStore,
    BlobTooLarge,
    validate_blob_id,
)

__all__ = [
    "BlobError",
    "BlobInfo",
    "BlobNotFound",
    "BlobReader",
    "BlobStore",
    "BlobTooLarge",
    "ReadAhead",
    "validate_blob_id",
]
