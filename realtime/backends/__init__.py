"""Broker backends, one module each, imported lazily by realtime.broker.create_broker."""
