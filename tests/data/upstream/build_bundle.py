"""Rebuild more-itertools.bundle and more-itertools.LICENSE from more-itertools' PyPI sdists.

Not part of the test suite and never run by it: run it by hand, with network access to
PyPI, when the vendored files have to be made again (README.md beside this file says when
and how). It downloads each release in RELEASES with `pip download`, checks the sdist's
sha256, and writes one commit per release, in order, each the child of the one before:

- tree: the sdist's regular files, paths without the leading `more-itertools-X.Y.Z/`,
  less the generated metadata (`PKG-INFO`, `more_itertools.egg-info/`); mode 100755 where
  the archive gives a file any execute bit, 100644 otherwise; blobs stored byte for byte;
- author and committer: the fixed identity below, dated (UTC) at the newest member mtime
  in the archive, which is when the maintainer built the sdist;
- message: ``more-itertools X.Y.Z (PyPI sdist FILENAME, sha256 HEX)``;
- a lightweight tag X.Y.Z on it; `master` and HEAD point at the last release.

Everything that goes into a commit comes from the sdist bytes and the constants here, so
the commit hashes are the same on every machine. The bundle is packed with one thread, so
the same git version writes the same bytes. Usage:

    python tests/data/upstream/build_bundle.py [--sdists DIR] [--out DIR]

`--sdists DIR` reuses (and fills) a folder of downloaded sdists; `--out` defaults to the
folder of this script.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PROJECT = "more-itertools"
# (version, sha256 of the PyPI sdist more-itertools-<version>.tar.gz), oldest first.
RELEASES: tuple[tuple[str, str], ...] = (
    ("8.0.2", "b84b238cce0d9adad5ed87e745778d20a3f8487d0f0cb8b8a586816c7496458d"),
    ("8.1.0", "c468adec578380b6281a114cb8a5db34eb1116277da92d7c46f904f0b52d3288"),
    ("8.2.0", "b1ddb932186d8a6ac451e1d95844b382f55e12686d51ca0c68b6f61f2ab7a507"),
    ("8.3.0", "558bb897a2232f5e4f8e2399089e35aecb746e1f9191b6584a151647e89267be"),
    ("8.7.0", "c5d6da9ca3ff65220c3bfd2a8db06d698f05d4d2b9be57e1deb2be5a45019713"),
    ("8.8.0", "83f0308e05477c68f56ea3a888172c78ed5d5b3c282addb67508e7ba6c8f813a"),
    ("9.0.0", "5a6257e40878ef0520b1803990e3e22303a41b5714006c32a3fd8304b26ea1ab"),
    ("9.1.0", "cabaa341ad0389ea83c17a94566a53ae4c9d07349861ecb14dc6d0345cf9ac5d"),
    ("10.0.0", "cd65437d7c4b615ab81c0640c0480bc29a550ea032891977681efd28344d51e1"),
)
IDENTITY = ("more-itertools PyPI release", "more-itertools-sdist@invalid")
DROPPED_FILES = frozenset({"PKG-INFO"})
DROPPED_DIRS = ("more_itertools.egg-info/",)
BUNDLE_NAME = "more-itertools.bundle"
LICENSE_NAME = "more-itertools.LICENSE"
# pip builds an sdist's metadata before it saves it. The 8.x setup.py files import
# `more_itertools.__version__`, and setuptools 71+ puts its own vendored more_itertools on
# sys.path first, so pip would read the wrong version and refuse the download.
BUILD_CONSTRAINT = "setuptools<71\n"


class BuildError(Exception):
    """A download, checksum or archive did not match what this script expects."""


def sdist_name(version: str) -> str:
    return f"{PROJECT}-{version}.tar.gz"


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch_sdist(version: str, sha256: str, sdists: Path) -> Path:
    """The verified sdist of `version` in `sdists`, downloaded with pip when absent."""
    path = sdists / sdist_name(version)
    if not path.is_file():
        with tempfile.TemporaryDirectory() as tmp:
            constraint = Path(tmp) / "build-constraints.txt"
            constraint.write_text(BUILD_CONSTRAINT)
            env = dict(os.environ, PIP_CONSTRAINT=str(constraint))
            cmd = [
                sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                f"{PROJECT}=={version}", "-d", str(sdists),
            ]
            print("+", " ".join(cmd), file=sys.stderr)
            subprocess.run(cmd, check=True, env=env)
    if not path.is_file():
        raise BuildError(f"pip did not save {path.name} in {sdists}")
    got = sha256_of(path)
    if got != sha256:
        raise BuildError(
            f"{path} has sha256 {got}, expected {sha256}: delete it and run again, or, if "
            "PyPI really serves other bytes now, stop: the manifest's hashes would change"
        )
    return path


def read_sdist(path: Path, version: str) -> tuple[dict[str, tuple[str, bytes]], int]:
    """The kept files of an sdist as {path: (git mode, bytes)}, and its newest mtime."""
    prefix = f"{PROJECT}-{version}/"
    files: dict[str, tuple[str, bytes]] = {}
    newest = 0
    with tarfile.open(path, "r:gz") as archive:
        for member in archive.getmembers():
            newest = max(newest, int(member.mtime))
            if member.isdir():
                continue
            if not member.isfile():
                raise BuildError(f"{path.name}: {member.name} is not a regular file")
            if not member.name.startswith(prefix):
                raise BuildError(f"{path.name}: {member.name} is outside {prefix}")
            name = member.name[len(prefix):]
            if name in DROPPED_FILES or name.startswith(DROPPED_DIRS):
                continue
            if name in files:
                raise BuildError(f"{path.name}: {name} appears twice")
            handle = archive.extractfile(member)
            if handle is None:
                raise BuildError(f"{path.name}: cannot read {member.name}")
            mode = "100755" if member.mode & 0o111 else "100644"
            files[name] = (mode, handle.read())
    for needed in ("LICENSE", "tests/__init__.py", "more_itertools/__init__.py"):
        if needed not in files:
            raise BuildError(f"{path.name} has no {needed}")
    return files, newest


class Repo:
    """A bare repository driven with git plumbing, isolated from every git config file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.env = {
            key: value for key, value in os.environ.items() if not key.startswith("GIT_")
        }
        self.env.update(
            GIT_CONFIG_NOSYSTEM="1",
            GIT_CONFIG_GLOBAL=os.devnull,
            GIT_DIR=str(path),
            GIT_INDEX_FILE=str(path / "build-index"),
            LC_ALL="C",
        )
        self.git("init", "-q", "--bare", "--initial-branch=master", str(path))

    def git(self, *args: str, stdin: bytes = b"", env: dict[str, str] | None = None) -> str:
        done = subprocess.run(
            ["git", *args], input=stdin, capture_output=True, check=False,
            env=env if env is not None else self.env,
        )
        if done.returncode != 0:
            raise BuildError(f"git {' '.join(args)}: {done.stderr.decode(errors='replace')}")
        return done.stdout.decode().strip()

    def commit_release(
        self, files: dict[str, tuple[str, bytes]], when: int, message: str, parent: str | None
    ) -> str:
        index = Path(self.env["GIT_INDEX_FILE"])
        index.unlink(missing_ok=True)
        entries = []
        for name in sorted(files):
            mode, data = files[name]
            blob = self.git("hash-object", "-w", "--no-filters", "--stdin", stdin=data)
            entries.append(f"{mode} {blob}\t{name}\n")
        self.git("update-index", "--add", "--index-info", stdin="".join(entries).encode())
        tree = self.git("write-tree")
        index.unlink()
        name, email = IDENTITY
        env = dict(
            self.env,
            GIT_AUTHOR_NAME=name, GIT_AUTHOR_EMAIL=email, GIT_AUTHOR_DATE=f"@{when} +0000",
            GIT_COMMITTER_NAME=name, GIT_COMMITTER_EMAIL=email,
            GIT_COMMITTER_DATE=f"@{when} +0000",
        )
        args = ["commit-tree", tree, "-m", message]
        if parent is not None:
            args += ["-p", parent]
        return self.git(*args, env=env)


