"""Report builders (Markdown, HTML, images). Plain functions of tables; no Dagster import."""
