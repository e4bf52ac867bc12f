"""Static files the app serves: the embeddable chat window (and later the operator inbox)."""
