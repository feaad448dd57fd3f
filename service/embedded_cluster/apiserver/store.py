"""The in-memory object store: the embedded cluster's etcd plus the API server's
registry logic (metadata, admission, optimistic concurrency, finalizers, garbage
collection) and the event history that watches resume from."""

from __future__ import annotations

import base64
import builtins
import logging
import uuid
from collections import deque
from collections.abc import Iterable
from typing import Any, TypeVar, cast

from service.embedded_cluster.apiserver.builtin_types import NAMESPACES, SECRETS
from service.embedded_cluster.apiserver.journal import Journal
from service.embedded_cluster.apiserver.metadata import invalid, metadata_causes, now_rfc3339, random_suffix
from service.embedded_cluster.apiserver.selectors import label_matcher
from service.embedded_cluster.apiserver.subscription import Subscription
from service.embedded_cluster.contracts import Admission, Obj, ResourceType, StatusCause, StatusError, StoreEvent

log = logging.getLogger(__name__)

# Fields the API server owns: a client can never change them with an update.
_SERVER_OWNED_META = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation")
_CONTROLLER_QUEUE = 100_000
_INITIAL_NAMESPACES = ("default", "kube-system", "kube-public")


def _meta(obj: Obj) -> dict[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def _content(obj: Obj) -> Obj:
    """What ``generation`` tracks: everything except metadata and status."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


def _without_rv(obj: Obj) -> Obj:
    trimmed = dict(obj)
    trimmed["metadata"] = {k: v for k, v in _meta(obj).items() if k != "resourceVersion"}
    return trimmed



_J = TypeVar("_J")


def clone(value: _J) -> _J:
    """A deep copy of a JSON-shaped value (dicts, lists, scalars): several times faster
    than copy.deepcopy, which matters because every read hands out a private copy."""
    return cast(_J, _clone(value))


def _clone(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clone(v) for v in value]
    return value

class MemoryStore:
    """Implements ``contracts.ObjectStore``; the HTTP layer adds dry-run, propagation and preconditions.

    With a ``journal`` the store starts from the state it loaded and records every change
    before applying it; its writes return once the change is durable."""

    def __init__(self, types: Iterable[ResourceType], admission: Admission, *, watch_history: int = 1000,
                 journal: Journal | None = None) -> None:
        self._types: dict[str, ResourceType] = {t.key: t for t in types}
        self._types.setdefault(NAMESPACES.key, NAMESPACES)
        self._admission = admission
        self._objects: dict[str, dict[tuple[str, str], Obj]] = {key: {} for key in self._types}
        self._unserved: dict[str, builtins.list[Obj]] = {}   # loaded objects of types not served now: kept as is
        self._rv = 0
        self._history: deque[StoreEvent] = deque(maxlen=max(1, watch_history))
        self._compacted_rv = 0   # every event with a resourceVersion above this one is still in the history
        self._subscriptions: set[Subscription] = set()
        self._journal = journal
        if journal is not None:
            journal.attach(self._state)
            if not journal.restored.fresh:
                self._restore(journal)
                return
            self._rv = journal.restored.resource_version
        for name in _INITIAL_NAMESPACES:
            self._commit("ADDED", NAMESPACES, self._stamp_new({"apiVersion": "v1", "kind": "Namespace",
                                                               "metadata": {"name": name},
                                                               "status": {"phase": "Active"}}))

    def _restore(self, journal: Journal) -> None:
        restored = journal.restored
        for resource, objects in restored.objects.items():
            if resource in self._objects:
                self._objects[resource] = objects
            elif objects:
                log.warning("%d loaded %s objects are kept but not served (the type is not installed)",
                            len(objects), resource)
                self._unserved[resource] = list(objects.values())
        restored.objects = {}   # the store owns them now
        # The history starts empty: a watch from an older version gets 410 and relists.
        self._rv = self._compacted_rv = restored.resource_version

    def _state(self) -> tuple[int, dict[str, builtins.list[Obj]]]:
        """What a snapshot holds (stored objects are replaced, never changed in place: no copies)."""
        objects = {key: builtins.list(found.values()) for key, found in self._objects.items()}
        return self._rv, {**self._unserved, **objects}

    async def close(self) -> None:
        """Write the journal's final snapshot (nothing to do without one)."""
        if self._journal is not None:
            await self._journal.close()

    async def durable(self) -> None:
        """Return once every change made so far survives a crash (at once without a journal)."""
        if self._journal is not None:
            await self._journal.durable()

    # ----- reading -------------------------------------------------------------------

    @property
    def types(self) -> list[ResourceType]:
        return list(self._types.values())

    @property
    def resource_version(self) -> int:
        return self._rv

    @property
    def compacted_resource_version(self) -> int:
        return self._compacted_rv

    def resource_type(self, resource: str) -> ResourceType:
        rtype = self._types.get(resource)
        if rtype is None:
            raise StatusError(404, "NotFound", f"the server could not find the requested resource ({resource})")
        return rtype

    def get(self, resource: str, namespace: str | None, name: str) -> Obj | None:
        rtype = self.resource_type(resource)
        found = self._objects[resource].get(((namespace or "") if rtype.namespaced else "", name))
        return clone(found) if found is not None else None

    def list(self, resource: str, namespace: str | None = None, label_selector: str = "", *,
             read_only: bool = False) -> list[Obj]:
        self.resource_type(resource)
        matches = label_matcher(label_selector)
        found = [obj for (ns, _), obj in self._objects[resource].items()
                 if (namespace is None or ns == namespace) and matches(obj)]
        found.sort(key=lambda obj: (_meta(obj).get("namespace", ""), _meta(obj).get("name", "")))
        # Stored objects are replaced, never changed in place, so a reader that promises not
        # to mutate may see them as they are (the controllers' scans are hot paths).
        return found if read_only else clone(found)

    # ----- watching ------------------------------------------------------------------

    def subscribe(self, resource: str | None = None) -> Subscription:
        """Every change from now on; closed (iteration ends) if the consumer falls 100k events behind."""
        return self._open(resource, _CONTROLLER_QUEUE)

    def watch(self, resource: str, since: int | None, *,
              queue_size: int) -> tuple[builtins.list[StoreEvent], Subscription]:
        """The history after ``since`` (nothing when None) and a subscription for what follows, with no
        gap between them. Raises 410 Expired when the history no longer reaches back to ``since``."""
        backlog: builtins.list[StoreEvent] = []
        if since is not None and since < self._rv:
            if since < self._compacted_rv:
                raise StatusError(410, "Expired", f"too old resource version: {since} ({self._compacted_rv + 1})")
            backlog = [e for e in self._history if e.resource == resource and _rv_of(e.object) > since]
        return backlog, self._open(resource, queue_size)

    @property
    def open_subscriptions(self) -> int:
        return len(self._subscriptions)

    def compact(self) -> None:
        """Forget the whole history: every resume from an older resourceVersion gets 410 (fault injection)."""
        self._history.clear()
        self._compacted_rv = self._rv

    def _open(self, resource: str | None, maxsize: int) -> Subscription:
        subscription = Subscription(resource, maxsize, self._subscriptions.discard)
        self._subscriptions.add(subscription)
        return subscription

    # ----- writing -------------------------------------------------------------------

    async def create(self, resource: str, obj: Obj, *, dry_run: bool = False) -> Obj:
        rtype = self.resource_type(resource)
        new = self._normalized(rtype, obj)
        meta = new["metadata"]
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = self._generated_name(rtype, meta)
        if not meta.get("name"):
            raise invalid(rtype.kind, "", rtype.group,
                          [StatusCause("FieldValueRequired", "Required value: name or generateName is required",
                                       "metadata.name")])
        self._check_metadata(rtype, new)
        if self._key(rtype, meta) in self._objects[resource]:
            raise StatusError(409, "AlreadyExists", f'{rtype.key} "{meta["name"]}" already exists',
                              kind=rtype.plural, name=meta["name"], group=rtype.group)
        admitted = self._admit(rtype, new, None)
        stamped = self._stamp_new(admitted)
        if dry_run:
            return stamped
        self._commit("ADDED", rtype, stamped)
        await self.durable()
        return clone(stamped)

    async def update(self, resource: str, obj: Obj, *, dry_run: bool = False) -> Obj:
        rtype = self.resource_type(resource)
        new = self._normalized(rtype, obj)
        current = self._current(rtype, new)
        self._check_version(rtype, new, current)
        for key in _SERVER_OWNED_META:
            if key in current["metadata"]:
                new["metadata"][key] = current["metadata"][key]
            else:
                new["metadata"].pop(key, None)
        if rtype.has_status:
            new.pop("status", None)
            if "status" in current:
                new["status"] = current["status"]
        self._check_metadata(rtype, new)
        admitted = self._admit(rtype, new, current)
        if _content(admitted) != _content(current):
            admitted["metadata"]["generation"] = int(current["metadata"].get("generation", 1)) + 1
        replaced = self._replace(rtype, current, admitted, dry_run=dry_run)
        if not dry_run:
            await self.durable()
        return replaced

    async def update_status(self, resource: str, obj: Obj, *, dry_run: bool = False) -> Obj:
        rtype = self.resource_type(resource)
        new = self._normalized(rtype, obj)
        current = self._current(rtype, new)
        self._check_version(rtype, new, current)
        candidate = clone(current)
        if "status" in new:
            candidate["status"] = new["status"]
        else:
            candidate.pop("status", None)
        admitted = self._admit(rtype, candidate, current, subresource="status")
        replaced = self._replace(rtype, current, admitted, dry_run=dry_run)
        if not dry_run:
            await self.durable()
        return replaced

    async def delete(self, resource: str, namespace: str | None, name: str, *, propagation: str = "Background",
                     dry_run: bool = False, precondition_uid: str = "", precondition_rv: str = "") -> Obj | None:
        rtype = self.resource_type(resource)
        current = self._objects[resource].get(((namespace or "") if rtype.namespaced else "", name))
        if current is None:
            return None
        meta = current["metadata"]
        if (precondition_uid and precondition_uid != meta.get("uid")) or (
                precondition_rv and precondition_rv != meta.get("resourceVersion")):
            raise self._conflict(rtype, name, "the precondition on uid or resourceVersion does not hold")
        if meta.get("finalizers"):
            if meta.get("deletionTimestamp") or dry_run:
                return clone(current)
            marked = clone(current)
            marked["metadata"]["deletionTimestamp"] = now_rfc3339()
            marked["metadata"]["deletionGracePeriodSeconds"] = 0
            self._commit("MODIFIED", rtype, marked)
            await self.durable()
            return clone(marked)
        if dry_run:
            return clone(current)
        removed = self._remove(rtype, current, propagation)
        await self.durable()
        return removed

    # ----- internals -----------------------------------------------------------------

    def _normalized(self, rtype: ResourceType, obj: Obj) -> Obj:
        if not isinstance(obj, dict):
            raise StatusError(400, "BadRequest", "the object must be a JSON object")
        new = clone(obj)
        meta = new.get("metadata")
        if meta is None:
            meta = new["metadata"] = {}
        if not isinstance(meta, dict):
            raise StatusError(400, "BadRequest", "metadata must be an object")
        new["apiVersion"] = rtype.api_version
        new["kind"] = rtype.kind
        _apply_builtin_defaults(rtype, new)
        for key in ("name", "namespace", "generateName", "resourceVersion"):
            if key in meta and not isinstance(meta[key], str):
                raise StatusError(400, "BadRequest", f"metadata.{key} must be a string")
        if rtype.namespaced:
            namespace = meta.get("namespace") or ""
            if not namespace:
                raise StatusError(400, "BadRequest", "the namespace of the object must be set")
            if ("", namespace) not in self._objects[NAMESPACES.key]:
                raise StatusError(404, "NotFound", f'namespaces "{namespace}" not found', kind="namespaces",
                                  name=namespace)
        else:
            meta.pop("namespace", None)
        return new

    def _generated_name(self, rtype: ResourceType, meta: dict[str, Any]) -> str:
        prefix = str(meta["generateName"])[:58]
        for _ in range(16):
            candidate = prefix + random_suffix()
            if (meta.get("namespace", "") if rtype.namespaced else "", candidate) not in self._objects[rtype.key]:
                return candidate
        raise StatusError(409, "AlreadyExists", f"could not generate a unique name from {prefix!r}")

    def _check_metadata(self, rtype: ResourceType, obj: Obj) -> None:
        causes = metadata_causes(obj, namespace_type=rtype.key == NAMESPACES.key)
        if causes:
            raise invalid(rtype.kind, str(obj["metadata"].get("name", "")), rtype.group, causes)

    def _admit(self, rtype: ResourceType, obj: Obj, old: Obj | None, *, subresource: str = "") -> Obj:
        admitted = self._admission.admit(rtype, obj, clone(old) if old is not None else None,
                                         subresource=subresource)
        # Admission prunes metadata to ObjectMeta's fields (as a real API server drops
        # unknown ones); the fields the API server itself set are among those kept.
        admitted.setdefault("metadata", obj["metadata"])
        admitted["apiVersion"] = rtype.api_version
        admitted["kind"] = rtype.kind
        return admitted

    def _key(self, rtype: ResourceType, meta: dict[str, Any]) -> tuple[str, str]:
        return (str(meta.get("namespace", "")) if rtype.namespaced else "", str(meta.get("name", "")))

    def _conflict(self, rtype: ResourceType, name: str, why: str) -> StatusError:
        return StatusError(409, "Conflict", f'Operation cannot be fulfilled on {rtype.key} "{name}": {why}',
                           kind=rtype.plural, name=name, group=rtype.group)

    def _current(self, rtype: ResourceType, new: Obj) -> Obj:
        meta = new["metadata"]
        if not meta.get("name"):
            raise invalid(rtype.kind, "", rtype.group,
                          [StatusCause("FieldValueRequired", "Required value: name is required", "metadata.name")])
        current = self._objects[rtype.key].get(self._key(rtype, meta))
        if current is None:
            raise StatusError(404, "NotFound", f'{rtype.key} "{meta["name"]}" not found', kind=rtype.plural,
                              name=meta["name"], group=rtype.group)
        return current

    def _check_version(self, rtype: ResourceType, new: Obj, current: Obj) -> None:
        wanted = new["metadata"].get("resourceVersion")
        if wanted and wanted != current["metadata"]["resourceVersion"]:
            raise self._conflict(rtype, current["metadata"]["name"],
                                 "the object has been modified; please apply your changes to the latest version "
                                 "and try again")

    def _stamp_new(self, obj: Obj) -> Obj:
        meta = obj["metadata"]
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339()
        meta["generation"] = 1
        meta["resourceVersion"] = str(self._rv + 1)
        for key in ("deletionTimestamp", "deletionGracePeriodSeconds"):
            meta.pop(key, None)
        return obj

    def _replace(self, rtype: ResourceType, current: Obj, new: Obj, *, dry_run: bool) -> Obj:
        new["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        if _without_rv(new) == _without_rv(current) or dry_run:
            return clone(new)
        meta = new["metadata"]
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            return self._remove(rtype, new, "Background")
        self._commit("MODIFIED", rtype, new)
        return clone(new)

    def _remove(self, rtype: ResourceType, obj: Obj, propagation: str) -> Obj:
        gone = clone(obj)
        self._commit("DELETED", rtype, gone)
        uid = gone["metadata"].get("uid", "")
        if rtype.key == NAMESPACES.key:
            self._empty_namespace(gone["metadata"]["name"])
        self._collect_dependents(uid, orphan=propagation == "Orphan")
        return clone(gone)

    def _empty_namespace(self, namespace: str) -> None:
        for key, objects in self._objects.items():
            for (ns, name), obj in list(objects.items()):
                if ns == namespace and (ns, name) in objects:
                    self._delete_now(self._types[key], obj, "Background")

    def _collect_dependents(self, owner_uid: str, *, orphan: bool) -> None:
        """Garbage collection: a dependent whose last owner is gone is deleted (or just released when orphaned)."""
        for key, objects in self._objects.items():
            for obj in list(objects.values()):
                refs = obj["metadata"].get("ownerReferences") or []
                remaining = [ref for ref in refs if ref.get("uid") != owner_uid]
                if len(remaining) == len(refs):
                    continue
                if remaining or orphan:
                    released = clone(obj)
                    released["metadata"]["ownerReferences"] = remaining
                    if not remaining:
                        del released["metadata"]["ownerReferences"]
                    self._commit("MODIFIED", self._types[key], released)
                else:
                    self._delete_now(self._types[key], obj, "Background")

    def _delete_now(self, rtype: ResourceType, obj: Obj, propagation: str) -> None:
        if self._key(rtype, obj["metadata"]) not in self._objects[rtype.key]:
            return
        if obj["metadata"].get("finalizers"):
            if not obj["metadata"].get("deletionTimestamp"):
                marked = clone(obj)
                marked["metadata"]["deletionTimestamp"] = now_rfc3339()
                marked["metadata"]["deletionGracePeriodSeconds"] = 0
                self._commit("MODIFIED", rtype, marked)
            return
        self._remove(rtype, obj, propagation)

    def _commit(self, event_type: str, rtype: ResourceType, obj: Obj) -> None:
        obj["metadata"]["resourceVersion"] = str(self._rv + 1)
        if self._journal is not None:
            # Recorded before it is applied: a change the journal refused never happened.
            self._journal.append(self._rv + 1, event_type, rtype.key, obj)
        self._rv += 1
        key = self._key(rtype, obj["metadata"])
        if event_type == "DELETED":
            self._objects[rtype.key].pop(key, None)
        else:
            self._objects[rtype.key][key] = obj
        event = StoreEvent(event_type, rtype.key, clone(obj))
        if len(self._history) == self._history.maxlen:
            self._compacted_rv = _rv_of(self._history[0].object)
        self._history.append(event)
        for subscription in list(self._subscriptions):
            subscription.offer(event)


def _apply_builtin_defaults(rtype: ResourceType, obj: Obj) -> None:
    """What the real registries of these built-in types do on every write."""
    if rtype.key == NAMESPACES.key:
        obj.setdefault("status", {"phase": "Active"})
    elif rtype.key == SECRETS.key:
        obj.setdefault("type", "Opaque")
        string_data = obj.pop("stringData", None)
        if isinstance(string_data, dict):
            existing = obj.get("data")
            data: dict[str, Any] = existing if isinstance(existing, dict) else {}
            for key, value in string_data.items():
                data[key] = base64.b64encode(str(value).encode()).decode()
            obj["data"] = data


def _rv_of(obj: Obj) -> int:
    return int(_meta(obj).get("resourceVersion", "0"))
