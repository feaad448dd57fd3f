"""Schema enforcement for the embedded cluster: CRD loading, pruning, defaulting,
OpenAPI validation and CEL rules, as kube-apiserver's apiextensions does them."""

from service.embedded_cluster.schema.admission import SchemaAdmission
from service.embedded_cluster.schema.compiled import SchemaCompileError
from service.embedded_cluster.schema.loader import load_resource_types

__all__ = ["SchemaAdmission", "SchemaCompileError", "load_resource_types"]
