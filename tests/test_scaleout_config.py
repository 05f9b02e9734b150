"""The scale-out configuration, checked without starting it (docs/scale-out.md): the nginx
template both topologies share, the main configuration lab/scaleout.py generates (``nginx
-t``), and docker-compose.yml's coherence with lab/matrix.toml and the template.

No Docker engine is needed: the YAML is parsed and cross-checked here; where the
``docker-compose`` (v1) or ``docker compose`` (v2) client exists, ``config`` validates the
file too (the client validates, it starts nothing).
"""

from __future__ import annotations

import ipaddress
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab import matrix, scaleout

ROOT = matrix.REPO_ROOT
COMPOSE = ROOT / "docker-compose.yml"
_DEFAULT = re.compile(r"\$\{([A-Z0-9_]+):-([^}]*)\}")


def _defaults(value: Any) -> Any:
    """Compose's ``${VAR:-default}`` interpolation with nothing set: the defaults."""
    if isinstance(value, str):
        return _DEFAULT.sub(lambda m: m.group(2), value)
    if isinstance(value, list):
        return [_defaults(v) for v in value]
    if isinstance(value, dict):
        return {k: _defaults(v) for k, v in value.items()}
    return value


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = _defaults(yaml.safe_load(COMPOSE.read_text()))
    return data


def _arg(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


def test_template_placeholders_are_the_lab_ones_only() -> None:
    text = scaleout.TEMPLATE.read_text()
    assert set(re.findall(r"\$\{(\w+)\}", text)) == {
        "LAB_NGINX_UPSTREAM_SERVERS",
        "LAB_NGINX_LISTEN",
    }
    with pytest.raises(KeyError, match="LAB_NGINX_LISTEN"):
        scaleout.render_template({"LAB_NGINX_UPSTREAM_SERVERS": "server 127.0.0.1:1;"})


def test_generated_configuration_passes_nginx_t(tmp_path: Path) -> None:
    """What ``lab serve --instances 2`` writes is a valid nginx configuration that keeps
    every path under its prefix (no root-owned default path is needed)."""
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        scaleout.main_conf(
            ["127.0.0.1:18001", "127.0.0.1:18002"], listen="127.0.0.1:18000", worker_processes=1
        )
    )
    (tmp_path / "tmp").mkdir()
    tmp_path.chmod(0o755)
    result = subprocess.run(
        [scaleout.find_nginx(), "-t", "-p", str(tmp_path), "-c", str(conf), "-e", "stderr"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    text = conf.read_text()
    assert "server 127.0.0.1:18001; server 127.0.0.1:18002;" in text
    assert "keepalive 64;" in text
    assert "X-Forwarded-For $proxy_add_x_forwarded_for" in text
    assert "/var/" not in text


def test_compose_services_and_profiles(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"postgres", "redis", "seed", "app", "nginx"}
    # `docker compose up` alone still starts only the databases (the existing use).
    assert {n for n, s in services.items() if "profiles" not in s} == {"postgres", "redis"}
    assert all(services[n]["profiles"] == ["scale"] for n in ("seed", "app", "nginx"))
    assert services["seed"]["command"] == ["lab", "db", "init"]
    assert services["app"]["depends_on"]["seed"]["condition"] == "service_completed_successfully"
    assert services["nginx"]["depends_on"]["app"]["condition"] == "service_healthy"
    assert int(services["app"]["deploy"]["replicas"]) >= 2


def test_compose_app_is_a_pair_of_the_matrix(compose: dict[str, Any]) -> None:
    app = compose["services"]["app"]
    command = app["command"]
    assert command[:2] == ["lab", "serve"]
    pair = matrix.pair(_arg(command, "--framework"), _arg(command, "--server"))
    assert pair.id == "fastapi-uvicorn"
    dockerfile = (ROOT / "Dockerfile").read_text()
    extras = set(re.search(r'-e "\.\[([^\]]+)\]"', dockerfile).group(1).split(","))  # type: ignore[union-attr]
    needed = {f.name for f in matrix.frameworks()} | {
        s.name.split("-")[0] for s in matrix.servers()
    }
    assert needed <= extras, f"the image lacks {needed - extras}"


def test_compose_wiring_is_coherent(compose: dict[str, Any]) -> None:
    services = compose["services"]
    app, nginx, seed = services["app"], services["nginx"], services["seed"]
    port = _arg(app["command"], "--port")
    # nginx reaches every instance on the port the app listens on
    assert nginx["environment"]["LAB_NGINX_UPSTREAM_SERVERS"] == f"server app:{port};"
    # ...from the one address the instances trust for X-Forwarded-For
    nginx_ip = nginx["networks"]["default"]["ipv4_address"]
    assert app["environment"]["LAB_TRUSTED_PROXIES"] == nginx_ip
    subnet = compose["networks"]["default"]["ipam"]["config"][0]["subnet"]
    assert ipaddress.ip_address(nginx_ip) in ipaddress.ip_network(subnet)
    # the same template file as lab/scaleout.py, rendered by the image's envsubst
    mount = next(v for v in nginx["volumes"] if "nginx.conf.template" in v)
    source, target = mount.split(":")[:2]
    assert (ROOT / source).resolve() == scaleout.TEMPLATE
    assert target.startswith("/etc/nginx/templates/") and target.endswith(".conf.template")
    filt = nginx["environment"]["NGINX_ENVSUBST_FILTER"]
    placeholders = set(re.findall(r"\$\{(\w+)\}", scaleout.TEMPLATE.read_text()))
    assert placeholders <= set(nginx["environment"])
    assert all(p.startswith(filt) for p in placeholders)
    rendered = scaleout.render_template({p: str(nginx["environment"][p]) for p in placeholders})
    assert f"server app:{port};" in rendered and "listen 80;" in rendered
    # the app and the seeding job use the compose services, by service name
    for svc in (app, seed):
        assert svc["environment"]["LAB_DATABASE_URL"].startswith("postgresql://postgres@postgres:")
        assert svc["environment"]["LAB_REDIS_URL"].startswith("redis://redis:")
    assert "8000/health" in " ".join(app["healthcheck"]["test"])
    assert port == "8000"


def _compose_client() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return None


def test_compose_config_validates_where_a_client_exists() -> None:
    """``docker compose config`` parses and validates the file without an engine. Machines
    without any compose client check only the YAML above (CI installs none; docs say so)."""
    client = _compose_client()
    if client is None:
        return
    result = subprocess.run(
        [*client, "-f", str(COMPOSE), "--profile", "scale", "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
