"""Logs and sandbox files over HTTP: chunks, live following, downloads, listings."""

from __future__ import annotations

import hashlib
import os

from thermos.testing.wait import wait_until


def test_logdata_reads_a_finished_run(service):
    data = service.json("/logdata/hello_ok/hello/0/stdout?offset=0&length=-1")
    assert data == {"offset": 0, "length": len("hello world\nline2\n"), "data": "hello world\nline2\n"}
    assert service.json("/logdata/hello_fail/main/0/stderr?offset=0")["data"] == "oops\n"
    # Aurora's defaults: offset -1 is the end of the file, so a tail starts empty.
    assert service.json("/logdata/hello_ok/hello/0/stdout") == {"offset": 18, "length": 0}
    assert service.json("/logdata/hello_ok/hello/-1/stdout?offset=6&length=5")["data"] == "world"


def test_logdata_follows_a_running_process(service):
    first = wait_until(lambda: service.json("/logdata/ticker/main/0/stdout?offset=0").get("length"),
                       timeout=30, interval=0.05)
    seen = service.json("/logdata/ticker/main/0/stdout?offset=0&length=%d" % first)["data"]
    assert seen.startswith("tick 1\n")

    def more():
        chunk = service.json("/logdata/ticker/main/0/stdout?offset=%d" % first)
        return chunk if chunk["length"] else None

    chunk = wait_until(more, timeout=30, interval=0.05)
    assert chunk["offset"] == first and "tick " in chunk["data"]


def test_logdata_escapes_markup(service, live):
    log_dir = os.path.join(live.sandbox("hello_ok"), ".logs", "hello", "0")
    with open(os.path.join(log_dir, "stderr"), "w") as fp:
        fp.write("<script>alert(1)</script> & done\n")
    assert service.json("/logdata/hello_ok/hello/0/stderr?offset=0")["data"] == (
        "&lt;script&gt;alert(1)&lt;/script&gt; &amp; done\n")


def test_logdata_errors(service):
    assert service.json("/logdata/nope/main/0/stdout", 404) == {"error": "Unknown task_id: nope"}
    assert service.json("/logdata/hello_ok/nope/0/stdout", 404) == {
        "error": "Invalid task/process combination: hello_ok/nope"}
    assert service.json("/logdata/hello_ok/hello/0/stdin", 404) == {
        "error": "Unknown log type 'stdin' (use stdout or stderr)"}
    assert "Bad offset" in service.json("/logdata/hello_ok/hello/0/stdout?offset=abc", 400)["error"]
    assert "must be >= -1" in service.json("/logdata/hello_ok/hello/0/stdout?offset=-5", 400)["error"]


def test_filedata_and_download(service, live):
    assert service.json("/filedata/hello_ok/out.txt?offset=0") == {"offset": 0, "length": 5, "data": "data\n"}
    assert service.json("/filedata/hello_ok/missing.txt") == {}
    code, ctype, body = service.get("/download/hello_ok/out.txt")
    assert (code, ctype, body) == (200, "application/octet-stream", b"data\n")
    assert service.get("/download/hello_ok/missing.txt")[:1] == (404,)


def test_large_files_are_chunked_and_streamed(service, live):
    blob = os.urandom(5 * 1024 * 1024 + 17)
    with open(os.path.join(live.sandbox("hello_ok"), "big.bin"), "wb") as fp:
        fp.write(blob)
    chunk = service.json("/filedata/hello_ok/big.bin?offset=0&length=-1")
    assert chunk["length"] == 1024 * 1024  # one answer is at most 1 MB; a follower asks again
    code, _, body = service.get("/download/hello_ok/big.bin")
    assert code == 200 and hashlib.sha256(body).digest() == hashlib.sha256(blob).digest()


def test_browse_lists_the_sandbox(service, live):
    listing = service.json("/j/browse/hello_ok")
    names = {entry["name"]: entry for entry in listing["entries"]}
    assert listing["path"] == "." and names["out.txt"]["size"] == 5 and not names["out.txt"]["is_dir"]
    assert names[".logs"]["is_dir"]
    assert [e["name"] for e in service.json("/j/browse/hello_ok/.logs")["entries"]] == ["hello"]
