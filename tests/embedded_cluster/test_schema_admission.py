"""SchemaAdmission: pruning, defaulting, OpenAPI validation and CEL rules, with the
causes and messages kube-apiserver gives."""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest

from service.embedded_cluster.contracts import ResourceType, StatusError
from service.embedded_cluster.schema import SchemaAdmission, load_resource_types
from service.embedded_cluster.schema.compiled import SchemaCompileError

GROUP = "virtualization.deckhouse.io"
API = f"{GROUP}/v1alpha2"
TYPES = {(rtype.kind, rtype.version): rtype for rtype in load_resource_types()}
ADMISSION = SchemaAdmission()


def rtype(kind: str, version: str = "v1alpha2") -> ResourceType:
    return TYPES[(kind, version)]


def admit(kind: str, obj: dict[str, Any], old: dict[str, Any] | None = None, *, subresource: str = "",
          version: str = "v1alpha2") -> dict[str, Any]:
    return ADMISSION.admit(rtype(kind, version), obj, old, subresource=subresource)


def rejected(kind: str, obj: dict[str, Any], old: dict[str, Any] | None = None, *, subresource: str = "",
             version: str = "v1alpha2") -> StatusError:
    with pytest.raises(StatusError) as caught:
        admit(kind, obj, old, subresource=subresource, version=version)
    return caught.value


def causes(error: StatusError) -> set[tuple[str, str]]:
    return {(cause.reason, cause.field) for cause in error.causes}


def vmop(spec: dict[str, Any], name: str = "op") -> dict[str, Any]:
    return {"apiVersion": API, "kind": "VirtualMachineOperation", "metadata": {"name": name, "namespace": "demo"},
            "spec": copy.deepcopy(spec)}


def clone_spec(clone: dict[str, Any]) -> dict[str, Any]:
    return {"type": "Clone", "virtualMachineName": "linux-vm", "clone": clone}


CRD_CLONE = clone_spec({"mode": "Strict", "nameReplacement": [
    {"from": {"kind": "VirtualMachine", "name": "linux-vm"}, "to": "linux-vm-clone"}]})


def vm(spec_extra: dict[str, Any] | None = None) -> dict[str, Any]:
    spec = {"virtualMachineClassName": "generic", "cpu": {"cores": 1, "coreFraction": "10%"},
            "memory": {"size": "1Gi"}, "blockDeviceRefs": [{"kind": "VirtualDisk", "name": "linux-vm-root"}],
            **(spec_extra or {})}
    return {"apiVersion": API, "kind": "VirtualMachine", "metadata": {"name": "linux-vm", "namespace": "demo"},
            "spec": spec}


# --- the guide's clone example -------------------------------------------------------------

def test_guide_clone_spelling_is_pruned_then_rejected_by_the_cel_rule() -> None:
    guide = vmop(clone_spec({"mode": "Strict", "customization": {}, "nameReplacements": [
        {"from": {"kind": "VirtualMachine", "name": "linux-vm"}, "to": {"name": "linux-vm-clone"}}]}), "clone")
    error = rejected("VirtualMachineOperation", guide)
    assert (error.code, error.reason) == (422, "Invalid")
    rule_message = ("At least one of customization.namePrefix, customization.nameSuffix, or nameReplacement "
                    "must be set")
    assert [(c.reason, c.field) for c in error.causes] == [("FieldValueInvalid", "spec.clone")]
    assert error.causes[0].message == f'Invalid value: "object": {rule_message}'
    assert error.message == (f'VirtualMachineOperation.{GROUP} "clone" is invalid: spec.clone: '
                             f'Invalid value: "object": {rule_message}')
    assert (error.kind, error.name, error.group) == ("VirtualMachineOperation", "clone", GROUP)


def test_crd_clone_spelling_is_accepted_unchanged() -> None:
    admitted = admit("VirtualMachineOperation", vmop(CRD_CLONE))
    assert admitted["spec"] == CRD_CLONE
    assert admitted["apiVersion"] == API and admitted["kind"] == "VirtualMachineOperation"


