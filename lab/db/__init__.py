"""The results database: SQLAlchemy models, sessions, idempotent ingest and Alembic migrations."""
