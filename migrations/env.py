"""Alembic environment: run with an engine handed in by `tally.db` (or TALLY_DATABASE_URL)."""

from __future__ import annotations

from alembic import context

from tally.db import TARGET_METADATA as target_metadata


def run() -> None:
    engine = context.config.attributes.get("engine")
    if engine is None:
        from tally.db import make_engine
        from tally.settings import Settings

        engine = make_engine(Settings().database_url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run `tally migrate`")
run()