def test_admission_does_not_mutate_its_input() -> None:
    obj = vmop(clone_spec({"mode": "Strict", "customization": {"namePrefix": "x-"}, "junk": 1}))
    before = copy.deepcopy(obj)
    admitted = admit("VirtualMachineOperation", obj)
    assert obj == before
    assert "junk" not in admitted["spec"]["clone"]


def test_customization_rules_bound_prefix_and_suffix_length() -> None:
    error = rejected("VirtualMachineOperation", vmop(clone_spec(
        {"mode": "DryRun", "customization": {"namePrefix": "p" * 60, "nameSuffix": ""}})))
    fields = [(c.field, c.message) for c in error.causes]
    assert ("spec.clone.customization",
            'Invalid value: "object": namePrefix length must be between 1 and 59 characters if set') in fields
    assert ("spec.clone.customization",
            'Invalid value: "object": nameSuffix length must be between 1 and 59 characters if set') in fields


def test_name_replacement_to_longer_than_59_is_rejected_by_its_list_rule() -> None:
    spec = clone_spec({"mode": "Strict", "nameReplacement": [{"from": {"name": "linux-vm"}, "to": "n" * 60}]})
    error = rejected("VirtualMachineOperation", vmop(spec))
    assert causes(error) == {("FieldValueInvalid", "spec.clone.nameReplacement")}
    assert "Each nameReplacement.to must be between 1 and 59 characters" in error.causes[0].message


# --- transition rules -----------------------------------------------------------------------

def test_spec_is_immutable_on_update_but_the_same_spec_is_allowed() -> None:
    stored = admit("VirtualMachineOperation", vmop(CRD_CLONE))
    assert admit("VirtualMachineOperation", copy.deepcopy(stored), stored)["spec"] == CRD_CLONE
    changed = copy.deepcopy(stored)
    changed["spec"]["virtualMachineName"] = "other-vm"
    error = rejected("VirtualMachineOperation", changed, stored)
    assert [(c.reason, c.field, c.message) for c in error.causes] == [
        ("FieldValueInvalid", "spec", 'Invalid value: "object": .spec is immutable')]


def test_transition_rules_are_skipped_on_create_and_when_the_old_value_is_absent() -> None:
    admit("VirtualMachineOperation", vmop(CRD_CLONE), None)
    old_without_spec = {"apiVersion": API, "kind": "VirtualMachineOperation", "metadata": {"name": "op"}}
    admit("VirtualMachineOperation", vmop(CRD_CLONE), old_without_spec)


def test_cpu_of_a_vm_class_is_immutable() -> None:
    vmc = {"apiVersion": API, "kind": "VirtualMachineClass", "metadata": {"name": "generic"},
           "spec": {"cpu": {"type": "Host"}}}
    stored = admit("VirtualMachineClass", vmc)
    changed = copy.deepcopy(stored)
    changed["spec"]["cpu"] = {"type": "Discovery"}
    error = rejected("VirtualMachineClass", changed, stored)
    assert ("FieldValueInvalid", "spec.cpu") in causes(error)
    assert any(".spec.cpu is immutable" in c.message for c in error.causes)


# --- OpenAPI validation -------------------------------------------------------------------------

def test_enum_required_and_type_errors_have_kubernetes_causes() -> None:
    error = rejected("VirtualMachineOperation", vmop({"type": "Explode", "force": "yes"}))
    assert causes(error) >= {("FieldValueRequired", "spec.virtualMachineName"),
                             ("FieldValueNotSupported", "spec.type"),
                             ("FieldValueTypeInvalid", "spec.force")}
    by_field = {c.field: c.message for c in error.causes}
    assert by_field["spec.virtualMachineName"] == "Required value"
    assert by_field["spec.type"] == ('Unsupported value: "Explode": supported values: "Restart", "Start", "Stop", '
                                     '"Migrate", "Evict", "Restore", "Clone"')
    assert by_field["spec.force"] == 'Invalid value: "string": spec.force in body must be of type boolean: "string"'
    # a type or enum error blocks CEL, and the API server says so
    assert ("FieldValueInvalid", "<nil>") in causes(error)
    assert error.message.startswith(f'VirtualMachineOperation.{GROUP} "op" is invalid: [')


