"""Delivery: backends behind one contract, and the send state machine."""
