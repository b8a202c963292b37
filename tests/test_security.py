"""Security of the HTTP API (issue 13), against a real uvicorn server over a service that ingested the test frames.

``POST /upload`` needs the bearer token; its size limit holds for chunked bodies without a Content-Length too
(the body is cut off as it arrives, and nothing is left behind); a malformed Content-Length is a 4xx, not a 500;
an uploaded file's name cannot lead outside the data folder; and the API serves nothing but its routes: no file
of the data folder, whatever the path, and 405 for another method on a route.
"""
import asyncio
import http.client
import os
import select
import socket
import tempfile
from collections.abc import Iterable
from pathlib import Path

import httpx
import pytest

from serving.api import create_app
from serving.compose import open_service
from tests.support import ServerThread
from tests.test_serving import config, drop

PROBLEM = "application/problem+json"
MAX_BYTES = 512 * 1024  # the test service's upload_max_bytes: a test frame (≈ 270 kB) fits
TOKEN = "s3cret"  # tests.test_serving.config's upload token
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BOUNDARY = "fluxwatch-test-boundary"


class Served:
    """A service (its data folder in a folder of its own, ``root``) that ingested the first frames, and its server."""

    def __init__(self, root: Path, bundle: Path, frames: list[Path]):
        self.root = root
        self.service = open_service(config(root, bundle, upload_max_bytes=MAX_BYTES))
        drop(frames, self.service.dir)
        self.service.run_cycle()
        self.server = ServerThread(create_app(self.service))

    @property
    def url(self) -> str:
        return self.server.url

    def files(self) -> set[Path]:
        """Every file under the data folder."""
        return {p for p in self.service.dir.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_bundle, frames):
    s = Served(tmp_path_factory.mktemp("security"), tiny_bundle, frames[:6])
    with s.server:
        yield s


def multipart(filename: bytes, content: bytes) -> tuple[str, bytes]:
    """(Content-Type, body) of a form with one ``file`` part, the file name sent byte for byte (httpx would escape it)."""
    body = (f"--{BOUNDARY}\r\n".encode() + b'Content-Disposition: form-data; name="file"; filename="' + filename +
            b'"\r\nContent-Type: application/octet-stream\r\n\r\n' + content + f"\r\n--{BOUNDARY}--\r\n".encode())
    return f"multipart/form-data; boundary={BOUNDARY}", body


def assert_problem(r: httpx.Response | http.client.HTTPResponse, status: int, body: bytes) -> None:
    assert r.status == status if isinstance(r, http.client.HTTPResponse) else r.status_code == status, body[:500]
    assert r.headers["content-type"] == PROBLEM, r.headers
    assert f'"status":{status}'.encode() in body.replace(b" ", b""), body[:500]


