"""Structured health formats recognised in attachments, so that the recipient's software can
import them rather than a person filing them by hand (product.md: "files arrive unreadable or
in formats the recipient's software rejects → structured formats recognised").

Recognised from the file's first bytes (and, for an XDM package, its name), never from the
declared type alone:

* ``cda``: an HL7 CDA R2 document (XML whose root is ``ClinicalDocument`` in the
  ``urn:hl7-org:v3`` namespace), as the DMP and MSSanté exchange them;
* ``hprim``: an HPRIM Santé message (first record ``H|``), French laboratories' results;
* ``hprim_net``: an HPRIM Net (HPRIM Médecin) report, the plain-text results most labs
  send GPs: twelve identity lines, then a ``****LAB****`` section line;
* ``hl7v2``: an HL7 v2 message (first segment ``MSH|``, or a batch's ``FHS|`` or ``BHS|``);
* ``xdm``: an IHE XDM package (a zip named ``IHE_XDM.zip``, or with an entry under
  ``IHE_XDM/`` among its first ones: the package's ``INDEX.HTM`` and ``README.TXT`` usually
  come first), MSSanté's envelope for a CDA and its metadata.
"""

from __future__ import annotations

import re

__all__ = ["FORMATS", "SNIFF_BYTES", "detect", "plain_type"]

# How much of a file's start is looked at: a CDA's root element comes after the XML
# declaration, a stylesheet instruction and comments, within the first kilobytes.
SNIFF_BYTES = 4096

FORMATS = ("cda", "hprim", "hprim_net", "hl7v2", "xdm")

_CDA_ROOT = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?ClinicalDocument[\s>/]")
_ZIP = b"PK\x03\x04"
_BOMS = (b"\xef\xbb\xbf",)
_UTF16_BOMS = {b"\xff\xfe": "utf-16-le", b"\xfe\xff": "utf-16-be"}
_HL7V2_STARTS = (b"MSH|", b"FHS|", b"BHS|")
# A section line of an HPRIM Net report (``****LAB****``, ``****FIN****``…), after its identity lines.
_HPRIM_NET_SECTION = re.compile(rb"(?m)^\*\*\*\*(?:LAB|FIN|FINFICHIER)\*\*\*\*[ \t]*\r?$")


def detect(name: str, head: bytes) -> str:
    """The structured format of a file named ``name`` starting with ``head``, or ""."""
    text = head
    for bom in _BOMS:
        text = text.removeprefix(bom)
    for bom, codec in _UTF16_BOMS.items():
        if text.startswith(bom):
            # A CDA saved by Windows software: read as UTF-8 from here on (ASCII is enough).
            text = text[len(bom) :].decode(codec, errors="ignore").encode()
    text = text.lstrip(b" \t\r\n")
    if text.startswith(b"<") and _CDA_ROOT.search(text) and b"urn:hl7-org:v3" in text:
        return "cda"
    if text.startswith(b"H|"):
        return "hprim"
    if text.startswith(_HL7V2_STARTS):
        return "hl7v2"
    if not text.startswith(b"<") and _HPRIM_NET_SECTION.search(text):
        return "hprim_net"
    if head.startswith(_ZIP):
        if name.strip().lower() == "ihe_xdm.zip":
            return "xdm"
        if any(entry.upper().startswith(b"IHE_XDM/") for entry in _zip_entries(head)):
            return "xdm"
    return ""


def _zip_entries(head: bytes) -> list[bytes]:
    """The names of the zip's entries whose local file headers lie within ``head``."""
    names = []
    offset = 0
    while head.startswith(_ZIP, offset) and offset + 30 <= len(head):
        flags = int.from_bytes(head[offset + 6 : offset + 8], "little")
        size = int.from_bytes(head[offset + 18 : offset + 22], "little")
        length = int.from_bytes(head[offset + 26 : offset + 28], "little")
        extra = int.from_bytes(head[offset + 28 : offset + 30], "little")
        names.append(head[offset + 30 : offset + 30 + length])
        data = offset + 30 + length + extra
        if flags & 0x08 or size == 0xFFFFFFFF:
            # Its size comes after its data (a streamed zip, Java's ZipOutputStream) or in
            # Zip64's extra field: the next header is looked for after it.
            offset = head.find(_ZIP, data)
            if offset < 0:
                break
        else:
            offset = data + size
    return names


def plain_type(format_: str) -> str:
    """The type to serve a recognised file with when its sender gave none worth keeping."""
    return {
        "cda": "text/xml",
        "hprim": "text/plain",
        "hprim_net": "text/plain",
        "hl7v2": "text/plain",
        "xdm": "application/zip",
    }.get(format_, "")
