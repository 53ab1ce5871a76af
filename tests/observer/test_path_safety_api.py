"""Traversal attempts against the file and log routes are refused; the observer is read-only."""

from __future__ import annotations

import http.client
import json
import os

import pytest
from thermos.observer.http.safe_paths import PathRefused, check_relative, is_within, resolve


def raw_get(service, path: str, method: str = "GET"):
    """Send `path` byte for byte (urllib would normalise '..' and '//' away)."""
    conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=30)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def planted(live):
    """Symlinks planted in hello_ok's sandbox: one to /etc, one to a sibling `<sandbox>-x`, one inside."""
    sandbox = live.sandbox("hello_ok")
    sibling = sandbox + "-x"
    os.makedirs(sibling, exist_ok=True)
    with open(os.path.join(sibling, "secret"), "w") as fp:
        fp.write("not yours\n")
    os.symlink("/etc", os.path.join(sandbox, "etc_link"))
    os.symlink("/etc/passwd", os.path.join(sandbox, "passwd_link"))
    os.symlink(os.path.join("..", os.path.basename(sibling)), os.path.join(sandbox, "sibling_link"))
    os.symlink("out.txt", os.path.join(sandbox, "inside_link"))
    return sandbox


TRAVERSALS = [
    ("{route}/hello_ok/../../../../etc/passwd", 400),
    ("{route}/hello_ok/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd", 400),
    ("{route}/hello_ok/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd", 400),
    ("{route}/hello_ok/.logs/../../../etc/passwd", 400),
    ("{route}/hello_ok//etc/passwd", 400),
    ("{route}/hello_ok/%2Fetc%2Fpasswd", 400),
    ("{route}/hello_ok/out.txt%00.png", 400),
    ("{route}/hello_ok/passwd_link", 403),
    ("{route}/hello_ok/etc_link/passwd", 403),
    ("{route}/hello_ok/sibling_link/secret", 403),
]


@pytest.mark.parametrize("route", ["/filedata", "/download", "/j/browse"])
@pytest.mark.parametrize("template,status", TRAVERSALS)
def test_traversal_is_refused(service, planted, route, template, status):
    code, body = raw_get(service, template.format(route=route))
    assert code == status, body
    assert b"root:" not in body and b"not yours" not in body
    message = json.loads(body)["error"] if body.startswith(b"{") else body.decode()
    assert message.startswith("Refused") and message.count("\n") <= 1


def test_links_that_stay_inside_are_served(service, planted):
    assert raw_get(service, "/download/hello_ok/inside_link") == (200, b"data\n")
    listing = json.loads(raw_get(service, "/j/browse/hello_ok")[1])
    entries = {e["name"]: e for e in listing["entries"]}
    assert entries["etc_link"]["is_link"] and not entries["etc_link"]["is_dir"]  # shown, not followed


def test_log_routes_refuse_traversal(service):
    for path in ("/logdata/hello_ok/../0/stdout", "/logdata/hello_ok/%2e%2e/0/stdout"):
        code, body = raw_get(service, path)
        assert code == 400 and json.loads(body)["error"].startswith("Refused process name"), body


def test_the_observer_is_read_only(service):
    for method in ("POST", "PUT", "DELETE"):
        code, body = raw_get(service, "/download/hello_ok/out.txt", method)
        assert code == 405 and b"read-only" in body


def test_containment_is_by_path_components(tmp_path):
    sandbox = tmp_path / "sandbox"
    (tmp_path / "sandbox-x").mkdir(parents=True)
    sandbox.mkdir()
    assert is_within(str(sandbox), str(sandbox / "a" / "b"))
    assert is_within(str(sandbox), str(sandbox))
    assert not is_within(str(sandbox), str(tmp_path / "sandbox-x"))  # Aurora's prefix test passed this
    (sandbox / "x").symlink_to("../sandbox-x")
    with pytest.raises(PathRefused) as refused:
        resolve(str(sandbox), "x")
    assert refused.value.status == 403
    for bad in ("/etc", "a/../b", "a\x00b", "..\\..\\x"):
        with pytest.raises(PathRefused):
            check_relative(bad)
