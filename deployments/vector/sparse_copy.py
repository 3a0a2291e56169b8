"""Copying the embedded store's files for snapshots and restores, holes kept as holes."""

import os
import shutil


def copy_sparse(src: str, dst: str) -> None:
    """Copies a file's data regions only: the engine's files are mostly holes (a 32 MB WAL segment holding a few
    points), which a plain copy would write out as zeros (a 300 KB shard became 180 MB)."""
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        size, pos = os.fstat(fin.fileno()).st_size, 0
        while pos < size:
            try:
                start = os.lseek(fin.fileno(), pos, os.SEEK_DATA)
            except OSError:  # ENXIO: only a hole is left
                break
            end = os.lseek(fin.fileno(), start, os.SEEK_HOLE)
            fin.seek(start)
            fout.seek(start)
            while start < end:
                block = fin.read(min(end - start, 1 << 20))
                fout.write(block)
                start += len(block)
            pos = end
        fout.truncate(size)
    shutil.copystat(src, dst)
