"""BigQuery external tables over a dataset on Cloud Storage: the DDL the README shows, written by
code so that a test keeps the README and the layout in step (BigQuery itself cannot run here).

Two settings matter: hive partitioning (`WITH PARTITION COLUMNS` and the URI prefix that ends
where the `date=` folders begin; `date` and `topic` are in the paths only), and Parquet list
inference (`enable_list_inference`), which reads the compliant three-level lists the sink writes
as ARRAYs (`authors ARRAY<STRING>`) rather than as records with a `list.element` field.
"""

from __future__ import annotations

__all__ = ["PARTITION_COLUMNS", "external_table_ddl"]

# The hive partition columns of each dataset and their BigQuery types (sinks.py writes them).
PARTITION_COLUMNS = {
    "articles": (("date", "DATE"), ("topic", "STRING")),
    "duplicates": (("date", "DATE"),),
    "stories": (("date", "DATE"),),
    "errors": (("date", "DATE"),),
}


def external_table_ddl(output_uri: str, bigquery_dataset: str,
                       datasets: tuple[str, ...] = tuple(PARTITION_COLUMNS)) -> str:
    """CREATE EXTERNAL TABLE statements, one per dataset, for the newsbeam dataset at
    `output_uri` (gs://bucket/path) in the BigQuery dataset `project.dataset`."""
    prefix = output_uri.rstrip("/")
    statements = []
    for name in datasets:
        columns = ", ".join(f"`{column}` {kind}" for column, kind in PARTITION_COLUMNS[name])
        statements.append(
            f"CREATE EXTERNAL TABLE `{bigquery_dataset}.{name}`\n"
            f"WITH PARTITION COLUMNS ({columns})\n"
            "OPTIONS (\n"
            "  format = 'PARQUET',\n"
            f"  uris = ['{prefix}/{name}/*'],\n"
            f"  hive_partition_uri_prefix = '{prefix}/{name}/',\n"
            "  enable_list_inference = TRUE\n"
            ");")
    return "\n\n".join(statements)
