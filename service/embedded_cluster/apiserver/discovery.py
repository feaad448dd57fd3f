"""Discovery documents (/api, /apis, APIResourceList) and the resource registry behind them."""

from __future__ import annotations

from collections.abc import Iterable

from service.embedded_cluster.contracts import Obj, ResourceType

SERVER_VERSION: Obj = {"major": "1", "minor": "30", "gitVersion": "v1.30.0-dvp-embedded", "gitCommit": "embedded",
                       "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.22.0",
                       "compiler": "gc", "platform": "linux/amd64"}
_STORED_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


class Registry:
    """Served resource types, addressable the way URLs address them."""

    def __init__(self, stored: Iterable[ResourceType], reviews: Iterable[ResourceType]) -> None:
        self.stored = list(stored)
        self.reviews = list(reviews)
        self._by_path: dict[tuple[str, str, str], ResourceType] = {}
        for rtype in [*self.stored, *self.reviews]:
            self._by_path[(rtype.group, rtype.version, rtype.plural)] = rtype

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._by_path.get((group, version, plural))

    def is_review(self, rtype: ResourceType) -> bool:
        return rtype in self.reviews

    def group_versions(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for group, version, _ in self._by_path:
            versions = found.setdefault(group, [])
            if version not in versions:
                versions.append(version)
        return found

    def serves(self, group: str, version: str) -> bool:
        return version in self.group_versions().get(group, [])

    def api_versions(self, server_address: str) -> Obj:
        return {"kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}

    def _group(self, group: str, versions: list[str]) -> Obj:
        entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {"name": group, "versions": entries, "preferredVersion": entries[0]}

    def api_group_list(self) -> Obj:
        groups = [self._group(g, v) for g, v in sorted(self.group_versions().items()) if g]
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}

    def api_group(self, group: str) -> Obj | None:
        versions = self.group_versions().get(group)
        if not group or not versions:
            return None
        return {"kind": "APIGroup", "apiVersion": "v1", **self._group(group, versions)}

    def resource_list(self, group: str, version: str) -> Obj | None:
        if not self.serves(group, version):
            return None
        resources: list[Obj] = []
        for rtype in [*self.stored, *self.reviews]:
            if (rtype.group, rtype.version) != (group, version):
                continue
            entry: Obj = {"name": rtype.plural, "singularName": rtype.singular, "namespaced": rtype.namespaced,
                          "kind": rtype.kind, "verbs": ["create"] if self.is_review(rtype) else _STORED_VERBS}
            if rtype.short_names:
                entry["shortNames"] = list(rtype.short_names)
            if rtype.categories:
                entry["categories"] = list(rtype.categories)
            resources.append(entry)
            if rtype.has_status:
                resources.append({"name": f"{rtype.plural}/status", "singularName": "",
                                  "namespaced": rtype.namespaced, "kind": rtype.kind,
                                  "verbs": ["get", "patch", "update"]})
        group_version = f"{group}/{version}" if group else version
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}
