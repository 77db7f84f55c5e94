"""One Alembic history over every package's tables."""
