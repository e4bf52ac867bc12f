"""Live Operator Chat: the application (endpoints, auth, the conversation engine)."""
