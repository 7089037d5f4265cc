"""Structured health formats recognised in attachments, so that the recipient's software can
import them rather than a person filing them by hand (product.md: "files arrive unreadable or
in formats the recipient's software rejects → structured formats recognised").

Recognised from the file's first bytes (and, for an XDM package, its name), never from the
declared type alone:

* ``cda``: an HL7 CDA R2 document (XML whose root is ``ClinicalDocument`` in the
  ``urn:hl7-org:v3`` namespace), as the DMP and MSSanté exchange them;
* ``hprim``: an HPRIM Santé message (first record ``H|``), French laboratories' results;
* ``hl7v2``: an HL7 v2 message (first segment ``MSH|``);
* ``xdm``: an IHE XDM package (a zip named ``IHE_XDM.zip``, or whose first entry is under
  ``IHE_XDM/``), MSSanté's envelope for a CDA and its metadata.
"""

from __future__ import annotations

import re

__all__ = ["FORMATS", "SNIFF_BYTES", "detect", "plain_type"]

# How much of a file's start is looked at: a CDA's root element comes after the XML
# declaration, a stylesheet instruction and comments, within the first kilobytes.
SNIFF_BYTES = 4096

FORMATS = ("cda", "hprim", "hl7v2", "xdm")

_CDA_ROOT = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?ClinicalDocument[\s>/]")
_ZIP = b"PK\x03\x04"
_BOMS = (b"\xef\xbb\xbf",)


def detect(name: str, head: bytes) -> str:
    """The structured format of a file named ``name`` starting with ``head``, or ""."""
    text = head
    for bom in _BOMS:
        text = text.removeprefix(bom)
    text = text.lstrip(b" \t\r\n")
    if text.startswith(b"<") and _CDA_ROOT.search(text) and b"urn:hl7-org:v3" in text:
        return "cda"
    if text.startswith(b"H|"):
        return "hprim"
    if text.startswith(b"MSH|"):
        return "hl7v2"
    if head.startswith(_ZIP):
        if name.strip().lower() == "ihe_xdm.zip":
            return "xdm"
        # The local file header of the first entry: its name's length at offset 26, the name at 30.
        length = int.from_bytes(head[26:28], "little")
        if head[30 : 30 + length].upper().startswith(b"IHE_XDM/"):
            return "xdm"
    return ""


def plain_type(format_: str) -> str:
    """The type to serve a recognised file with when its sender gave none worth keeping."""
    return {"cda": "text/xml", "hprim": "text/plain", "hl7v2": "text/plain", "xdm": "application/zip"}.get(format_, "")
