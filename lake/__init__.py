"""The lake: LanceDB tables for RefVIE data, SQL (DuckDB) and Daft over them, media codecs, versions and tags.

    import lake
    db = lake.open()                      # ./data/lake, or $KIWI_LAKE, or any s3:// gs:// az:// URI
    db.sql("SELECT edit_type, count(*) FROM quadruplets GROUP BY 1")
"""

from lake.db import DEFAULT_URI, Lake, TableInfo, VersionInfo, WriteResult, default_uri, exists, open
from lake.errors import LakeError, MediaError, SchemaMismatchError
from lake.memory import CacheLimits
from lake.schema import TABLES, TableSpec
from lake.taxonomy import EditScope, EditType, Split, Task

__all__ = [
    "DEFAULT_URI", "TABLES", "CacheLimits", "EditScope", "EditType", "Lake", "LakeError", "MediaError",
    "SchemaMismatchError", "Split", "TableInfo", "TableSpec", "Task", "VersionInfo", "WriteResult", "default_uri",
    "exists", "open",
]
