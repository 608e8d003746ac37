"""The only place that talks to the database.

``Store`` is composed of one query class per domain (articles, rates, audience,
editions, deliveries, events, locks); each lives in its own module so the SQL
for a domain sits in one file. Nothing outside ``newsletter.store`` builds SQL.

What the store returns is typed: dataclasses (``BatchRecord``,
``DeliveryRecord``, ``EditionDetails``, ``LockHolder`` …), never rows or dicts.
A domain writes only its own tables; a transaction that must change another
domain's rows calls that domain's module-level function taking the connection
(``editions.mark_frozen``, ``deliveries.write_event_statuses``,
``audience.write_subscriber_changes``). Every status change goes through the
tables of :mod:`newsletter.states` (``base.move_row``, ``base.can_move``).
"""

from newsletter.store.db import Store, open_store

__all__ = ["Store", "open_store"]
