"""Action implementations, one module per system (issue 4 adds AWS, Kubernetes, …)."""
