"""A web root for the static-file tests: a few files, plus every way a request could try to get out of it."""

from __future__ import annotations

import os
from pathlib import Path

SECRET = "TOP-SECRET-5b0e4c1d-do-not-serve"
INDEX = "<!doctype html><title>test page</title><p>hello</p>\n"
SCRIPT = "console.log('app');\n"
STYLE = "body { color: black; }\n"


def make_web_root(tmp_path: Path) -> Path:
    """A web root with a few files; a secret file next to it; a symlink and a hidden file inside."""
    root = tmp_path / "web"
    root.mkdir()
    (root / "index.html").write_text(INDEX)
    (root / "app.js").write_text(SCRIPT)
    (root / "style.css").write_text(STYLE)
    (root / "sub").mkdir()
    (root / "sub" / "page.html").write_text("<p>sub page</p>\n")
    (root / "sub" / "index.html").write_text("<p>sub index</p>\n")
    (root / ".hidden").write_text(SECRET)
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text(SECRET)
    (tmp_path / "secret.txt").write_text(SECRET)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_text(SECRET)
    os.symlink(tmp_path / "secret.txt", root / "escape.txt")
    os.symlink(tmp_path / "outside", root / "escape-dir")
    os.symlink(root / "app.js", root / "alias.js")  # a symlink that stays inside is fine
    return root


TRAVERSALS = [
    "/../secret.txt",
    "/%2e%2e/secret.txt",
    "/%2E%2E/secret.txt",
    "/%2E%2E%2Fsecret.txt",
    "/..%2fsecret.txt",
    "/..%2Fsecret.txt",
    "/%252e%252e/secret.txt",
    "/%252e%252e%252fsecret.txt",
    "/sub/../../secret.txt",
    "/sub/%2e%2e/%2e%2e/secret.txt",
    "/./../secret.txt",
    "//../secret.txt",
    "/..\\secret.txt",
    "/%5c..%5csecret.txt",
    "/.hidden",
    "/%2ehidden",
    "/.git/config",
    "/escape.txt",
    "/escape-dir/secret.txt",
    "/index.html%00",
    "/index.html%00.js",
    "/%00",
    "/%ff%fe",
    "/%",
    "/nope.html",
    "/sub/nope",
    "/app.js/x",
]
