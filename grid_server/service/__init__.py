"""Application services between the HTTP routes and the database: ingest, cycle, queries."""
