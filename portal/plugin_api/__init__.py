"""The plugin API: contracts, hook specs, the registry, and its version.

``API_VERSION`` is ``(major, minor)``. A minor step only adds (a hook, an argument, a
contract method with a default, an optional dataclass field); a major step may remove or
change, and only after the thing went through one minor version in which it warned (see
:data:`DEPRECATIONS`). A plugin states what it needs in one of two ways:

- in its module: ``PAKIET_API = (1, 1)``; the registry refuses it at start-up, naming it,
  when this portal's API is older or of another major version;
- at import: ``portal.plugin_api.require_api((1, 1), plugin="pakiet_x")``.

History: 1.0 the first published API; 1.1 ``PaymentRequest.webhook_url``, and
``PaymentSettled.payment_id`` is core's public payment id (a string, as in every other event);
1.2 the providers' declared capabilities ``PaymentProvider.renewable_brands``, ``can_refund`` and
``charges_again()``, ``VatCheck.registry`` (who confirmed a number), and the
``register_einvoicing_channels`` hook (national e-invoicing: KSeF).
"""

from __future__ import annotations

from dataclasses import dataclass

API_VERSION: tuple[int, int] = (1, 2)


class ApiVersionError(RuntimeError):
    """A plugin needs a hook-API version this portal does not provide."""


def api_satisfies(required: tuple[int, ...]) -> bool:
    """Whether this portal provides ``required``: same major, at least that minor."""
    if not required:
        return True
    major, minor = required[0], required[1] if len(required) > 1 else 0
    return major == API_VERSION[0] and minor <= API_VERSION[1]


def require_api(required: tuple[int, ...], *, plugin: str) -> None:
    """Raise :class:`ApiVersionError` naming ``plugin`` unless :func:`api_satisfies`."""
    if not (
        isinstance(required, tuple)
        and required
        and all(isinstance(part, int) and not isinstance(part, bool) for part in required)
    ):
        raise ApiVersionError(
            f"plugin {plugin!r} states the Pakiet plugin API {required!r}; expected a tuple"
            " such as (1, 0)"
        )
    if not api_satisfies(required):
        wanted = ".".join(str(part) for part in required)
        have = ".".join(str(part) for part in API_VERSION)
        raise ApiVersionError(
            f"plugin {plugin!r} needs the Pakiet plugin API {wanted}; this portal provides {have}"
        )


@dataclass(frozen=True)
class Deprecation:
    """A hook (``argument is None``) or a hook's argument that goes in ``removed_in``.

    Until then the spec keeps it and every plugin implementing it gets a
    :class:`DeprecationWarning` at start-up that names the plugin and says what to use.
    """

    hook: str
    argument: str | None
    removed_in: tuple[int, int]
    instead: str


#: What is deprecated in this version (nothing yet: 1.1 and 1.2 only added).
DEPRECATIONS: tuple[Deprecation, ...] = ()
