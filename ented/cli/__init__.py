"""The command lines, one module per console script: ``ented-train``, ``ented-test``, ``ented-demo``,
``ented-prepare``, ``ented-restore`` (and ``ented-benchmark``).

Each parses its arguments before importing anything heavy, so ``--help`` answers at once. Imports run
one way: these modules use the library (``ented.restoration``, ``ented.data``, ...), never the reverse.
"""
