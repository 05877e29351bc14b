"""Tables out of the console as files a county office opens: CSV and XLSX.

CSV is UTF-8 with a byte-order mark (Excel otherwise reads the Chinese headers as GBK) and
cells that a spreadsheet would take for a formula (=, +, -, @ first) are quoted with a leading
apostrophe: a clerk's name or a station id typed by someone must not run as a formula on the
appraisal officer's machine. XLSX is written by XlsxWriter, numbers as numbers.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any

import xlsxwriter

_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_FORMULA):
        return "'" + value
    return "" if value is None else value


def csv_bytes(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(headers)
    for row in rows:
        writer.writerow([_cell(v) for v in row])
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def xlsx_bytes(title: str, headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> bytes:
    out = io.BytesIO()
    book = xlsxwriter.Workbook(out, {"in_memory": True, "strings_to_formulas": False, "strings_to_urls": False})
    sheet = book.add_worksheet(title[:31])
    bold = book.add_format({"bold": True})
    sheet.write_row(0, 0, headers, bold)
    for i, row in enumerate(rows, 1):
        sheet.write_row(i, 0, [_cell(v) for v in row])
    sheet.freeze_panes(1, 0)
    sheet.set_column(0, len(headers) - 1, 14)
    book.close()
    return out.getvalue()