def raw_request(url: str, head: str, chunks: Iterable[bytes] = (), wait: float = 0.5) -> tuple[http.client.HTTPResponse, bytes, int]:
    """Send ``head`` (request line and headers) as is, then each chunk, stopping as soon as the server answers (it
    may after the head: ``wait`` seconds are left for that); (the response, its body, bytes of ``chunks`` sent)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head.encode("latin-1") + b"\r\n")
        sent = 0
        for i, chunk in enumerate(chunks):
            if select.select([sock], [], [], wait if i == 0 else 0)[0]:
                break  # answered already
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response, response.read(), sent


def chunked(body: bytes, size: int = 16 * 1024) -> Iterable[bytes]:
    """``body`` in Transfer-Encoding: chunked framing, then the last chunk."""
    for i in range(0, len(body), size):
        piece = body[i:i + size]
        yield f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    yield b"0\r\n\r\n"


def test_upload_needs_the_right_bearer_token(served, frames):
    """Missing, wrong, other-scheme or prefix-of-the-token credentials are a 401 problem asking for Bearer; the
    token is accepted (202) and the frame filed."""
    upload = {"file": (frames[6].name, frames[6].read_bytes())}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {TOKEN[:-1]}"},
                    {"Authorization": f"Bearer {TOKEN}x"}, {"Authorization": f"Basic {TOKEN}"},
                    {"Authorization": TOKEN}, {"Authorization": "Bearer"}):
        r = httpx.post(f"{served.url}/upload", files=upload, headers=headers)
        assert_problem(r, 401, r.content)
        assert r.headers["www-authenticate"] == "Bearer" and "bearer token" in r.json()["detail"]
    r = httpx.post(f"{served.url}/upload", files=upload, headers=AUTH)
    assert r.status_code == 202 and r.json()["accepted"].endswith(frames[6].name), r.text


def test_chunked_uploads_over_the_limit_are_cut_off_and_leave_nothing(served, frames):
    """A chunked body (no Content-Length) of 64 × the limit is answered 413 once the limit is passed, with the token,
    or 401 without it, before its end is sent (what was sent beyond what the server read waits in the sockets'
    buffers, a few MB at most); no file is left in the data folder, nor a temporary file in the system's
    temporary folder. A chunked upload of a frame under the limit is accepted."""
    before, tmp_before = served.files(), set(os.listdir(tempfile.gettempdir()))
    content_type, body = multipart(b"big.fits", os.urandom(64 * MAX_BYTES))
    for auth, status in (("", 401), (f"Authorization: Bearer {TOKEN}\r\n", 413)):
        head = (f"POST /upload HTTP/1.1\r\nHost: test\r\n{auth}Content-Type: {content_type}\r\n"
                "Transfer-Encoding: chunked\r\n")
        r, answer, sent = raw_request(served.url, head, chunked(body))
        assert_problem(r, status, answer)
        assert sent < len(body) // 2, f"{sent} bytes sent before the {status}"
    assert not {p for p in served.files() - before if "big" in p.name or p.suffix == ".upload"}
    assert not {n for n in set(os.listdir(tempfile.gettempdir())) - tmp_before if "upload" in n}
    # httpx streams a generator body chunked: the same upload within the limit is taken
    content_type, body = multipart(frames[7].name.encode(), frames[7].read_bytes())
    r = httpx.post(f"{served.url}/upload", content=iter([body[:1000], body[1000:]]),
                   headers={**AUTH, "Content-Type": content_type})
    assert r.status_code == 202 and "transfer-encoding" in r.request.headers and "content-length" not in r.request.headers


@pytest.mark.parametrize("value", ["abc", "-5", "1e9", "+5", "0x10", "5, 6", "99999999999999999999999"])
def test_a_malformed_content_length_is_a_client_error(served, value):
    """uvicorn (h11) refuses most malformed values itself with a 400; whatever reaches the app is a 4xx problem."""
    content_type, body = multipart(b"x.fits", b"SIMPLE")
    head = f"POST /upload HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: {content_type}\r\n" \
           f"Content-Length: {value}\r\n"
    r, answer, _ = raw_request(served.url, head, [body], wait=10)
    assert 400 <= r.status < 500, (r.status, answer)


@pytest.mark.parametrize("value", ["abc", "-5", "1e9", "+5", "5_0", "٣", ""])
def test_the_upload_route_refuses_a_malformed_content_length_with_400(served, value):
    """The route's own check, which a server in front that lets the header through (here: none, over ASGI) relies
    on: a Content-Length that is not digits is a 400 problem, not a 500."""
    content_type, body = multipart(b"x.fits", b"SIMPLE")

    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_app(served.service), raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            request = client.build_request("POST", "/upload", content=body, headers={**AUTH, "Content-Type": content_type})
            request.headers["Content-Length"] = value
            return await client.send(request)

    r = asyncio.run(send())
    assert_problem(r, 400, r.content)
    assert "Content-Length" in r.json()["detail"]


HOSTILE_NAMES = [b"../../etc/passwd.fits", b"/abs/x.fits", b"..\\x.fits", b"..\\..\\y.fits", b"a\x00b.fits",
                 b"../" * 40 + b"z.fits", b"n" * 300 + b".fits", b"..", b"/", b"", b"%2e%2e%2fq.fits", b"\xff\xfe.fits"]


def test_uploaded_file_names_cannot_lead_outside_the_data_folder(served, frames):
    """Each hostile name (parent steps, absolute, Windows separators, NUL, very long, empty) is answered 2xx or
    4xx, never 5xx; every file written is inside the data folder's inbox folders, none beside or above it."""
    data = served.service.dir

    def outside() -> set[Path]:
        return {p for p in served.root.parent.rglob("*") if not p.is_relative_to(data)}

    before, outside_before = served.files(), outside()
    for i, name in enumerate(HOSTILE_NAMES):
        content_type, body = multipart(name, frames[-1 - i % 3].read_bytes())
        r = httpx.post(f"{served.url}/upload", content=body, headers={**AUTH, "Content-Type": content_type})
        assert r.status_code in (202, 400, 413, 422), (name, r.status_code, r.text)
        if r.status_code == 202:
            accepted = r.json()["accepted"]
            assert Path(accepted).name == accepted and "\0" not in accepted and len(accepted) < 160, accepted
    served.service.run_cycle()
    new = served.files() - before
    inbox = {data / d for d in ("incoming", "pending", "processed", "rejected", "superseded")}
    uploads = {p for p in new if p.name.startswith("upload_")}
    assert uploads and all(p.parent in inbox for p in uploads), uploads
    assert outside() == outside_before, "nothing beside or above the data folder"
    assert not Path("/etc/passwd.fits").exists() and not Path("/abs").exists()


@pytest.mark.parametrize("path", ["/../state.sqlite", "/%2e%2e/state.sqlite", "/..%2fstate.sqlite", "/state.sqlite",
                                  "/alerts.jsonl", "/videos/", "/videos/..", "/static/..", "/static/state.sqlite",
                                  "/incoming/", "/processed", "/docs/../state.sqlite", "/patches/..%2f..%2fstate.sqlite",
                                  "/patches/../state.sqlite/video", "//state.sqlite"])
def test_the_api_serves_no_file_of_the_data_folder(served, path):
    """A path that names a file or folder of the data folder, with or without parent steps and escapes, is a 404
    problem, and the body carries none of the file's bytes."""
    host, port = served.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.request("GET", path)  # as is: httpx would resolve the dot segments
    r = connection.getresponse()
    body = r.read()
    connection.close()
    assert_problem(r, 404, body)
    assert b"SQLite format 3" not in body and b"event_id" not in body


@pytest.mark.parametrize("method, path", [("POST", "/patches"), ("DELETE", "/alerts"), ("PUT", "/upload"),
                                          ("GET", "/upload"), ("PATCH", "/health"), ("DELETE", "/patches/L067.50N07.50"),
                                          ("POST", "/metrics"), ("PUT", "/ready")])
def test_other_methods_on_a_route_are_405(served, method, path):
    r = httpx.request(method, f"{served.url}{path}", headers=AUTH)
    assert_problem(r, 405, r.content)
    assert "allow" in r.headers
