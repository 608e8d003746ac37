"""Tracking: the signed event webhook, status precedence, unsubscribe pages.

``newsletter serve`` runs :func:`newsletter.tracking.app.create_app` under uvicorn.
"""
