"""Read-only lmdb access shared by every dataset of a process.

BasicSR's ``LmdbBackend`` opens a new environment per dataset, and py-lmdb refuses to open one
path twice in a process ("already open in this process"): a training and a validation dataset
reading the same lmdb, or a DataLoader worker forked after the main process read it, would fail.
Here each process opens each lmdb once; a worker that inherited an environment through ``fork``
closes its copy (LMDB forbids using it across fork) and opens its own.
"""

import os

import lmdb

_environments: dict = {}  # real path -> (pid that opened it, environment)


def open_lmdb(path: str, **options) -> lmdb.Environment:
    """The read-only environment of ``path`` for this process.

    Args:
        path: an ``.lmdb`` folder.
        options: extra ``lmdb.open`` arguments (BasicSR's io_backend keys such as ``readahead``).
    """
    key = os.path.realpath(path)
    cached = _environments.get(key)
    if cached is not None:
        owner, environment = cached
        if owner == os.getpid():
            return environment
        environment.close()  # inherited through fork: this process must open its own
    if not os.path.isdir(path):
        raise FileNotFoundError(f"lmdb {path} does not exist")
    settings = {"readonly": True, "lock": False, "readahead": False, **options}
    environment = lmdb.open(path, **settings)
    _environments[key] = (os.getpid(), environment)
    return environment


def read_lmdb(path: str, key: str, **options) -> bytes | None:
    """The bytes stored under ``key`` in the lmdb at ``path``, or None when the key is absent."""
    with open_lmdb(path, **options).begin(write=False) as txn:
        return txn.get(key.encode("utf-8"))
