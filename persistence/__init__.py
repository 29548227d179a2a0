"""PostgreSQL: the engine, the schema (ORM rows and alembic migrations) and the queries the layers above share."""
