"""scripts/check-images' translation of this machine's pip configuration for the builds (the rest of the script
builds and runs images, which `.ci/run` does for real): a local wheel directory and a file:// index become URLs
served on loopback, whose index pages' relative links to their files resolve; the CA bundle becomes a secret
the pip.conf names; nothing outside those directories is served."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import subprocess
import urllib.error
import urllib.parse
import urllib.request

import pytest

from .gunicorn_process import ROOT


@pytest.fixture(scope="module")
def check_images():
    loader = importlib.machinery.SourceFileLoader("check_images", str(ROOT / "scripts/check-images"))
    spec = importlib.util.spec_from_loader("check_images", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_local_pip_sources_are_served_to_the_build(check_images, tmp_path, monkeypatch):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "torch-9.9.9+cpu-cp311-cp311-linux_x86_64.whl").write_bytes(b"wheel bytes")
    index = tmp_path / "mirror/simple/tiny-package"
    index.mkdir(parents=True)
    (tmp_path / "mirror/files").mkdir()
    (tmp_path / "mirror/files/tiny_package-1.0-py3-none-any.whl").write_bytes(b"tiny")
    (index / "index.html").write_text('<a href="../../files/tiny_package-1.0-py3-none-any.whl">tiny</a>')
    (tmp_path / "secret.txt").write_text("not for the build")
    cert = tmp_path / "ca.crt"
    cert.write_text("-----BEGIN CERTIFICATE-----")
    listed = "\n".join(
        [
            f"global.cert='{cert}'",
            f"global.find-links='{wheels}'",
            f"global.extra-index-url='file://{tmp_path}/mirror/simple https://mirror.example/simple'",
            "global.constraint='/etc/xdg/pip/constraints.txt'",
            ":env:.default-timeout='180'",
        ]
    )

    def pip_config(command, **kwargs):
        assert command[1:] == ["-m", "pip", "config", "list"]
        return subprocess.CompletedProcess(command, 0, stdout=listed + "\n", stderr="")

    monkeypatch.setattr(check_images, "run", pip_config)
    with check_images.pip_for_the_build(tmp_path) as (secrets, torch_index):
        conf = (tmp_path / "pip.conf").read_text().splitlines()
        assert torch_index == "https://pypi.org/simple"
        assert f"id=pip-ca.crt,src={cert}" in secrets and f"id=pip.conf,src={tmp_path / 'pip.conf'}" in secrets
        assert "cert = /run/secrets/pip-ca.crt" in conf and "timeout = 180" in conf
        assert not any(line.startswith("constraint") for line in conf)  # a host path the build cannot read
        settings = dict(line.split(" = ", 1) for line in conf[1:])
        find_links = settings["find-links"]
        local_index, remote_index = settings["extra-index-url"].split()
        assert find_links.startswith("http://127.0.0.1:") and remote_index == "https://mirror.example/simple"
        listing = urllib.request.urlopen(find_links, timeout=10).read().decode()
        assert "torch-9.9.9+cpu-cp311-cp311-linux_x86_64.whl" in listing
        page = urllib.request.urlopen(local_index + "tiny-package/", timeout=10).read().decode()
        link = page.split('href="')[1].split('"')[0]
        wheel = urllib.request.urlopen(urllib.parse.urljoin(local_index + "tiny-package/", link), timeout=10)
        assert wheel.read() == b"tiny"
        # a wheel directory's siblings, and anything else on the host, are not served
        for elsewhere in (str(tmp_path / "secret.txt"), "/etc/passwd", f"{wheels}/../secret.txt"):
            with pytest.raises(urllib.error.HTTPError):
                urllib.request.urlopen(find_links.replace(f"{wheels}/", elsewhere), timeout=10)