def test_nested_field_paths_use_dots_and_indexes() -> None:
    spec = clone_spec({"mode": "Sideways", "nameReplacement": [{"from": {"kind": "VirtualMachine"}, "to": 5}]})
    error = rejected("VirtualMachineOperation", vmop(spec))
    assert causes(error) >= {("FieldValueNotSupported", "spec.clone.mode"),
                             ("FieldValueRequired", "spec.clone.nameReplacement[0].from.name"),
                             ("FieldValueTypeInvalid", "spec.clone.nameReplacement[0].to")}


def test_pattern_and_min_length() -> None:
    error = rejected("VirtualMachine", vm({"cpu": {"cores": 1, "coreFraction": "150%"}, "memory": {"size": "lots"},
                                           "virtualMachineClassName": ""}))
    by_field = {c.field: (c.reason, c.message) for c in error.causes}
    assert by_field["spec.cpu.coreFraction"] == (
        "FieldValueInvalid",
        'Invalid value: "150%": spec.cpu.coreFraction in body should match \'^(Auto|(100|[1-9][0-9]?)%)$\'')
    assert by_field["spec.memory.size"][0] == "FieldValueInvalid"


def test_minimum_max_items_and_max_length() -> None:
    refs = [{"kind": "VirtualDisk", "name": f"d{i}"} for i in range(17)]
    error = rejected("VirtualMachine", vm({"cpu": {"cores": 0}, "blockDeviceRefs": refs}))
    by_field = {c.field: (c.reason, c.message) for c in error.causes}
    assert by_field["spec.cpu.cores"] == (
        "FieldValueInvalid", "Invalid value: 0: spec.cpu.cores in body should be greater than or equal to 1")
    assert by_field["spec.blockDeviceRefs"] == ("FieldValueTooMany", "Too many: 17: must have at most 16 items")
    md5 = {"type": "HTTP", "http": {"url": "https://example.com/a.img", "checksum": {"md5": "a" * 33}}}
    disk = {"apiVersion": API, "kind": "VirtualDisk", "metadata": {"name": "d", "namespace": "demo"},
            "spec": {"dataSource": md5}}
    error = rejected("VirtualDisk", disk)
    assert ("FieldValueTooLong", "spec.dataSource.http.checksum.md5") in causes(error)


def test_one_of_branches_of_vm_provisioning() -> None:
    admit("VirtualMachine", vm({"provisioning": {"type": "UserData", "userData": "#cloud-config"}}))
    both = {"type": "UserData", "userData": "#cloud-config", "userDataRef": {"name": "secret"}}
    error = rejected("VirtualMachine", vm({"provisioning": both}))
    assert any(c.field == "spec.provisioning" and "(oneOf)" in c.message for c in error.causes)


def test_format_date_time_and_byte_are_checked() -> None:
    obj: dict[str, Any] = {
        "apiVersion": API, "kind": "VirtualDiskSnapshot", "metadata": {"name": "s", "namespace": "demo"},
        "spec": {"virtualDiskName": "linux-vm-root"},
        "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "R", "message": "",
                                   "lastTransitionTime": "yesterday"}]}}
    error = rejected("VirtualDiskSnapshot", obj, subresource="status")
    assert causes(error) == {("FieldValueInvalid", "status.conditions[0].lastTransitionTime")}
    obj["status"]["conditions"][0]["lastTransitionTime"] = "2026-11-25T17:00:00Z"
    admit("VirtualDiskSnapshot", obj, subresource="status")


def test_int_or_string_and_its_cel_rule() -> None:
    policy = {"cores": {"min": 1, "max": 4}, "defaultCoreFraction": 150}
    vmc = {"apiVersion": API, "kind": "VirtualMachineClass", "metadata": {"name": "generic"},
           "spec": {"cpu": {"type": "Host"}, "sizingPolicies": [policy]}}
    error = rejected("VirtualMachineClass", vmc)
    assert any("The default core fraction must be a number from 1 to 100, or 'Auto'." in c.message
               for c in error.causes)
    policy["defaultCoreFraction"] = "Auto"
    admit("VirtualMachineClass", vmc)
    policy["defaultCoreFraction"] = [1]
    error = rejected("VirtualMachineClass", vmc)
    assert ("FieldValueTypeInvalid", "spec.sizingPolicies[0].defaultCoreFraction") in causes(error)


