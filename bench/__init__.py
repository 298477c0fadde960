"""`make bench`: the mirror store against the local IRSA target, side by side with baselines."""
