"""The built-in (non-CRD) resource types the embedded API server serves."""

from __future__ import annotations

from service.embedded_cluster.contracts import Obj, ResourceType

_AGE: Obj = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}

NAMESPACES = ResourceType("", "v1", "Namespace", "namespaces", "namespace", namespaced=False,
                          list_kind="NamespaceList", short_names=("ns",),
                          printer_columns=({"name": "Status", "type": "string", "jsonPath": ".status.phase"}, _AGE))
SECRETS = ResourceType("", "v1", "Secret", "secrets", "secret", namespaced=True, list_kind="SecretList",
                       printer_columns=({"name": "Type", "type": "string", "jsonPath": ".type"}, _AGE))
CONFIGMAPS = ResourceType("", "v1", "ConfigMap", "configmaps", "configmap", namespaced=True,
                          list_kind="ConfigMapList", short_names=("cm",))
LEASES = ResourceType("coordination.k8s.io", "v1", "Lease", "leases", "lease", namespaced=True,
                      list_kind="LeaseList",
                      printer_columns=({"name": "Holder", "type": "string", "jsonPath": ".spec.holderIdentity"}, _AGE))
TOKEN_REVIEWS = ResourceType("authentication.k8s.io", "v1", "TokenReview", "tokenreviews", "tokenreview",
                             namespaced=False)
SUBJECT_ACCESS_REVIEWS = ResourceType("authorization.k8s.io", "v1", "SubjectAccessReview",
                                      "subjectaccessreviews", "subjectaccessreview", namespaced=False)

BUILTIN_TYPES: tuple[ResourceType, ...] = (NAMESPACES, SECRETS, CONFIGMAPS, LEASES)
# Create-only review resources: answered at once, never stored.
REVIEW_TYPES: tuple[ResourceType, ...] = (TOKEN_REVIEWS, SUBJECT_ACCESS_REVIEWS)
