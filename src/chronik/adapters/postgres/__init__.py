"""PostgreSQL (psycopg 3, async, with a connection pool), one schema per database."""
