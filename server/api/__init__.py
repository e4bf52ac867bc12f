"""Public surfaces: each module translates one documented API into calls on the engine."""
