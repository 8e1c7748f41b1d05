"""Moving a backup's bytes between the DB host, the operator and the store: what the backup,
restore, verify and rehearse steps share (no step imports another step).

- :mod:`.stream`: the bytes on their way: hashed and counted (:class:`~.stream.HashingReader`),
  zstd-compressed on the operator (:class:`~.stream.ZstdReader`) or decompressed
  (:func:`~.stream.zstd_decoder`), progress events kept bounded (:class:`~.stream.Every`),
  and the dump's own stream out of ``pg_dump`` on the DB host (:class:`~.stream.DumpStream`).
- :mod:`.restore`: a backup into a NEW database on the DB host, reading only bytes whose
  size and sha256 match the manifest: the ``file`` / ``spool`` choice, the pump, the spool.

Neither takes the run's context: a step passes the DB host (a ``targets`` Target), the store,
the database access and its own ``emit`` / ``progress`` callbacks (:class:`.restore.Route`).
They never know whether the host is local or SSH, or the store S3 or a folder.
"""
