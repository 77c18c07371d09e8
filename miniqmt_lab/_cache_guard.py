"""Keep numba's on-disk cache honest across modules.

numba's ``cache=True`` keys a cached function on its own source file only: a loop that inlines the
rule kernel from another file would keep running the old rules after the kernel is edited. Before
such a module compiles anything, :func:`drop_stale_cache` compares a fingerprint of the files it
depends on with the one stored beside its cache, and deletes the module's cache files when they differ.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def _fingerprint(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.name.encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


def drop_stale_cache(module_file: str, depends_on: list[str]) -> bool:
    """Delete ``module_file``'s numba cache if a file in ``depends_on`` changed; True when it did.

    Only numba's default cache location (``__pycache__`` beside the module) is managed: a
    ``NUMBA_CACHE_DIR`` is the user's own to clear. A read-only install is left alone.
    """
    if os.environ.get("NUMBA_CACHE_DIR") or os.environ.get("NUMBA_DISABLE_JIT") == "1":
        return False
    module = Path(module_file)
    cache_dir = module.parent / "__pycache__"
    stamp = cache_dir / f"{module.stem}.kernel-deps"
    current = _fingerprint([Path(f) for f in depends_on])
    try:
        if stamp.read_text(encoding="ascii") == current:
            return False
    except OSError:
        pass
    try:
        cache_dir.mkdir(exist_ok=True)
        for pattern in (f"{module.stem}.*.nbi", f"{module.stem}.*.nbc"):
            for stale in cache_dir.glob(pattern):
                stale.unlink(missing_ok=True)
        stamp.write_text(current, encoding="ascii")
    except OSError:
        return False
    return True
