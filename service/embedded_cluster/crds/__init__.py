"""Schema-only copies of the platform's CRDs (made by scripts/strip-crds) and the
hand-written DataExport CRD; a package so that installs carry the YAML files."""
