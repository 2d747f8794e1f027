"""Numbers files as people make them: plain lists and spreadsheet exports. Pure: bytes in.

``read_rows(data, name=..., column=None)`` -> ``[(line number, raw, kind), ...]`` for every
data row, ``kind`` one of ``number``, ``blank``, ``comment`` (relookup writes one output line
per row); ``read_numbers`` -> ``[(line number, raw number), ...]``, the number rows only.

Encoding (``decode``): a byte-order mark decides (UTF-8 with BOM is Excel's "CSV UTF-8";
UTF-16 LE or BE is Excel's "Unicode text"); UTF-16 without a BOM is recognised by its NUL
bytes; otherwise UTF-8, and a file that is not UTF-8 is read as Windows-1252 (Excel's plain
"CSV" in western locales). Line ends: LF, CRLF or CR.

Shape: a file whose first line has a comma, semicolon or tab, or is a recognised header, is a
table. Its dialect is sniffed (``csv.Sniffer`` over the first lines, delimiters ``,`` ``;``
and tab: Excel writes ``;`` where the decimal separator is a comma, tab for "Unicode
text"); quoted fields follow RFC 4180. The first non-blank row is the header: the numbers
column is ``column`` when given (``--column``), else the first cell named, ignoring case,
spaces, ``_``, ``-`` and ``.``, one of ``HEADER_NAMES`` in that order of preference. Anything
else is a plain list: one number per line, blank lines and ``#`` comments ignored.

Errors: ``InvalidInput`` naming the file and the line (no numbers column, ``--column`` not in
the header, an empty file); nothing is read further and nothing is written.
"""

from __future__ import annotations

import csv
import io
import re

from contact_lookup.model.errors import InvalidInput

HEADER_NAMES = (
    "phonenumber",
    "phone",
    "phoneno",
    "telephone",
    "telephonenumber",
    "tel",
    "number",
    "mobile",
    "mobilephone",
    "cell",
)
DELIMITERS = ",;\t"
_SAMPLE_LINES = 50


def normalise_header(cell: str) -> str:
    """``"Phone Number"``, ``"phone_number"``, ``"PHONENUMBER"`` -> ``"phonenumber"``."""
    return re.sub(r"[\s_\-.]+", "", cell.strip().strip('"').lower())


def decode(data: bytes) -> str:
    """The text of a numbers file (see the module docstring for the encodings recognised)."""
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="replace")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", errors="replace")
    head = data[:200]
    if len(head) >= 4 and head.count(0) >= len(head) // 4:
        # UTF-16 without a BOM: ASCII text has a NUL in every other byte
        little = head[1::2].count(0) > head[0::2].count(0)
        return data.decode("utf-16-le" if little else "utf-16-be", errors="replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def read_numbers(
    data: bytes | str, *, name: str = "<stdin>", column: str | None = None
) -> list[tuple[int, str]]:
    """(line number, raw number) for each number of the file, in file order."""
    return [(line, raw) for line, raw, kind in read_rows(data, name=name, column=column)
            if kind == "number"]  # fmt: skip


def read_rows(
    data: bytes | str, *, name: str = "<stdin>", column: str | None = None
) -> list[tuple[int, str, str]]:
    """(line number, raw number, kind) for each data row (after the header of a table), in
    file order; ``kind``: ``number``, ``blank`` or ``comment`` (a line starting with ``#``)."""
    text = decode(data) if isinstance(data, bytes) else data.lstrip("\ufeff")
    lines = text.splitlines()
    first_index = next((i for i, ln in enumerate(lines) if ln.strip()), None)
    if first_index is None:
        raise InvalidInput(f"{name}: the file has no numbers (it is empty).")
    first = lines[first_index]
    tabular = any(d in first for d in DELIMITERS) or normalise_header(first) in HEADER_NAMES
    if column is None and not tabular:
        return [(number, *_kind(line.strip())) for number, line in enumerate(lines, start=1)]
    return _table(text, lines, first_index, name, column)


def _kind(raw: str) -> tuple[str, str]:
    if not raw:
        return "", "blank"
    if raw.startswith("#"):
        return "", "comment"
    return raw, "number"


def _dialect(sample: str, first: str) -> type[csv.Dialect] | csv.Dialect:
    try:
        return csv.Sniffer().sniff(sample, delimiters=DELIMITERS)
    except csv.Error:
        counts = {d: first.count(d) for d in DELIMITERS}
        delimiter = max(counts, key=lambda d: counts[d])

        class Chosen(csv.excel):
            pass

        Chosen.delimiter = delimiter if counts[delimiter] else ","
        return Chosen


def _table(
    text: str, lines: list[str], first_index: int, name: str, column: str | None
) -> list[tuple[int, str, str]]:
    header_line = first_index + 1
    sample = "\n".join(lines[first_index : first_index + _SAMPLE_LINES])
    dialect = _dialect(sample, lines[first_index])
    reader = csv.reader(io.StringIO(text, newline=""), dialect)
    header: list[str] | None = None
    index = -1
    out: list[tuple[int, str, str]] = []
    for row in reader:
        if header is None:
            if not any(cell.strip() for cell in row):
                continue
            header = row
            index = _column(header, header_line, name, column)
            continue
        raw = row[index].strip() if index < len(row) else ""
        if len(row) == 1 and raw.startswith("#"):
            out.append((reader.line_num, "", "comment"))
        else:
            out.append((reader.line_num, raw, "number" if raw else "blank"))
    return out


def _column(header: list[str], line: int, name: str, column: str | None) -> int:
    cells = [normalise_header(c) for c in header]
    shown = ", ".join(repr(c.strip()) for c in header[:8])
    if column is not None:
        wanted = normalise_header(column)
        if wanted in cells:
            return cells.index(wanted)
        raise InvalidInput(
            f"{name} line {line}: no column {column!r} in the header ({shown}).",
            hint="Pass --column with one of the header's names.",
        )
    for candidate in HEADER_NAMES:
        if candidate in cells:
            return cells.index(candidate)
    raise InvalidInput(
        f"{name} line {line}: no phone number column in the header ({shown}).",
        hint="Name the column phoneNumber (or Phone, phone number...) or pass --column NAME.",
    )
