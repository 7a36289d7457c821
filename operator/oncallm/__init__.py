"""OnCallM: root-cause analysis for Kubernetes alerts."""
