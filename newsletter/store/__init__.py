"""The only place that talks to the database.

``Store`` is composed of one query class per domain (articles, rates, audience,
editions, deliveries, events, locks); each lives in its own module so the SQL
for a domain sits in one file. Nothing outside ``newsletter.store`` builds SQL.
"""

from newsletter.store.db import Store, open_store

__all__ = ["Store", "open_store"]