def test_list_map_keys_must_be_unique() -> None:
    export = {"apiVersion": "deckhouse.io/v1alpha1", "kind": "DataExport",
              "metadata": {"name": "e", "namespace": "demo"},
              "spec": {"targetRef": {"kind": "VirtualDisk", "name": "linux-vm-root"}},
              "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "Ready", "status": "False"}]}}
    error = rejected("DataExport", export, subresource="status", version="v1alpha1")
    assert [(c.reason, c.field) for c in error.causes] == [("FieldValueDuplicate", "status.conditions[1]")]
    assert error.causes[0].message == 'Duplicate value: {"type":"Ready"}'


def test_cel_rule_escaped_property_name_namespace() -> None:
    source = {"type": "ObjectRef", "objectRef": {"kind": "VirtualDisk", "name": "d"}}
    cvi: dict[str, Any] = {"apiVersion": API, "kind": "ClusterVirtualImage", "metadata": {"name": "img"},
                           "spec": {"dataSource": source}}
    error = rejected("ClusterVirtualImage", cvi)
    assert any("The namespace is required" in c.message for c in error.causes)
    cvi["spec"]["dataSource"]["objectRef"]["namespace"] = "demo"
    admit("ClusterVirtualImage", cvi)


# --- defaults -----------------------------------------------------------------------------------------

def test_defaults_of_disk_and_vm_snapshots() -> None:
    vds = {"apiVersion": API, "kind": "VirtualDiskSnapshot", "metadata": {"name": "s", "namespace": "demo"},
           "spec": {"virtualDiskName": "linux-vm-root"}}
    assert admit("VirtualDiskSnapshot", vds)["spec"] == {"virtualDiskName": "linux-vm-root",
                                                         "requiredConsistency": True}
    vms: dict[str, Any] = {"apiVersion": API, "kind": "VirtualMachineSnapshot",
                           "metadata": {"name": "s", "namespace": "demo"}, "spec": {"virtualMachineName": "linux-vm"}}
    spec = admit("VirtualMachineSnapshot", vms)["spec"]
    assert spec == {"virtualMachineName": "linux-vm", "keepIPAddress": "Always", "requiredConsistency": True}
    vms["spec"]["keepIPAddress"] = "Never"
    assert admit("VirtualMachineSnapshot", vms)["spec"]["keepIPAddress"] == "Never"


def test_defaults_apply_in_existing_parents_only_and_replace_nulls() -> None:
    spec = admit("VirtualMachine", vm({"osType": None}))["spec"]
    assert spec["osType"] == "Generic"
    assert spec["disruptions"] == {"restartApprovalMode": "Manual"}
    assert "provisioning" not in spec   # its children's defaults need the parent to exist
    with_ref = admit("VirtualMachine", vm({"provisioning": {"type": "UserDataRef", "userDataRef": {"name": "s"}}}))
    assert with_ref["spec"]["provisioning"]["userDataRef"] == {"name": "s", "kind": "Secret"}


# --- pruning ---------------------------------------------------------------------------------------------

def test_unknown_fields_are_pruned_at_every_depth() -> None:
    obj = vmop({**copy.deepcopy(CRD_CLONE), "bogus": 1})
    obj["topLevelJunk"] = {"a": 1}
    obj["spec"]["clone"]["nameReplacement"][0]["from"]["extra"] = "x"
    obj["spec"]["clone"]["nameReplacement"][0]["extra"] = "y"
    admitted = admit("VirtualMachineOperation", obj)
    assert "topLevelJunk" not in admitted
    assert admitted["spec"] == CRD_CLONE


def test_unknown_metadata_fields_are_pruned_and_known_ones_kept() -> None:
    obj = vmop(CRD_CLONE)
    obj["metadata"].update({"labels": {"app": "x"}, "annotations": {"a.io/b": "c"}, "finalizers": ["a.io/f"],
                            "ownerReferences": [], "flavour": "vanilla", "clusterName": "x"})
    meta = admit("VirtualMachineOperation", obj)["metadata"]
    assert meta == {"name": "op", "namespace": "demo", "labels": {"app": "x"}, "annotations": {"a.io/b": "c"},
                    "finalizers": ["a.io/f"], "ownerReferences": []}


def test_preserve_unknown_fields_are_kept() -> None:
    obj = vm()
    obj["status"] = {"phase": "Running", "guestOSInfo": {"name": "Ubuntu", "kernel": {"release": "6.1"}},
                     "somethingElse": 1}
    status = admit("VirtualMachine", obj, subresource="status")["status"]
    assert status["guestOSInfo"] == {"name": "Ubuntu", "kernel": {"release": "6.1"}}
    assert "somethingElse" not in status


def test_additional_properties_maps_keep_their_keys() -> None:
    spec: dict[str, Any] = {"type": "Migrate", "virtualMachineName": "linux-vm",
                            "migrate": {"nodeSelector": {"zone": "a"}}}
    assert admit("VirtualMachineOperation", vmop(spec))["spec"]["migrate"] == {"nodeSelector": {"zone": "a"}}
    spec["migrate"]["nodeSelector"]["zone"] = 1
    error = rejected("VirtualMachineOperation", vmop(spec))
    assert ("FieldValueTypeInvalid", "spec.migrate.nodeSelector[zone]") in causes(error)


# --- the status subresource ------------------------------------------------------------------------

def test_status_subresource_validates_the_status_only() -> None:
    stored = admit("VirtualMachineOperation", vmop(CRD_CLONE))
    candidate = copy.deepcopy(stored)
    candidate["status"] = {"phase": "Completed", "unknown": 1,
                           "resources": [{"apiVersion": API, "kind": "VirtualMachine", "name": "linux-vm-clone",
                                          "status": "Completed", "message": ""}]}
    admitted = admit("VirtualMachineOperation", candidate, stored, subresource="status")
    assert admitted["status"]["phase"] == "Completed" and "unknown" not in admitted["status"]
    candidate["status"]["phase"] = "Exploded"
    error = rejected("VirtualMachineOperation", candidate, stored, subresource="status")
    assert ("FieldValueNotSupported", "status.phase") in causes(error)


# --- metadata and type meta -----------------------------------------------------------------------

@pytest.mark.parametrize(("meta", "field", "reason"), [
    ({"name": "Bad_Name", "namespace": "demo"}, "metadata.name", "FieldValueInvalid"),
    ({"name": "a" * 254, "namespace": "demo"}, "metadata.name", "FieldValueInvalid"),
    ({"namespace": "demo"}, "metadata.name", "FieldValueRequired"),
    ({"name": "ok", "namespace": "Demo!"}, "metadata.namespace", "FieldValueInvalid"),
    ({"name": "ok", "namespace": "demo", "labels": {"bad key!": "v"}}, "metadata.labels", "FieldValueInvalid"),
    ({"name": "ok", "namespace": "demo", "labels": {"k": "v" * 64}}, "metadata.labels", "FieldValueInvalid"),
    ({"name": "ok", "namespace": "demo", "labels": {"k": 5}}, "metadata.labels[k]", "FieldValueTypeInvalid"),
    ({"name": "ok", "namespace": "demo", "annotations": {"/x": "v"}}, "metadata.annotations", "FieldValueInvalid"),
    ({"name": "ok", "namespace": "demo", "annotations": {"k": "v" * 300_000}}, "metadata.annotations",
     "FieldValueTooLong"),
])
def test_metadata_is_validated(meta: dict[str, Any], field: str, reason: str) -> None:
    obj = vmop(CRD_CLONE)
    obj["metadata"] = meta
    assert (reason, field) in causes(rejected("VirtualMachineOperation", obj))


def test_label_messages_follow_kubernetes() -> None:
    obj = vmop(CRD_CLONE)
    obj["metadata"]["labels"] = {"bad key!": "ok"}
    (cause,) = rejected("VirtualMachineOperation", obj).causes
    assert cause.message.startswith('Invalid value: "bad key!": name part must consist of alphanumeric characters')


def test_generate_name_without_name_is_accepted_and_cluster_scope_forbids_a_namespace() -> None:
    obj = vmop(CRD_CLONE)
    obj["metadata"] = {"generateName": "clone-", "namespace": "demo"}
    admit("VirtualMachineOperation", obj)
    cvi = {"apiVersion": API, "kind": "ClusterVirtualImage", "metadata": {"name": "img", "namespace": "demo"},
           "spec": {"dataSource": {"type": "HTTP", "http": {"url": "https://example.com/a.img"}}}}
    assert ("FieldValueForbidden", "metadata.namespace") in causes(rejected("ClusterVirtualImage", cvi))


def test_api_version_and_kind_must_match_the_type() -> None:
    wrong_kind = vmop(CRD_CLONE)
    wrong_kind["kind"] = "VirtualMachine"
    error = rejected("VirtualMachineOperation", wrong_kind)
    assert (error.code, error.reason) == (400, "BadRequest")
    wrong_version = vmop(CRD_CLONE)
    wrong_version["apiVersion"] = f"{GROUP}/v1"
    assert rejected("VirtualMachineOperation", wrong_version).code == 400
    missing = vmop(CRD_CLONE)
    del missing["apiVersion"], missing["kind"]
    admitted = admit("VirtualMachineOperation", missing)
    assert (admitted["apiVersion"], admitted["kind"]) == (API, "VirtualMachineOperation")


def test_a_type_without_schema_is_passed_through() -> None:
    secret = ResourceType(group="", version="v1", kind="Secret", plural="secrets", singular="secret",
                          namespaced=True)
    obj = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"k": "dg=="}}
    assert ADMISSION.admit(secret, obj, None) == obj


