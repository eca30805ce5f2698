"""Benchmarks of the hooks on realistic clusters: latency, memory, BGPPeers and churn."""
