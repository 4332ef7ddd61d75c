"""Photos in GridFS, with size and content type recorded.

The normalizer saves checked images here; channels load them back to send; the portal
serves them for published cases only.
"""
from __future__ import annotations

from bson import Binary, ObjectId
from bson.errors import InvalidId
from gridfs.errors import NoFile

from normalizer.messages import utcnow
from store.database import Database

CHUNK_BYTES = 255 * 1024  # GridFS's default chunk size


class MediaStore:
    def __init__(self, database: Database) -> None:
        self._fs = database.fs
        self._db = database.db

    async def save(self, data: bytes, *, content_type: str, filename: str,
                   metadata: dict[str, object] | None = None) -> str:
        """The GridFS layout written directly: the chunks, then the file document (so no reader
        sees a file without its chunks). PyMongo's upload checks the bucket's indexes with two
        queries on every file; `ensure_indexes` creates them once at start instead."""
        meta = {"content_type": content_type, "size": len(data), **(metadata or {})}
        file_id = ObjectId()
        chunks = [{"files_id": file_id, "n": n, "data": Binary(data[i:i + CHUNK_BYTES])}
                  for n, i in enumerate(range(0, len(data), CHUNK_BYTES))]
        if chunks:
            await self._db.media.chunks.insert_many(chunks)
        await self._db.media.files.insert_one({"_id": file_id, "length": len(data), "chunkSize": CHUNK_BYTES,
                                               "uploadDate": utcnow(), "filename": filename, "metadata": meta})
        return str(file_id)

    async def load(self, file_id: str) -> bytes:
        """Raise KeyError when there is no such file (or the id is not an ObjectId)."""
        try:
            stream = await self._fs.open_download_stream(ObjectId(file_id))
        except (InvalidId, TypeError, NoFile):
            raise KeyError(file_id) from None
        return await stream.read()

    async def info(self, file_id: str) -> dict[str, object]:
        try:
            cursor = self._fs.find({"_id": ObjectId(file_id)})
        except (InvalidId, TypeError):
            raise KeyError(file_id) from None
        async for grid_out in cursor:
            return dict(grid_out.metadata or {})
        raise KeyError(file_id)