def build(sdists: Path, out: Path) -> None:
    sdists.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        repo = Repo(Path(tmp) / "more-itertools.git")
        parent: str | None = None
        licence = b""
        for version, sha256 in RELEASES:
            path = fetch_sdist(version, sha256, sdists)
            files, when = read_sdist(path, version)
            subject = f"{PROJECT} {version} (PyPI sdist {path.name}, sha256 {sha256})"
            body = (
                f"The tree is the files of {path.name} as published on PyPI, less the\n"
                "generated PKG-INFO and more_itertools.egg-info/. This commit is a release,\n"
                "not one of upstream's own commits; its date is the sdist's newest mtime."
            )
            parent = repo.commit_release(files, when, f"{subject}\n\n{body}", parent)
            repo.git("tag", version, parent)
            print(f"{version} {parent}", file=sys.stderr)
            licence = files["LICENSE"][1]
        assert parent is not None
        repo.git("update-ref", "refs/heads/master", parent)
        repo.git("symbolic-ref", "HEAD", "refs/heads/master")
        bundle = out / BUNDLE_NAME
        repo.git("-c", "pack.threads=1", "bundle", "create", str(bundle), "--all")
        (out / LICENSE_NAME).write_bytes(licence)
        print(f"wrote {bundle} ({bundle.stat().st_size} bytes, sha256 {sha256_of(bundle)})")
        print(f"wrote {out / LICENSE_NAME}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sdists", type=Path, help="folder of sdists to reuse and fill")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args(argv)
    try:
        if args.sdists is not None:
            build(args.sdists, args.out)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                build(Path(tmp), args.out)
    except (BuildError, subprocess.CalledProcessError) as exc:
        print(f"build_bundle: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
