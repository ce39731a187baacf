"""The risk engine's model side: synthetic labelled history and the features computed from it."""
