"""Photos in GridFS, with size and content type recorded.

The normalizer saves checked images here; channels load them back to send; the portal
serves them for published cases only.
"""
from __future__ import annotations

from bson import ObjectId
from bson.errors import InvalidId
from gridfs.errors import NoFile

from store.database import Database


class MediaStore:
    def __init__(self, database: Database) -> None:
        self._fs = database.fs

    async def save(self, data: bytes, *, content_type: str, filename: str,
                   metadata: dict[str, object] | None = None) -> str:
        meta = {"content_type": content_type, "size": len(data), **(metadata or {})}
        file_id = await self._fs.upload_from_stream(filename, data, metadata=meta)
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
