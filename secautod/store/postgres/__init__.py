"""The PostgreSQL backend: `JobStore("postgresql://...")` (SPEC §11).

Needs the optional dependencies `secautod[postgresql]` (psycopg 3 and
psycopg_pool); nothing here is imported until such a store is opened.
"""
