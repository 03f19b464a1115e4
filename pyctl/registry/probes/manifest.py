"""The image probes of an endpoint, as a pull asks for the image:

* ``auth`` and ``manifest``: the manifest of REF, asked for with the credentials a pull sends
  (the request that shows both whether they are accepted for ``repository:NAME:pull`` and
  whether the tag or digest is there; a missing one is said as a pull says it: the repository,
  or the tag and the tags there are);
* ``platform``: the image has a manifest for this machine's platform, chosen as a pull chooses
  it (:func:`pyctl.copy.plan`), or says which platforms it has.
"""

from __future__ import annotations

from pyctl.copy import default_filter, plan
from pyctl.errors import PyctlError, RegistryError, RegistryNotFound
from pyctl.oci import Descriptor, host_platform
from pyctl.registry.hosts.model import RegistryHost
from pyctl.registry.probes.auth import accepted, refused
from pyctl.registry.probes.steps import Checklist, TimedOut
from pyctl.registry.probes.target import Target
from pyctl.registry.store import RegistrySource
from pyctl.registry.tokens import repository_scope


def resolve(c: Checklist, t: Target, h: RegistryHost) -> Descriptor | None:
    """The ``auth`` and ``manifest`` steps: REF's descriptor at ``h`` (None: a step failed)."""
    assert t.reference is not None
    path, what = t.reference.path, t.what
    kind = "digest" if what.startswith("sha256:") else "tag"
    scope = repository_scope(path, "pull")
    try:
        desc = c.run(lambda: t.repo.resolve_at(h, what))
    except TimedOut:
        c.timed_out("auth", f"to the request for {kind} {what} of {path}")
        return None
    except RegistryNotFound as exc:
        accepted(c, t, h, scope)
        c.fail("manifest", exc.message, f"pull a {kind} that is there, or push {t.reference}")
        return None
    except RegistryError as exc:
        if not refused(c, t, h, exc, f"pull {path}"):
            accepted(c, t, h, scope)
            c.fail("manifest", f"{kind} {what} of {path}: {exc.message}")
        return None
    except PyctlError as exc:  # a credential helper that fails, a token answer that is not one
        c.fail("auth", exc.message)
        return None
    accepted(c, t, h, scope)
    c.ok("manifest", f"{kind} {what}: {desc.digest} ({desc.media_type}, {desc.size} bytes)")
    return desc


def platform(c: Checklist, t: Target, h: RegistryHost, desc: Descriptor) -> bool:
    """The ``platform`` step: the manifest a pull of REF would take for this machine."""
    wanted = host_platform()
    source = RegistrySource(t.repo, endpoint=h)
    try:
        chosen = c.run(lambda: plan(source, desc, default_filter((), False)))
    except TimedOut:
        c.timed_out("platform", f"to the reads of {desc.digest} and what it names")
        return False
    except RegistryError as exc:
        c.fail("platform", exc.message)
        return False
    except PyctlError as exc:  # no manifest for this platform: plan says which there are
        c.fail(
            "platform",
            exc.message,
            f"push {t.reference} with a manifest for {wanted}, or pull another platform "
            "with --platform",
        )
        return False
    node = chosen.manifests[0]
    if chosen.root_index is None:
        c.ok("platform", f"{node.platform}: a single-platform image")
        return True
    listed = chosen.root_index.manifests
    there = ", ".join(str(m.platform) for m in listed if m.platform is not None)
    c.ok("platform", f"{node.platform}: manifest {node.desc.digest} (the index has {there})")
    return True
