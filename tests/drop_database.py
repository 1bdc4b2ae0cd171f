"""Drop a PostgreSQL database, if there is one: a test session's own at its end (tests/conftest.py), and
`make mutation`'s template before a run (``python tests/drop_database.py URL NAME``), so that the run
starts from the code as it is."""

import sys

from sqlalchemy import create_engine, make_url, text


def drop_database(url: str, name: str) -> None:
    engine = create_engine(make_url(url).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        quoted = conn.dialect.identifier_preparer.quote_identifier(name)
        conn.execute(text(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"))
    engine.dispose()


if __name__ == "__main__":
    drop_database(*sys.argv[1:])