# --- DataExport ---------------------------------------------------------------------------------------

def data_export(kind: str) -> dict[str, Any]:
    return {"apiVersion": "deckhouse.io/v1alpha1", "kind": "DataExport",
            "metadata": {"name": "export-linux-vm-root", "namespace": "demo"},
            "spec": {"publish": False, "targetRef": {"kind": kind, "name": "linux-vm-root"}}}


def test_data_export_is_admitted_with_its_default_ttl() -> None:
    admitted = admit("DataExport", data_export("VirtualDisk"), version="v1alpha1")
    assert admitted["spec"] == {"publish": False, "ttl": "2m",
                                "targetRef": {"kind": "VirtualDisk", "name": "linux-vm-root"}}
    status = {"url": "http://127.0.0.1:1/de", "ca": "LS0tLS1CRUdJTg==", "publicURL": "", "volumeMode": "Block",
              "conditions": [{"type": "Ready", "status": "True", "reason": "Ready", "message": "",
                              "lastTransitionTime": "2026-11-25T17:00:00Z"}]}
    admit("DataExport", {**admitted, "status": status}, admitted, subresource="status", version="v1alpha1")


def test_data_export_rejects_a_bad_target_kind_and_ttl() -> None:
    bad = data_export("VirtualMachine")
    bad["spec"]["ttl"] = "two minutes"
    error = rejected("DataExport", bad, version="v1alpha1")
    assert causes(error) == {("FieldValueNotSupported", "spec.targetRef.kind"), ("FieldValueInvalid", "spec.ttl")}
    assert error.message.startswith('DataExport.deckhouse.io "export-linux-vm-root" is invalid: [')


# --- speed -------------------------------------------------------------------------------------------

def test_prepare_compiles_every_schema_up_front() -> None:
    ADMISSION.prepare(load_resource_types())
    broken = ResourceType(group="example.io", version="v1", kind="Broken", plural="brokens", singular="broken",
                          namespaced=True, schema={"type": "object", "x-kubernetes-validations": [{"rule": "self.("}]})
    with pytest.raises(SchemaCompileError):
        ADMISSION.prepare([*load_resource_types(), broken])


def test_admitting_a_vm_operation_is_fast() -> None:
    stored = admit("VirtualMachineOperation", vmop(CRD_CLONE))
    for _ in range(50):
        admit("VirtualMachineOperation", stored, stored)
    rounds = 500
    started = time.perf_counter()
    for _ in range(rounds):
        admit("VirtualMachineOperation", stored, stored)
    per_call = (time.perf_counter() - started) / rounds
    assert per_call < 0.002, f"{per_call * 1e6:.0f} µs per admission"
