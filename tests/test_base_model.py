"""The base model folder: every file checked (and never modified), and downloads from a real local HTTP server."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import json
import os
import shutil
import socket
import threading
import urllib.parse
from pathlib import Path

import pytest
import torch

from utils.base_model.download import LOCK_FILE, download_base_model, ensure_base_model
from utils.base_model.folder import (
    DEFAULT_BASE_URL,
    DVAE_KWARGS,
    FLAG,
    HUB_REVISION,
    REQUIRED_FILES,
    BaseModelError,
    check_base_folder,
    default_base_dir,
    expected_dvae_shapes,
)

# ------------------------------------------------------------------------------------------------------ helpers


def linked_copy(src: Path, dst: Path, *, skip: tuple[str, ...] = ()) -> Path:
    """A copy of the base folder made of hard links (cheap for ~300 MB); files named in `skip` are left out, so a
    test writes its own version of them instead of writing through a link into the shared fixture."""
    dst.mkdir(parents=True, exist_ok=True)
    for path in src.iterdir():
        if path.name not in skip:
            try:
                os.link(path, dst / path.name)
            except OSError:
                shutil.copy2(path, dst / path.name)
    return dst


def snapshot(folder: Path) -> dict[str, tuple[int, int, str]]:
    """Name -> (size, mtime in ns, sha256) of every file in `folder`."""
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns, sha256_of(p)) for p in sorted(folder.iterdir())}


def sha256_of(path: Path) -> str:
    return _sha256_cached(str(path), path.stat().st_size, path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def small_dvae_state() -> dict[str, torch.Tensor]:
    """The state dict of a DVAE of another size than XTTS-v2's (what a wrong dvae.pth looks like)."""
    from TTS.tts.layers.xtts.dvae import DiscreteVAE

    kwargs = {**DVAE_KWARGS, "num_tokens": 256, "codebook_dim": 64, "hidden_dim": 64, "num_resnet_blocks": 1}
    return DiscreteVAE(**kwargs).state_dict()


@pytest.fixture
def base_copy(tiny_base: Path, tmp_path: Path):
    """A function making a linked copy of the tiny base with some files replaced by the test."""

    def make(*replace: str) -> Path:
        return linked_copy(tiny_base, tmp_path / "base", skip=replace)

    return make


# ------------------------------------------------------------------------------------------------ check a folder


def test_tiny_base_passes_and_dims_come_from_its_config(tiny_base: Path):
    base = check_base_folder(tiny_base)
    args = json.loads((tiny_base / "config.json").read_text())["model_args"]
    assert base.folder == tiny_base
    assert base.model_args == args
    assert (base.gpt_layers, base.gpt_n_model_channels, base.gpt_n_heads) == (
        args["gpt_layers"], args["gpt_n_model_channels"], args["gpt_n_heads"],
    ) == (2, 64, 2)
    assert base.gpt_number_text_tokens == args["gpt_number_text_tokens"]
    assert base.gpt_num_audio_tokens == args["gpt_num_audio_tokens"]
    assert base.model_path == tiny_base / "model.pth" and base.dvae_path == tiny_base / "dvae.pth"
    assert base.speakers_path is None


def test_released_model_pth_is_read_and_no_file_changes(tiny_base: Path):
    # The fixture's model.pth is in the released format: plain weights_only loading refuses its pickled XttsConfig.
    with pytest.raises(Exception, match=r"(?i)weights.?only|unsupported global"):
        torch.load(tiny_base / "model.pth", weights_only=True)
    before = snapshot(tiny_base)
    check_base_folder(tiny_base)
    assert snapshot(tiny_base) == before  # same files, bytes and mtimes; nothing added


def test_check_leaves_the_global_rng_alone(tiny_base: Path):
    expected_dvae_shapes.cache_clear()  # force the DVAE to be built inside the check
    torch.manual_seed(123)
    expected = torch.rand(4)
    torch.manual_seed(123)
    check_base_folder(tiny_base)
    assert torch.equal(torch.rand(4), expected)


def test_missing_folder(tmp_path: Path):
    folder = tmp_path / "nowhere"
    with pytest.raises(BaseModelError, match="does not exist") as e:
        check_base_folder(folder)
    assert str(folder) in str(e.value) and FLAG in str(e.value)


@pytest.mark.parametrize("name", REQUIRED_FILES)
def test_each_missing_file_is_named(base_copy, name: str):
    folder = base_copy(name)
    with pytest.raises(BaseModelError) as e:
        check_base_folder(folder)
    message = str(e.value)
    assert str(folder) in message and name in message and FLAG in message
    assert message.split(" lacks ")[1].split(":")[0] == name  # only the one that is missing


