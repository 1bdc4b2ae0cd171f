"""``python tests/drop_database.py URL NAME``: drop the PostgreSQL database NAME on URL's server, if there is
one. `make mutation` drops its template database this way, so that a run starts from the code as it is."""

import sys

from sqlalchemy import create_engine, make_url, text


def main(url: str, name: str) -> None:
    engine = create_engine(make_url(url).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        quoted = conn.dialect.identifier_preparer.quote_identifier(name)
        conn.execute(text(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"))
    engine.dispose()


if __name__ == "__main__":
    main(*sys.argv[1:])
