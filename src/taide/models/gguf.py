"""A fast reader of a GGUF's header: metadata and tensor infos, arrays skipped unless asked for, and a check that
the tensor data it describes fits in the file.

gguf-py's ``GGUFReader`` builds a numpy view per element, which takes seconds for a large vocabulary (9 s for Gemma
3's 262K tokens); resolving a reference, export and verification read headers often, so they use this instead.
"""

from __future__ import annotations

import math
import mmap
import struct
from dataclasses import dataclass
from pathlib import Path

from taide.errors import ModelError

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_NUMPY = {0: "u1", 1: "i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4", 6: "<f4", 7: "?", 10: "<u8", 11: "<i8", 12: "<f8"}
STRING, ARRAY = 8, 9


@dataclass
class TensorInfo:
    name: str
    shape: tuple[int, ...]  # GGUF order (fastest dimension first), as gguf-py reports it
    type_name: str
    n_elements: int
    n_bytes: int


@dataclass
class GGUFHeader:
    path: Path
    metadata: dict
    tensors: list[TensorInfo]
    array_lengths: dict  # arrays not read: key -> number of elements

    @property
    def parameters(self) -> int:
        return sum(t.n_elements for t in self.tensors)

    @property
    def tensor_bytes(self) -> int:
        return sum(t.n_bytes for t in self.tensors)


def read_header(path: str | Path, arrays: tuple[str, ...] = ()) -> GGUFHeader:
    """The metadata (arrays named in ``arrays`` read in full, short arrays always, others only counted) and the
    tensor infos of the GGUF at ``path``."""
    import gguf
    import numpy as np

    path = Path(path)
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        if mm[:4] != b"GGUF":
            raise ModelError(f"{path}: not a GGUF file (its first bytes are not 'GGUF'); the file is corrupt or of another format")
        pos = 4
        version, n_tensors, n_kv = struct.unpack_from("<IQQ", mm, pos)
        pos += 20

        def string(p):
            (n,) = struct.unpack_from("<Q", mm, p)
            return mm[p + 8:p + 8 + n].decode("utf-8", errors="replace"), p + 8 + n

        def value(p, vtype):
            if vtype == STRING:
                return string(p)
            fmt = _SCALARS[vtype]
            return struct.unpack_from(fmt, mm, p)[0], p + struct.calcsize(fmt)

        meta: dict = {"GGUF.version": version}
        lengths: dict = {}
        for _ in range(n_kv):
            key, pos = string(pos)
            (vtype,) = struct.unpack_from("<I", mm, pos)
            pos += 4
            if vtype != ARRAY:
                meta[key], pos = value(pos, vtype)
                continue
            etype, count = struct.unpack_from("<IQ", mm, pos)
            pos += 12
            want = key in arrays or count <= 64
            if etype == STRING:
                items = []
                for _ in range(count):
                    (n,) = struct.unpack_from("<Q", mm, pos)
                    if want:
                        items.append(mm[pos + 8:pos + 8 + n].decode("utf-8", errors="replace"))
                    pos += 8 + n
            elif etype == ARRAY:
                raise ModelError(f"{path}: nested array in {key}; not supported by this reader")
            else:
                size = struct.calcsize(_SCALARS[etype])
                items = np.frombuffer(mm, dtype=_NUMPY[etype], count=count, offset=pos).tolist() if want else None
                pos += size * count
            if want:
                meta[key] = items
            else:
                lengths[key] = count
        tensors, ends = [], []
        for _ in range(n_tensors):
            name, pos = string(pos)
            (n_dims,) = struct.unpack_from("<I", mm, pos)
            shape = struct.unpack_from(f"<{n_dims}Q", mm, pos + 4)
            ttype, offset = struct.unpack_from("<IQ", mm, pos + 4 + 8 * n_dims)
            pos += 4 + 8 * n_dims + 12
            qtype = gguf.GGMLQuantizationType(ttype)
            block, type_size = gguf.GGML_QUANT_SIZES[qtype]
            n = math.prod(shape)
            tensors.append(TensorInfo(name, tuple(shape), qtype.name, n, n // block * type_size))
            ends.append((offset + n // block * type_size, name))
        alignment = int(meta.get("general.alignment", 32))
        data_start = -(-pos // alignment) * alignment
        end, last = max(ends, default=(0, ""))
        if ends and data_start + end > len(mm):  # a truncated download is reported, not loaded
            raise ModelError(f"{path}: truncated: tensor {last} ends at byte {data_start + end:,} but the file has "
                             f"{len(mm):,} bytes")
    return GGUFHeader(path, meta, tensors, lengths)
