"""Writing a list as a Project VIC (VICS) hash set, 2.0 or 1.3, streamed.

Only hashes and categories leave: no paths, file names, EXIF or case
details (a list has none, and a hash set needs none). Each hash is its own
``Media`` record (``MediaID`` counting from 1) with its ``Category`` code
from the :class:`~node.log.vics.CategoryMap` (the code a category was
imported from; 1, child abuse material, for any other), hex in upper case as
Project VIC distributes it. PhotoDNA is the 2.0 top-level ``PhotoDNA``, or
in 1.3 an ``AlternativeHashes`` entry, as readers of each version expect.
PDQ has no VICS field and is left out.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

from node.log.vics import CategoryMap

__all__ = ["MODEL_URLS", "write_vics"]

MODEL_URLS = {
    "2.0": (
        "@odata.context",
        "http://github.com/VICSDATAMODEL/ProjectVic/DataModels/2.0.xml/Default/$metadata#Media",
    ),
    "1.3": ("odata.metadata", "http://github.com/ICMEC/ProjectVic/DataModels/1.3.xml#Media"),
}
_FIELDS = {"md5": "MD5", "sha1": "SHA1", "sha256": "SHA256"}
_PER_CHUNK = 2_000


def write_vics(
    items: Iterable[tuple[str, str, str]],
    *,
    version: str = "2.0",
    categories: CategoryMap | None = None,
) -> Iterator[str]:
    """The hash set as JSON text, a few thousand records per chunk."""
    cats = categories or CategoryMap()
    key, url = MODEL_URLS[version]
    yield json.dumps({key: url})[:-1] + ',"value":['
    n = 0
    batch: list[str] = []
    for htype, value, category in items:
        media: dict[str, object] = {"MediaID": n + 1, "Category": cats.code_for(category)}
        if htype in _FIELDS:
            media[_FIELDS[htype]] = value.upper()
        elif htype == "photodna":
            if version == "2.0":
                media["PhotoDNA"] = value
            else:
                media["AlternativeHashes"] = [{"HashName": "PhotoDNA", "HashValue": value}]
        else:
            continue  # no VICS field for it
        batch.append(("," if n else "") + json.dumps(media, separators=(",", ":")))
        n += 1
        if len(batch) >= _PER_CHUNK:
            yield "".join(batch)
            batch = []
    batch.append("]}\n")
    yield "".join(batch)
