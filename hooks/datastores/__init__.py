"""Appliers that write a plan to a datastore; the only modules here that talk to a store."""
