"""registry-refcount: reference counting and garbage collection for the
Docker Registry v1 server (docker-registry 0.9.1)."""

__version__ = '0.1.0'
