"""Shared fixtures: a real osmem-server (the Elasticsearch-API store) on loopback, per-test clones."""
from __future__ import annotations

import socket
from pathlib import Path

import pytest
from osmem_server import OsmemServer

from common.store import StoreSettings, apply_index_templates, connect

REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def osmem_base():
    """One server for the session; tests write only to their own clone."""
    server = OsmemServer.start(japanese=False, addr="127.0.0.1:0")
    yield server
    server.close()


@pytest.fixture
def store_url(osmem_base) -> str:
    """URL of a fresh, empty store with the project's index templates applied."""
    with osmem_base.clone() as clone:
        es = connect(StoreSettings(url=clone.url))
        apply_index_templates(es)
        es.close()
        yield clone.url


@pytest.fixture
def es(store_url):
    client = connect(StoreSettings(url=store_url))
    yield client
    client.close()
