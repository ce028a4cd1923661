"""Keep py-libp2p's unused features out of a node's memory.

py-libp2p 0.8.1 imports every transport and service it has from its package
`__init__`, whatever the host uses: QUIC (aioquic, pyOpenSSL,
service-identity), WebSocket (trio-websocket), mDNS (zeroconf), Prometheus
metrics, and httpx's command-line client (rich, pygments) through its AutoTLS
client; and its own Bitswap, Kademlia DHT and circuit relay. A node uses TCP,
Noise, yamux/mplex and GossipSub only (data moves kubo to kubo, peers are
dialled directly), yet paid 16 MiB of RSS and 0.3 s of CPU per start for the
rest (1593 modules loaded at start; 1419 with this module).

`skip()` installs an import finder that hands out placeholder modules for
those packages. A placeholder's attributes are placeholder classes, so the
module-level code of py-libp2p that names them (imports, annotations,
subclasses, constructors) still runs; calling a method on such an object
raises `ImportError` naming the feature, so a use of a skipped feature says
what happened instead of misbehaving. Only the node process (`serve`)
installs it, before anything imports libp2p; nothing there may use these
features.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types

# Top-level packages only libp2p's unused features import.
SKIPPED = ("aioquic", "OpenSSL", "service_identity", "trio_websocket", "zeroconf", "prometheus_client")
# py-libp2p's own unused subsystems (3.7 MiB): Bitswap, the Kademlia DHT, circuit relay.
SKIPPED_LIBP2P = ("libp2p.bitswap", "libp2p.kad_dht", "libp2p.relay")


def _skipped(name: str) -> bool:
    return name.split(".", 1)[0] in SKIPPED or any(
        name == package or name.startswith(package + ".") for package in SKIPPED_LIBP2P
    )


def _fails(what: str):
    def fail(*args, **kwargs):
        raise ImportError(f"{what} is not loaded: bacalhau-py does not use this libp2p feature")

    return fail


class _PlaceholderType(type):
    def __getattr__(cls, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return _placeholder(name, f"{cls.__module__}.{cls.__qualname__}")


def _placeholder(name: str, module: str) -> type:
    def init(self, *args, **kwargs) -> None:
        pass  # module-level code builds some of them (resolvers, configs): harmless until used

    def attribute(self, attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _fails(f"{module}.{name}.{attr}")

    return _PlaceholderType(name, (), {"__module__": module, "__init__": init, "__getattr__": attribute})


class _PlaceholderModule(types.ModuleType):
    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        value = _placeholder(name, self.__name__)
        setattr(self, name, value)
        return value


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path, target=None):
        if _skipped(name):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _PlaceholderModule(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module) -> None:
        pass


def skip() -> None:
    """Install the placeholders (idempotent); call before anything imports libp2p."""
    if "libp2p" in sys.modules or any(isinstance(f, _Finder) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _Finder())
    # httpx imports its command-line client only if it can; None makes that import fail.
    sys.modules.setdefault("httpx._main", None)
