"""Metacontroller hooks that choose, label and peer Calico BGP route reflectors."""

__version__ = "0.1.0"
