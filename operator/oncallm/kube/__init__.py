"""Talking to the Kubernetes API: clients, raw reads, the watch-backed analysis store."""
