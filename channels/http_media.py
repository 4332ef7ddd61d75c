"""Downloading an attachment from a platform CDN URL, never more than a size cap.

The Zalo and Facebook channels' `fetch_media` call this: their webhooks carry image URLs,
not file ids. A refusal that will not change on retry (too large, gone) is a
`MediaRejected` the normalizer reports to the citizen; network trouble and 5xx raise
`httpx.HTTPError`, so the pipeline retries the event later.
"""
from __future__ import annotations

import httpx

from normalizer.media import MediaRejected


async def download_capped(client: httpx.AsyncClient, url: str, cap: int) -> bytes:
    """GET `url` streaming; MediaRejected("too_large") past `cap` bytes."""
    async with client.stream("GET", url, follow_redirects=True) as response:
        if response.status_code in (403, 404, 410):  # CDN links expire: it will not come back
            raise MediaRejected("unavailable")
        response.raise_for_status()
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap:
            raise MediaRejected("too_large")
        chunks, size = [], 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > cap:
                raise MediaRejected("too_large")
            chunks.append(chunk)
    return b"".join(chunks)
