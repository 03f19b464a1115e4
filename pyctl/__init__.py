"""pyctl: a Docker-compatible command line for containerd."""

__version__ = "0.1.0"
