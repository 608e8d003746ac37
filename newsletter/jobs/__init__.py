"""The scheduled run (`newsletter run`), its outcomes, alerts and the schedule overview."""
