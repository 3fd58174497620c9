"""The suite's own helpers: where this machine lacks what a test needs they skip, saying why; every other fault
fails the test, so that a skip never hides a real error."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import mount_loop


def fake_mount(folder: Path, stderr: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Put a `mount` first on PATH that fails with `stderr`, as util-linux's mount does."""
    folder.mkdir()
    script = folder / "mount"
    script.write_text(f"#!/bin/sh\necho '{stderr}' >&2\nexit 32\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}:{os.environ['PATH']}")


@pytest.mark.parametrize("stderr", [
    "mount: /x: mount failed: Operation not permitted.",  # a container without CAP_SYS_ADMIN
    "mount: /x: failed to setup loop device for /x.img.",  # no free loop device, or none may be made
    "mount: only root can use \"--options\" option",
])
def test_a_refused_loop_mount_skips_saying_why(tmp_path, monkeypatch, stderr):
    fake_mount(tmp_path / "bin", stderr, monkeypatch)
    with pytest.raises(pytest.skip.Exception) as skipped:
        mount_loop(tmp_path / "fs.img", tmp_path / "fs")
    assert str(skipped.value) == f"mounting a loop device is not allowed here: {stderr}"


def test_any_other_mount_failure_is_an_error(tmp_path, monkeypatch):
    stderr = "mount: /x: wrong fs type, bad option, bad superblock on /dev/loop0, missing codepage or helper program."
    fake_mount(tmp_path / "bin", stderr, monkeypatch)
    try:
        with pytest.raises(RuntimeError, match="wrong fs type") as failed:
            mount_loop(tmp_path / "fs.img", tmp_path / "fs")
    except pytest.skip.Exception as skipped:
        pytest.fail(f"mount_loop turned a real error into a skip: {skipped}")
    assert str(tmp_path / "fs.img") in str(failed.value)
