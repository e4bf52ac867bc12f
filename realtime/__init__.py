"""Moving events: broker backends, typing and presence with expiry. Never imports storage."""
