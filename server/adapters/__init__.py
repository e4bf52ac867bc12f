"""Clients for the outside services the server talks to: each behind a small protocol, each
tested against a local server that speaks the provider's API."""
