"""The embedded cluster's Kubernetes API server: storage, HTTP, watch, discovery, tables, auth, faults."""
