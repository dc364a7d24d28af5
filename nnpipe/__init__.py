"""nnpipe: the Made With ML "Neural Networks" lesson as a reproducible DVC pipeline."""