def test_all_missing_files_in_one_sentence(tmp_path: Path):
    with pytest.raises(BaseModelError) as e:
        check_base_folder(tmp_path)
    assert all(name in str(e.value) for name in REQUIRED_FILES) and FLAG in str(e.value)


def _write_dvae(folder: Path, kind: str) -> None:
    path = folder / "dvae.pth"
    if kind == "random bytes":
        path.write_bytes(os.urandom(4096))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "another size":
        torch.save(small_dvae_state(), path)
    elif kind == "a key missing":
        state = {k: torch.zeros(s) for k, s in expected_dvae_shapes().items()}
        state.pop(next(iter(state)))
        torch.save(state, path)
    elif kind == "an extra key":
        state = {k: torch.zeros(s) for k, s in expected_dvae_shapes().items()}
        torch.save({**state, "decoder.extra.weight": torch.zeros(1)}, path)
    elif kind == "wrapped in a dict":
        torch.save({"model": {k: torch.zeros(s) for k, s in expected_dvae_shapes().items()}}, path)
    elif kind == "a bare tensor":
        torch.save(torch.zeros(3), path)


DVAE_FAULTS = [
    "random bytes", "empty", "another size", "a key missing", "an extra key", "wrapped in a dict", "a bare tensor",
]


@pytest.mark.parametrize("kind", DVAE_FAULTS)
def test_wrong_dvae_is_refused(base_copy, kind: str):
    folder = base_copy("dvae.pth")
    _write_dvae(folder, kind)
    with pytest.raises(BaseModelError) as e:
        check_base_folder(folder)
    assert str(folder / "dvae.pth") in str(e.value) and FLAG in str(e.value)


@pytest.mark.parametrize(
    "content",
    [
        "not json {",
        json.dumps([1, 2]),
        json.dumps({"model": "vits", "model_args": {}}),
        json.dumps({"model": "xtts"}),
    ],
    ids=["not JSON", "a list", "another model", "no model_args"],
)
def test_config_not_xtts_is_refused(base_copy, content: str):
    folder = base_copy("config.json")
    (folder / "config.json").write_text(content)
    with pytest.raises(BaseModelError) as e:
        check_base_folder(folder)
    assert str(folder / "config.json") in str(e.value) and FLAG in str(e.value)


