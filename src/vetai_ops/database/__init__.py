"""Database room: clusters, connections, Alembic wiring, introspection."""
