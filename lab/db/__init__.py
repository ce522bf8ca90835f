"""The results database, the only place with SQL: models, sessions, migrations, ingest, queries and loaders."""
