"""Hardened CSV reading: a size cap, the encoding checked, bad and long lines recorded per row.

pandas' C parser reads the rows (fast for 100k of them); what it would drop or shift without
a word is recorded instead. The file is refused over 1 GB, decoded as its byte-order mark
says (UTF-8, UTF-16, UTF-32) or as the ``encoding`` given, else UTF-8, and a byte that does
not decode is a ``ValueError`` naming the line. ``skip(path, reason)`` records a line left out.
"""
import csv
import io
import re
import warnings

import pandas as pd

from helpers.files import fileio

_MAX_CSV_BYTES = 1_000_000_000
# pandas' own missing-value strings, applied to the columns that are not kept literal.
_PANDAS_NA_STRINGS = [
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
    "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
]


def read_header(csv_path, encoding=None):
    """``(data, encoding, column names)``: the CSV's checked bytes and its header."""
    try:
        data = fileio.read_bytes(csv_path, "CSV file", _MAX_CSV_BYTES)
        encoding = encoding or fileio.sniff_encoding(data) or "utf-8"
        fileio.check_text(data, csv_path, encoding, what="CSV file")
    except fileio.ReadError as error:
        hint = ("; if it is in another encoding, say which: encoding='latin-1' "
                "(--encoding latin-1 on the command line)" if "cannot be decoded" in error.reason else "")
        raise ValueError(f"{error}{hint}") from None
    try:
        header = pd.read_csv(io.BytesIO(data), nrows=0, encoding=encoding)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as error:
        raise ValueError(f"{csv_path}: cannot read a CSV header ({error})") from error
    return data, encoding, [str(name) for name in header.columns]


def _parser_error(csv_path, error):
    """A pandas parser error as a message naming the file and the line."""
    message = str(error).replace("Error tokenizing data. C error: ", "").strip()
    row = re.search(r"(?:row|line) (\d+)", message)
    if "EOF inside string" in message and row:
        return (f"{csv_path}: line {int(row.group(1)) + 1}: a quoted field is never closed "
                f"(an opening \" without its closing \"); fix the quotes from that line on")
    return f"{csv_path}: cannot parse the CSV ({message})"


def _long_rows(data, encoding, n_columns):
    """``(row, line, n_fields)`` of each data row with more fields than the header, and the
    number of rows, found by Python's csv module (pandas' warning names no row)."""
    reader = csv.reader(io.StringIO(data.decode(encoding)), skipinitialspace=True)
    records = [(reader.line_num, record) for record in reader if record]
    found = [(row, line, len(record)) for row, (line, record) in enumerate(records[1:])
             if len(record) > n_columns]
    return found, len(records) - 1


def _parse(csv_path, data, encoding, columns, literal):
    """``pandas.read_csv`` with the warnings it gives on bad lines caught."""
    na_values = {name: _PANDAS_NA_STRINGS for name in columns}
    # Keep the literal columns' text: a label called "NA" or "None" is a label.
    na_values.update({name: [""] for name in literal})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", pd.errors.ParserWarning)
        try:
            df = pd.read_csv(io.BytesIO(data), encoding=encoding, dtype=dict.fromkeys(literal, object),
                             keep_default_na=False, na_values=na_values, on_bad_lines="warn",
                             skipinitialspace=True,
                             # A first data row with an extra field must not become the
                             # index (pandas would shift every column by one).
                             index_col=False)
        except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as error:
            raise ValueError(_parser_error(csv_path, error)) from None
    return df, caught


def read_rows(csv_path, data, encoding, columns, literal, skip):
    """Read the rows of :func:`read_header`'s CSV; lines pandas drops are skipped.

    ``literal`` names the columns whose text is kept as it is (only an empty cell is
    missing). Returns the DataFrame and ``{row: (where, reason)}`` of its rows with more
    fields than the header (pandas keeps them, cut short; the caller leaves them out).
    """
    df, caught = _parse(csv_path, data, encoding, columns, literal)
    long_rows = {}
    for warning in caught:
        message = str(warning.message)
        bad_lines = re.findall(r"Skipping line (\d+): ([^\n]+)", message)
        if "Length of header or names does not match" in message:
            found, n_records = _long_rows(data, encoding, len(columns))
            if n_records == len(df):
                for row, line, n_fields in found:
                    long_rows[row] = (f"{csv_path}:{line}", f"malformed row (expected "
                                      f"{len(columns)} fields, saw {n_fields})")
                continue
        if not bad_lines:
            warnings.warn_explicit(warning.message, warning.category, warning.filename,
                                   warning.lineno)
        for line, reason in bad_lines:
            skip(f"{csv_path}:{line}", f"malformed row ({reason.strip()})")
    return df, long_rows
