"""Migrations: an empty database migrated to head has exactly the models' schema, a database
made by create_all before migrations existed upgrades cleanly, and history has one head."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from app import create_app
from extensions import db
from storage import INITIAL_REVISION, MIGRATIONS, upgrade_database


@pytest.fixture
def bare_app(database_url, tmp_path, monkeypatch):
    """The app on an empty database (every table dropped), nothing created at start."""
    monkeypatch.setenv("GATEWAY_CONFIG", str(tmp_path / "absent.toml"))
    app = create_app({"SQLALCHEMY_DATABASE_URI": database_url, "CREATE_TABLES": False,
                      "PROVIDERS": []})
    with app.app_context():
        _drop_everything()
    yield app
    app.extensions["billing"].shutdown()
    with app.app_context():
        _drop_everything()
        db.engine.dispose()


def _drop_everything():
    db.drop_all()
    with db.engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS alembic_version"))


def schema_differences(app) -> list:
    """What autogenerate would change to make the database match the models (none: equal)."""
    with app.app_context(), db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(context, db.metadata)


def head(app) -> str:
    with app.app_context(), db.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def test_one_head():
    script = ScriptDirectory(MIGRATIONS)
    assert len(script.get_heads()) == 1, script.get_heads()


def test_empty_database_migrates_to_the_models_schema(bare_app):
    upgrade_database(bare_app)
    assert schema_differences(bare_app) == []
    assert head(bare_app) == ScriptDirectory(MIGRATIONS).get_current_head()
    upgrade_database(bare_app)  # idempotent: a second start changes nothing
    assert schema_differences(bare_app) == []


def test_database_made_before_migrations_upgrades(bare_app):
    """create_all as the code before migrations ran it: the tables, no alembic_version."""
    from models import User
    upgrade_database(bare_app, INITIAL_REVISION)  # today's schema at the time of that code
    with bare_app.app_context():
        with db.engine.begin() as conn:  # plain SQL: the models may have grown since 0001
            conn.execute(text("DROP TABLE alembic_version"))
            conn.execute(text("INSERT INTO users (name, created_at) "
                              "VALUES ('before-migrations', CURRENT_TIMESTAMP)"))
    upgrade_database(bare_app)
    assert head(bare_app) == ScriptDirectory(MIGRATIONS).get_current_head()
    assert schema_differences(bare_app) == []
    with bare_app.app_context():
        assert db.session.query(User).filter_by(name="before-migrations").count() == 1
        assert "alembic_version" in inspect(db.engine).get_table_names()


def test_start_up_migrates_a_fresh_database(tmp_path, monkeypatch):
    """The default (CREATE_TABLES on): the app brings a new SQLite file to head by itself."""
    monkeypatch.setenv("GATEWAY_CONFIG", str(tmp_path / "absent.toml"))
    app = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/fresh.db",
                      "PROVIDERS": []})
    try:
        assert head(app) == ScriptDirectory(MIGRATIONS).get_current_head()
        assert schema_differences(app) == []
    finally:
        app.extensions["billing"].shutdown()
