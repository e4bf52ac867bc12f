"""How the engine's records look on each public surface: the operator panel's snake_case and
the App Command API's camelCase. The core (events, push, outbound) renders through these, so
nothing outside server/api imports an endpoint module."""
