"""Reading corpus files: JSONL/JSON, Parquet, Arrow, CSV/TSV, plain text and HTML, optionally .gz or .zst; a
``datasets`` folder (``save_to_disk``) by its Arrow files.

Reading is split in two so that the expensive half runs in the workers: the driver only cuts files into
:class:`Raw` records (a line's bytes, a row, a whole text or HTML file), in a fixed order; a worker turns
each into a :class:`Document` with :func:`to_document`, decoding the charset and parsing JSON. Anything
that cannot be turned into a document comes back as an :class:`Unreadable` naming the file and line, so
it is counted, never dropped.

Bytes that are not UTF-8 are decoded as the encoding charset-normalizer finds among the ones Taiwan
(and the rest of the corpus) actually uses: Big5/CP950, GB18030, UTF-16, CP1252.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from taide.data.base import DataError, Document

_CANDIDATES = ["utf_8", "cp950", "big5hkscs", "gb18030", "utf_16", "cp1252"]
_SNIFF_BYTES = 1 << 16
_META_CHARSET = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?\s*([A-Za-z0-9_-]+)", re.I)
FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".parquet": "parquet", ".arrow": "arrow",
           ".csv": "csv", ".tsv": "tsv", ".txt": "text", ".md": "text", ".html": "html", ".htm": "html"}


@dataclass
class Raw:
    """One input record before decoding: ``kind`` is "line" (bytes of a JSONL line), "record" (a row
    already parsed: Parquet, CSV, a JSON array element), "text" or "html" (a whole file's bytes)."""

    source: str  # file name, for the per-source accounting
    where: str  # path:line (or path:row) for messages and default ids
    kind: str
    payload: object
    encoding: str = "utf_8"


@dataclass
class Unreadable:
    source: str
    problem: str


def _split_name(path: Path) -> tuple[str, str | None]:
    """(format, compression) from the file name: laws.jsonl.gz → ("jsonl", "gz")."""
    suffixes = [s.lower() for s in path.suffixes]
    compression = suffixes.pop() if suffixes and suffixes[-1] in (".gz", ".zst") else None
    fmt = FORMATS.get(suffixes[-1]) if suffixes else None
    if fmt is None:
        raise DataError(f"{path}: unknown format; taide reads {', '.join(sorted(FORMATS))} "
                        "(optionally .gz or .zst)")
    return fmt, compression and compression[1:]


def _open_bytes(path: Path, compression: str | None):
    if compression == "gz":
        return gzip.open(path, "rb")
    if compression == "zst":
        import zstandard

        stream = zstandard.ZstdDecompressor().stream_reader(path.open("rb"), read_across_frames=True, closefd=True)
        return io.BufferedReader(stream, buffer_size=_SNIFF_BYTES)  # lines and peek()
    return path.open("rb", buffering=_SNIFF_BYTES)


def detect_encoding(sample: bytes, html: bool = False) -> str:
    """The codec to decode ``sample``'s file with: UTF-8 (or a BOM's) when it decodes, an HTML page's
    declared charset, else charset-normalizer's best guess among the candidates."""
    if sample.startswith(codecs.BOM_UTF8):
        return "utf_8_sig"
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf_16"
    try:
        sample.decode("utf_8")
        return "utf_8"
    except UnicodeDecodeError as e:
        if e.start >= len(sample) - 3 and len(sample) >= _SNIFF_BYTES:  # a character cut by the sample's end
            return "utf_8"
    if html and (m := _META_CHARSET.search(sample[:4096])):
        try:
            return codecs.lookup(m.group(1).decode("ascii")).name
        except LookupError:
            pass
    from charset_normalizer import from_bytes

    best = from_bytes(sample, cp_isolation=_CANDIDATES).best()
    return best.encoding if best is not None else "utf_8"


def _jsonl_lines(f, path: Path, source: str) -> Iterator[Raw]:
    first = f.peek(_SNIFF_BYTES)[:_SNIFF_BYTES]
    encoding = detect_encoding(first) if first else "utf_8"
    if encoding.startswith("utf_16"):  # newline bytes are not line ends in UTF-16: decode the stream
        lines = (line.encode("utf_8") for line in io.TextIOWrapper(f, encoding=encoding))
        encoding = "utf_8"
    else:
        lines = f
    for lineno, line in enumerate(lines, start=1):
        if line.strip():
            yield Raw(source, f"{path}:{lineno}", "line", line, encoding)


def _check_column(path: Path, text_field: str | None, columns: list[str]) -> None:
    if text_field is not None and text_field not in columns:
        raise DataError(f"{path}: no column {text_field!r}; columns are {', '.join(columns)} (choose one with "
                        "--text-field)")


def read_raw(path: Path, text_field: str | None = "text", source: str | None = None) -> Iterator[Raw | Unreadable]:
    """Cut one input file into raw records, in file order; ``source`` names it in the accounting. ``text_field``:
    the column a table must have (None: any columns)."""
    fmt, compression = _split_name(path)
    source = source or path.name
    with _open_bytes(path, compression) as f:
        if fmt == "jsonl":
            yield from _jsonl_lines(f, path, source)
        elif fmt == "json":
            data = f.read()
            try:
                records = json.loads(data.decode(detect_encoding(data)))
            except json.JSONDecodeError as e:
                if e.msg == "Extra data":  # JSON Lines under a .json name, as many datasets ship
                    yield from _jsonl_lines(io.BufferedReader(io.BytesIO(data)), path, source)
                else:
                    yield Unreadable(source, f"{path}: not valid JSON ({e})")
                return
            except UnicodeDecodeError as e:
                yield Unreadable(source, f"{path}: not valid JSON ({e})")
                return
            if isinstance(records, dict):
                records = [records]
            for i, record in enumerate(records, start=1):
                yield Raw(source, f"{path}:[{i}]", "record", record)
        elif fmt == "parquet":
            import pyarrow.parquet as pq

            parquet = pq.ParquetFile(f if compression else path)
            _check_column(path, text_field, parquet.schema_arrow.names)
            row = 0
            for batch in parquet.iter_batches(batch_size=1024):  # bounded memory whatever the file size
                for record in batch.to_pylist():
                    row += 1
                    yield Raw(source, f"{path}:row {row}", "record", record)
        elif fmt == "arrow":
            import pyarrow as pa
            import pyarrow.ipc

            try:  # datasets writes the streaming format; Arrow's file format is the other one
                batches = pa.ipc.open_stream(f)
            except pa.ArrowInvalid:
                f.seek(0)
                try:
                    arrow_file = pa.ipc.open_file(f)
                except pa.ArrowInvalid as e:
                    raise DataError(f"{path}: not an Arrow file ({e})") from None
                batches = (arrow_file.get_batch(i) for i in range(arrow_file.num_record_batches))
                _check_column(path, text_field, arrow_file.schema.names)
            else:
                _check_column(path, text_field, batches.schema.names)
            row = 0
            for batch in batches:
                for record in batch.to_pylist():
                    row += 1
                    yield Raw(source, f"{path}:row {row}", "record", record)
        elif fmt in ("csv", "tsv"):
            sample = f.peek(_SNIFF_BYTES)[:_SNIFF_BYTES]
            text = io.TextIOWrapper(f, encoding=detect_encoding(sample), errors="strict", newline="")
            reader = csv.DictReader(text, delimiter="\t" if fmt == "tsv" else ",")
            try:
                if text_field is not None and text_field not in (reader.fieldnames or []):
                    raise DataError(f"{path}: no column {text_field!r}; columns are {', '.join(reader.fieldnames or [])}"
                                    " (choose one with --text-field)")
                for record in reader:
                    yield Raw(source, f"{path}:{reader.line_num}", "record", record)
            except UnicodeDecodeError as e:
                yield Unreadable(source, f"{path}:{reader.line_num + 1}: undecodable bytes ({e.reason}); "
                                         "the rest of the file was not read")
            except csv.Error as e:
                yield Unreadable(source, f"{path}:{reader.line_num}: {e}; the rest of the file was not read")
        else:  # one document per text or HTML file
            yield Raw(source, str(path), fmt, f.read())


def to_document(raw: Raw, text_field: str = "text") -> Document | Unreadable:
    """Decode and parse one raw record (runs in a worker)."""
    if raw.kind in ("text", "html"):
        data = raw.payload
        encoding = detect_encoding(data[:_SNIFF_BYTES], html=raw.kind == "html")
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError as e:
            return Unreadable(raw.source, f"{raw.where}: undecodable as {encoding} at byte {e.start}")
        name = Path(raw.where).name
        return Document(name, text, raw.source, {"id": name}, is_html=raw.kind == "html")
    if raw.kind == "line":
        try:
            line = raw.payload.decode(raw.encoding)
        except UnicodeDecodeError as e:
            return Unreadable(raw.source, f"{raw.where}: undecodable as {raw.encoding} at byte {e.start}")
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            return Unreadable(raw.source, f"{raw.where}: not valid JSON ({e.msg} at column {e.colno})")
    else:
        record = raw.payload
    if not isinstance(record, dict):
        return Unreadable(raw.source, f"{raw.where}: expected a JSON object")
    text = record.get(text_field)
    if not isinstance(text, str):
        return Unreadable(raw.source, f"{raw.where}: field {text_field!r} missing or not a string")
    doc_id = record.get("id")
    return Document(str(doc_id) if doc_id is not None else raw.where, text, raw.source, record)


class InputFile(NamedTuple):
    path: Path
    source: str  # the name its documents are counted under


def input_files(paths: list[Path]) -> tuple[list[InputFile], list[Path]]:
    """The files to read, in order, and the files skipped. Directories are read recursively (sorted),
    skipping hidden files and files of unknown formats; a named file of unknown format is an error.
    A file is counted under its name, or under its top folder inside a given directory (html/)."""
    files, skipped = [], []
    for path in map(Path, paths):
        if path.is_dir() and (arrow := datasets_folder_files(path)) is not None:
            files.extend(InputFile(p, p.parent.name + "/" if p.parent != path else p.name) for p in arrow)
        elif path.is_dir():
            for p in sorted(path.rglob("*")):
                parts = p.relative_to(path).parts
                if p.is_file() and not any(part.startswith(".") for part in parts):
                    try:
                        _split_name(p)
                        files.append(InputFile(p, parts[0] + "/" if len(parts) > 1 else p.name))
                    except DataError:
                        skipped.append(p)
        elif path.is_file():
            _split_name(path)
            files.append(InputFile(path, path.name))
        else:
            raise DataError(f"{path}: no such file")
    return files, skipped


def datasets_folder_files(path: Path) -> list[Path] | None:
    """The Arrow files of a folder written by ``datasets``' ``save_to_disk`` (one dataset: ``state.json``; several
    splits: ``dataset_dict.json`` and a folder each), in order; None for any other folder."""
    def split_files(folder: Path) -> list[Path]:
        try:
            state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
            return [folder / f["filename"] for f in state["_data_files"]]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise DataError(f"{folder / 'state.json'}: not the state of a datasets folder ({e})") from None

    if (path / "dataset_dict.json").is_file():
        try:
            splits = json.loads((path / "dataset_dict.json").read_text(encoding="utf-8"))["splits"]
        except (OSError, ValueError, KeyError) as e:
            raise DataError(f"{path / 'dataset_dict.json'}: not a datasets DatasetDict ({e})") from None
        return [f for split in splits for f in split_files(path / split)]
    if (path / "state.json").is_file() and (path / "dataset_info.json").is_file():
        return split_files(path)
    return None


def read_inputs(files: list[InputFile], text_field: str = "text") -> Iterator[Raw | Unreadable]:
    """Raw records of every file, in order."""
    for file in files:
        yield from read_raw(file.path, text_field, file.source)