def test_config_without_a_dimension_is_refused(tiny_base: Path, base_copy):
    folder = base_copy("config.json")
    config = json.loads((tiny_base / "config.json").read_text())
    del config["model_args"]["gpt_layers"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(BaseModelError, match="gpt_layers"):
        check_base_folder(folder)


def test_null_text_token_count_is_taken_from_the_vocabulary(tiny_base: Path, base_copy):
    folder = base_copy("config.json")
    config = json.loads((tiny_base / "config.json").read_text())
    rows = config["model_args"]["gpt_number_text_tokens"]
    config["model_args"]["gpt_number_text_tokens"] = None  # XTTS then counts the tokenizer's tokens
    (folder / "config.json").write_text(json.dumps(config))
    assert check_base_folder(folder).gpt_number_text_tokens == rows


@pytest.mark.parametrize(
    ("key", "value", "shown"), [("gpt_layers", 3, "layers 2"), ("gpt_n_model_channels", 128, "width 64")]
)
def test_model_pth_of_another_size_than_config_is_refused(tiny_base: Path, base_copy, key: str, value: int, shown: str):
    folder = base_copy("config.json")
    config = json.loads((tiny_base / "config.json").read_text())
    config["model_args"][key] = value
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(BaseModelError, match=shown) as e:
        check_base_folder(folder)
    assert str(folder / "model.pth") in str(e.value) and FLAG in str(e.value)


@pytest.mark.parametrize("kind", ["random bytes", "a short text", "a bare tensor"])
def test_unreadable_model_pth_is_refused(base_copy, kind: str):
    folder = base_copy("model.pth")
    if kind == "random bytes":
        (folder / "model.pth").write_bytes(os.urandom(4096))
    elif kind == "a short text":
        (folder / "model.pth").write_bytes(b"abc" * 100)  # torch.load raises IndexError on this one
    else:
        torch.save(torch.zeros(2), folder / "model.pth")
    with pytest.raises(BaseModelError) as e:
        check_base_folder(folder)
    assert str(folder / "model.pth") in str(e.value) and FLAG in str(e.value)


@pytest.mark.parametrize("value", [torch.ones(100), {"mel": torch.ones(80)}, torch.full((80,), float("nan"))])
def test_wrong_mel_stats_is_refused(base_copy, value):
    folder = base_copy("mel_stats.pth")
    torch.save(value, folder / "mel_stats.pth")
    with pytest.raises(BaseModelError) as e:
        check_base_folder(folder)
    assert str(folder / "mel_stats.pth") in str(e.value) and FLAG in str(e.value)


MEMORY_MARGIN_KB = 500 * 1024  # refusing the hostile file may cost at most 500 MB more than checking a good folder
CHECK_PEAK_RSS = """
import json, resource, sys
sys.path.insert(0, sys.argv[1])
from utils.base_model.folder import BaseModelError, check_base_folder
seen = []
for folder in sys.argv[2:]:
    try:
        check_base_folder(folder)
        seen.append([None, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss])
    except BaseModelError as e:
        seen.append([str(e), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss])
print(json.dumps(seen))
"""


def test_a_tiny_dvae_or_mel_stats_file_asking_for_gigabytes_is_refused_without_allocating(tiny_base, tmp_path):
    """dvae.pth and mel_stats.pth go through the capped metadata read before torch.load, as checkpoints do: a
    few hundred bytes that would build a 1.5 GB bytearray are refused, and the check's peak memory stays that of
    checking a good folder (measured in a fresh process, the good folder first)."""
    import pickle
    import subprocess
    import sys
    import zipfile

    from conftest import ROOT

    class Big:
        def __reduce__(self):
            return (bytearray, (1_500_000_000,))

    folders = []
    for name in ("dvae.pth", "mel_stats.pth"):
        folder = linked_copy(tiny_base, tmp_path / name, skip=(name,))
        with zipfile.ZipFile(folder / name, "w") as z:  # protocol 3: torch's weights_only loader would build it
            z.writestr("archive/data.pkl", pickle.dumps({"w": Big()}, protocol=3))
            z.writestr("archive/version", "3\n")
        assert (folder / name).stat().st_size < 1000
        folders.append(folder)
    done = subprocess.run([sys.executable, "-c", CHECK_PEAK_RSS, str(ROOT), str(tiny_base), *map(str, folders)],
                          capture_output=True, text=True, timeout=300, check=True)
    (good, good_rss), *refused = json.loads(done.stdout)
    assert good is None
    for folder, (error, rss) in zip(folders, refused, strict=True):
        name = folder.name
        assert rss <= good_rss + MEMORY_MARGIN_KB, f"peak RSS {rss} KB refusing {name} vs {good_rss} KB"
        assert error and str(folder / name) in error and FLAG in error, error
        assert "refused: bytearray(1500000000) asks for more than" in error, error  # the capped reader's reason


def test_invalid_vocab_is_refused(base_copy):
    folder = base_copy("vocab.json")
    (folder / "vocab.json").write_text('{"not": "a tokenizer"}')
    with pytest.raises(BaseModelError) as e:
        check_base_folder(folder)
    assert str(folder / "vocab.json") in str(e.value) and FLAG in str(e.value)


def test_default_dir_follows_the_environment(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("XTTS_BASE_DIR", str(tmp_path / "mine"))
    assert default_base_dir() == tmp_path / "mine"
    monkeypatch.delenv("XTTS_BASE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert default_base_dir() == tmp_path / "cache" / "xtts-finetune" / "XTTS-v2"
    assert f"https://huggingface.co/coqui/XTTS-v2/resolve/{HUB_REVISION}/" == DEFAULT_BASE_URL


# ------------------------------------------------------------------------------------------- a local HTTP server


class FileServer:
    """A real HTTP server on 127.0.0.1 that serves files the way the hub does.

    checksum: "linked" answers /<prefix>/<name> with a 302 to /cdn/<name> carrying `X-Linked-ETag: "<sha256>"`
    (as huggingface.co does for LFS files), "etag" puts the sha256 in the final response's ETag, "none" sends an
    ETag that is not a sha256 (as for the hub's small git files). `wrong_sha` names files whose stated checksum is
    wrong; `cut` names files whose connection is closed halfway; Range requests are honoured (206).
    """

    PREFIX = "/coqui/XTTS-v2/resolve/test/"

    def __init__(self, files: dict[str, Path | bytes], *, checksum: str = "linked", wrong_sha=(), cut=()):
        self.files, self.checksum, self.wrong_sha, self.cut = files, checksum, set(wrong_sha), set(cut)
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header) of every request
        self.served: list[tuple[str, str | None]] = []  # (file name, Range header) of every file body sent
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.owner = self  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{self.PREFIX}"

    def ranges(self, name: str) -> list[str | None]:
        """The Range headers of the requests that fetched `name`'s bytes."""
        return [r for n, r in self.served if n == name]

    def body(self, name: str) -> bytes | Path:
        return self.files[name]

    def size(self, name: str) -> int:
        data = self.files[name]
        return data.stat().st_size if isinstance(data, Path) else len(data)

    def sha(self, name: str) -> str:
        if name in self.wrong_sha:
            return hashlib.sha256(b"some other file").hexdigest()
        data = self.files[name]
        return sha256_of(data) if isinstance(data, Path) else hashlib.sha256(data).hexdigest()

    def __enter__(self) -> FileServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, format, *args) -> None:  # keep the test output clean
        pass

    def do_GET(self) -> None:
        srv: FileServer = self.server.owner  # type: ignore[attr-defined]
        path = urllib.parse.unquote(self.path)
        srv.requests.append((path, self.headers.get("Range")))
        redirected = path.startswith("/cdn/")
        name = path.removeprefix("/cdn/") if redirected else path.removeprefix(FileServer.PREFIX)
        if name not in srv.files or (not redirected and not path.startswith(FileServer.PREFIX)):
            self.send_error(404)
            return
        if srv.checksum == "linked" and not redirected:
            self.send_response(302)
            self.send_header("Location", f"/cdn/{name}")
            self.send_header("X-Linked-ETag", f'"{srv.sha(name)}"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self._send_file(srv, name)

    def _send_file(self, srv: FileServer, name: str) -> None:
        srv.served.append((name, self.headers.get("Range")))
        size = srv.size(name)
        start = int(self.headers["Range"].removeprefix("bytes=").rstrip("-")) if self.headers.get("Range") else 0
        if start >= size > 0:
            self.send_error(416)
            return
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        self.send_header("Content-Length", str(size - start))
        self.send_header("ETag", f'"{srv.sha(name)}"' if srv.checksum == "etag" else '"5d41402abc4b2a76"')
        self.end_headers()
        stop = start + (size - start) // 2 if name in srv.cut else size
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client hung up (restart, give up)
            self._write_range(srv.body(name), start, stop)
        self.close_connection = True

    def _write_range(self, body: bytes | Path, start: int, stop: int) -> None:
        if isinstance(body, bytes):
            self.wfile.write(body[start:stop])
            return
        with open(body, "rb") as f:
            f.seek(start)
            while start < stop and (chunk := f.read(min(1 << 20, stop - start))):
                self.wfile.write(chunk)
                start += len(chunk)


def stand_ins(seed: int = 0) -> dict[str, bytes]:
    """Small random stand-ins for the base files: these tests are about transport, not content."""
    rng = __import__("random").Random(seed)
    return {name: rng.randbytes(200_000 + 1000 * i) for i, name in enumerate(REQUIRED_FILES)}


def leftovers(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()} - {LOCK_FILE}


# ----------------------------------------------------------------------------------------------------- downloads


@pytest.mark.slow
def test_full_download_fills_an_empty_folder_that_then_passes(tiny_base: Path, tmp_path: Path, monkeypatch):
    dest = tmp_path / "cache" / "XTTS-v2"
    files = {name: tiny_base / name for name in REQUIRED_FILES}  # the real (tiny) files, ~300 MB
    seen: dict[str, tuple[int, int | None]] = {}
    with FileServer(files, checksum="linked") as server:
        monkeypatch.setenv("XTTS_BASE_DIR", str(dest))
        monkeypatch.setenv("XTTS_BASE_URL", server.url)
        base = ensure_base_model(progress=False, progress_callback=lambda f, n, total: seen.update({f: (n, total)}))
    assert base.folder == dest and base.gpt_layers == 2
    assert leftovers(dest) == set(REQUIRED_FILES)  # no .part left; speakers_xtts.pth (404) skipped
    for name in REQUIRED_FILES:
        assert sha256_of(dest / name) == sha256_of(tiny_base / name)
        assert seen[name] == ((tiny_base / name).stat().st_size,) * 2


@pytest.mark.parametrize("checksum", ["linked", "etag", "none"])
def test_download_verifies_what_the_server_states(tmp_path: Path, checksum: str):
    files = stand_ins()
    with FileServer(files, checksum=checksum) as server:
        download_base_model(tmp_path, base_url=server.url, progress=False)
    assert leftovers(tmp_path) == set(REQUIRED_FILES)
    assert all((tmp_path / n).read_bytes() == data for n, data in files.items())


def test_wrong_checksum_leaves_no_file_and_says_so(tmp_path: Path):
    with FileServer(stand_ins(), wrong_sha={"dvae.pth"}) as server, pytest.raises(BaseModelError) as e:
        download_base_model(tmp_path, base_url=server.url, progress=False)
    message = str(e.value)
    assert "dvae.pth" in message and "sha256" in message and str(tmp_path) in message and FLAG in message
    assert not (tmp_path / "dvae.pth").exists() and not (tmp_path / "dvae.pth.part").exists()
    assert "mel_stats.pth" not in leftovers(tmp_path)  # stopped at the first failure


def test_cut_connection_keeps_only_the_part_and_the_next_run_resumes(tmp_path: Path):
    files = stand_ins()
    with FileServer(files, cut={"model.pth"}) as server, pytest.raises(BaseModelError) as e:
        download_base_model(tmp_path, base_url=server.url, progress=False)
    message = str(e.value)
    assert "model.pth" in message and str(tmp_path) in message and FLAG in message and "resume" in message
    assert leftovers(tmp_path) == {"model.pth.part"}
    half = (tmp_path / "model.pth.part").stat().st_size
    assert 0 < half < len(files["model.pth"])

    with FileServer(files) as server:
        download_base_model(tmp_path, base_url=server.url, progress=False)
        assert server.ranges("model.pth") == [f"bytes={half}-"]  # resumed, not restarted
    assert (tmp_path / "model.pth").read_bytes() == files["model.pth"]
    assert leftovers(tmp_path) == set(REQUIRED_FILES)


def test_a_stale_part_is_never_renamed_unverified(tmp_path: Path):
    files = stand_ins()
    (tmp_path / "config.json.part").write_bytes(b"x" * 1000)  # garbage left by some earlier attempt
    with FileServer(files) as server, pytest.raises(BaseModelError, match="sha256"):
        download_base_model(tmp_path, base_url=server.url, progress=False)
    assert not (tmp_path / "config.json").exists() and not (tmp_path / "config.json.part").exists()
    with FileServer(files) as server:
        download_base_model(tmp_path, base_url=server.url, progress=False)
    assert (tmp_path / "config.json").read_bytes() == files["config.json"]


def test_without_a_checksum_a_part_is_restarted_not_resumed(tmp_path: Path):
    files = stand_ins()
    (tmp_path / "vocab.json.part").write_bytes(b"x" * 1000)
    with FileServer(files, checksum="none") as server:
        download_base_model(tmp_path, base_url=server.url, progress=False)
        assert None in server.ranges("vocab.json")  # fetched whole
    assert (tmp_path / "vocab.json").read_bytes() == files["vocab.json"]


def test_existing_files_are_kept_and_optional_file_fetched(tmp_path: Path):
    files = {**stand_ins(), "speakers_xtts.pth": b"speakers"}
    (tmp_path / "config.json").write_text("mine")
    with FileServer(files) as server:
        download_base_model(tmp_path, base_url=server.url, progress=False)
        assert not any(path.endswith("config.json") for path, _ in server.requests)
    assert (tmp_path / "config.json").read_text() == "mine"
    assert (tmp_path / "speakers_xtts.pth").read_bytes() == b"speakers"


def test_a_required_file_the_server_lacks(tmp_path: Path):
    files = stand_ins()
    del files["mel_stats.pth"]
    with FileServer(files) as server, pytest.raises(BaseModelError, match="404") as e:
        download_base_model(tmp_path, base_url=server.url, progress=False)
    assert "mel_stats.pth" in str(e.value) and FLAG in str(e.value)
    assert not (tmp_path / "mel_stats.pth").exists()


def test_no_server_listening(tmp_path: Path):
    dest = tmp_path / "cache"
    with socket.socket() as s, pytest.raises(BaseModelError) as e:
        s.bind(("127.0.0.1", 0))  # bound, never listening, held throughout: refused, and no one else's port
        ensure_base_model(dest, base_url=f"http://127.0.0.1:{s.getsockname()[1]}/x/", progress=False)
    message = str(e.value)
    assert str(dest) in message and FLAG in message
    assert all(name in message for name in REQUIRED_FILES)
    assert leftovers(dest) == set()


def test_ensure_without_download_only_checks(tmp_path: Path):
    with pytest.raises(BaseModelError) as e:
        ensure_base_model(tmp_path, download=False)
    assert all(name in str(e.value) for name in REQUIRED_FILES) and FLAG in str(e.value)
