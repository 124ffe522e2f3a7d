"""A label table as distributed or re-saved: text of one record per line, fields split by a
delimiter, with or without a header line.

Accepted text:
  encoding   UTF-8, with or without a byte-order mark (BOM, dropped); UTF-16 with its BOM (what
             spreadsheet programs save as "Unicode text").
  lines      ending in LF, CRLF or CR; blank lines are skipped; line numbers count every line
             of the file from 1.
  delimiter  detected from the first 100 non-blank lines: tab, semicolon or comma (tried in that
             order; the first that splits every one of those lines into two or more fields;
             csv double-quoting applies), else runs of whitespace (`5.51 i01_01_1.bmp`). Fields
             are stripped of surrounding spaces.
  numbers    as Python's float() reads them; where the delimiter is not a comma, also with a
             decimal comma (`3,5`), as spreadsheets in many locales write semicolon files.
  header     the first non-blank line when none of its fields is a number (readers of fixed
             formats say `header=True` or `False` instead). Columns are found by header name,
             ignoring letter case, from candidate names in order of preference.
"""

import codecs
import csv
import dataclasses
import re
from typing import Dict, Optional, Sequence, Tuple

from metaiqa_jax.data.base import parse_number

DELIMITERS = ('\t', ';', ',')
_DELIMITER_NAMES = {'\t': 'tab-separated', ';': 'semicolon-separated', ',': 'comma-separated',
                    None: 'whitespace-separated'}
_BOMS = ((codecs.BOM_UTF8, 'utf-8'), (codecs.BOM_UTF16_LE, 'utf-16-le'),
         (codecs.BOM_UTF16_BE, 'utf-16-be'))
_LINE_END = re.compile(r'\r\n|\r|\n')
_DECIMAL_COMMA = re.compile(r'[+-]?\d*,\d+')
_SNIFF_LINES = 100


def _decode(path: str) -> str:
  """The file's text (BOM dropped). Raises ValueError naming the line of an undecodable byte."""
  with open(path, 'rb') as f:
    raw = f.read()
  encoding = 'utf-8'
  for bom, codec in _BOMS:
    if raw.startswith(bom):
      raw, encoding = raw[len(bom):], codec
      break
  try:
    return raw.decode(encoding)
  except UnicodeDecodeError as e:
    line = len(_LINE_END.split(raw[:e.start].decode(encoding)))
    raise ValueError(f'{path}:{line}: not {encoding} text (byte {raw[e.start]:#04x}); save the '
                     'table as UTF-8') from None


def _split(line: str, delimiter: Optional[str]) -> Tuple[str, ...]:
  if delimiter is None:
    return tuple(line.split())
  return tuple(f.strip() for f in next(csv.reader([line], delimiter=delimiter)))


def _number_text(text: str, delimiter: Optional[str]) -> str:
  """`text` with a decimal comma made a point, where the delimiter is not a comma."""
  return text.replace(',', '.') if delimiter != ',' and _DECIMAL_COMMA.fullmatch(text) else text


def _is_number(text: str, delimiter: Optional[str]) -> bool:
  try:
    float(_number_text(text, delimiter))
    return True
  except ValueError:
    return False


@dataclasses.dataclass(frozen=True)
class LabelTable:
  """A parsed table.

  Attributes:
    path: the file read.
    delimiter: '\\t', ';' or ',', or None for runs of whitespace.
    header: the header's fields, or None for a headerless table.
    header_line: line number of the header, or of the first record when there is none.
    rows: (1-based line number, fields) per non-blank line after the header.
  """
  path: str
  delimiter: Optional[str]
  header: Optional[Tuple[str, ...]]
  header_line: int
  rows: Tuple[Tuple[int, Tuple[str, ...]], ...]

  def where(self, line: int) -> str:
    """`'<path>:<line>'`, the origin of a record in error messages."""
    return f'{self.path}:{line}'

  def find_column(self, candidates: Sequence[str]) -> Optional[int]:
    """0-based index of the first candidate name in the header (ignoring case), else None."""
    lower = [h.lower() for h in self.header or ()]
    for name in candidates:
      if name.lower() in lower:
        return lower.index(name.lower())
    return None

  def column(self, candidates: Sequence[str], what: str) -> int:
    """Like `find_column`, but raises ValueError naming the header line when none is there."""
    if self.header is None:
      raise ValueError(f'{self.where(self.header_line)}: needs a header line naming the {what} '
                       f'column ({" or ".join(candidates)})')
    index = self.find_column(candidates)
    if index is None:
      raise ValueError(f'{self.where(self.header_line)}: no {what} column (one of '
                       f'{", ".join(candidates)}, any letter case); the columns are '
                       f'{list(self.header)}')
    return index

  def field(self, line: int, row: Tuple[str, ...], column: int, what: str) -> str:
    """`row[column]`; raises ValueError naming the line when the row is too short or the field
    is empty."""
    text = row[column] if column < len(row) else ''
    if not text:
      raise ValueError(f'{self.where(line)}: {what} (column {column + 1}) is missing; the line '
                       f'has {len(row)} fields: {list(row)}')
    return text

  def number(self, line: int, row: Tuple[str, ...], column: int, what: str) -> float:
    """`row[column]` as a float (a decimal comma accepted unless comma-separated)."""
    text = _number_text(row[column], self.delimiter) if column < len(row) else None
    return parse_number(text, self.where(line), what)

  def describe(self, columns: Dict[str, int]) -> str:
    """E.g. `"image name from column 1 'name', MOS from column 2 'mos' (comma-separated, header
    on line 1)"`, for the log line saying how a table was read."""
    used = ', '.join(f'{what} from column {i + 1}' +
                     (f' {self.header[i]!r}' if self.header else '')
                     for what, i in columns.items())
    header = f'header on line {self.header_line}' if self.header else 'no header'
    return f'{used} ({_DELIMITER_NAMES[self.delimiter]}, {header})'


def read_table(path: str, header: Optional[bool] = None) -> LabelTable:
  """Reads `path` (see the module docstring for what is accepted).

  Args:
    path: the label file.
    header: True or False when the format fixes it; None to detect it (a header is a first
      line without any number).

  Raises:
    ValueError: the file has no non-blank line, or is not UTF-8/UTF-16 text (naming the line).
  """
  lines = [(number, text) for number, text in enumerate(_LINE_END.split(_decode(path)), start=1)
           if text.strip()]
  if not lines:
    raise ValueError(f'{path}: the label table is empty')
  sample = [text for _, text in lines[:_SNIFF_LINES]]
  delimiter = next((d for d in DELIMITERS if all(len(_split(t, d)) >= 2 for t in sample)), None)
  rows = [(number, _split(text, delimiter)) for number, text in lines]
  if header is None:
    header = not any(_is_number(f, delimiter) for f in rows[0][1])
  head, head_line = (rows[0][1], rows[0][0]) if header else (None, rows[0][0])
  return LabelTable(path, delimiter, head, head_line, tuple(rows[1:] if header else rows))
