"""Persistence: models, engine, migrations, and the queries the pipeline runs."""
