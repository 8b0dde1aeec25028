"""Small helpers shared across tunelab."""
