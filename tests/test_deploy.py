"""The deployment files, read: what holds before anything runs (tests/docker/ builds and runs them for real).

- hadolint passes on the Dockerfile; docker-compose 1.29 validates docker-compose.yml (both profiles); nginx
  accepts both reverse-proxy examples (``nginx -t``).
- The compose file, the Dockerfile, .env.example and the settings model agree: every SIGNALING_* variable is a
  setting, ports and the TURN secret are wired the same way everywhere, the health check is one command.
- requirements.lock is the run-time closure of pyproject.toml.
- The Kubernetes example (deploy/kubernetes/) validates against Kubernetes' schemas (kubernetes-validate bundles
  them: no network), and says what the server needs: its probes' paths, a grace period that covers the drain, the
  image's user, the Redis settings of redis_config.py.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from signaling import __version__
from signaling.app.process import longest_drain
from signaling.app.settings import Settings
from signaling.cluster.redis_config import RECOMMENDED_PUBSUB, REQUIRED_POLICY
from tests.helpers.certs import make_cert
from tests.helpers.dockerfile import Stage, parse_dockerfile

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
NGINX = ROOT / "deploy" / "nginx"
KUBERNETES = ROOT / "deploy" / "kubernetes"
#: The oldest Kubernetes the example is for (every version since still serves its API versions), and the newest
#: whose schemas the validator ships.
KUBERNETES_VERSIONS = ("1.29", kubernetes_validate.latest_version())
BIN = Path(sys.executable).parent
SETTING_VARS = {f"SIGNALING_{name.upper()}" for name in Settings.model_fields}
#: The image's user: the Dockerfile creates it and runs as it.
UID = 10001


def env_example() -> dict[str, str]:
    out = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key] = value
    return out


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def stages() -> tuple[Stage, Stage]:
    _, found = parse_dockerfile(DOCKERFILE)
    assert [s.name for s in found] == ["build", None], "a build stage, then the run stage"
    return found[0], found[1]


# ---------------------------------------------------------------------------------------------- linters


def test_hadolint_passes() -> None:
    done = subprocess.run(
        [str(BIN / "hadolint"), "-t", "warning", "--no-color", str(DOCKERFILE)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("profile", [None, "cluster"])
def test_compose_file_validates(profile: str | None) -> None:
    argv = ["docker-compose", "--env-file", str(ENV_EXAMPLE), "-f", str(COMPOSE)]
    argv += ["--profile", profile] if profile else []
    done = subprocess.run([*argv, "config", "-q"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("conf", ["signaling.conf", "cluster.conf"])
def test_nginx_accepts_the_reverse_proxy_examples(conf: str, tmp_path: Path) -> None:
    """``nginx -t`` on the example inside a minimal main configuration. The certificate paths point to a
    throwaway certificate, and the compose service names to loopback: nginx resolves upstream names when it
    loads a configuration, and there is no DNS here."""
    cert = make_cert(tmp_path / "certs", "signaling.example.org")
    text = (NGINX / conf).read_text()
    text = re.sub(r"ssl_certificate /\S+;", f"ssl_certificate {cert.certfile};", text)
    text = re.sub(r"ssl_certificate_key /\S+;", f"ssl_certificate_key {cert.keyfile};", text)
    text = re.sub(r"server signaling-[ab]:", "server 127.0.0.1:", text)
    (tmp_path / "site.conf").write_text(text)
    main = tmp_path / "nginx.conf"
    main.write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\n  access_log off;\n  include {tmp_path}/site.conf;\n}}\n"
    )
    done = subprocess.run(
        ["nginx", "-t", "-q", "-e", str(tmp_path / "error.log"), "-p", str(tmp_path), "-c", str(main)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr + (tmp_path / "error.log").read_text()


# ---------------------------------------------------------------------------------------------- agreement


def test_every_signaling_variable_is_a_setting() -> None:
    _, run = stages()
    services = compose()["services"]
    used = {name for name in run.env if name.startswith("SIGNALING_")}
    for service in services.values():
        used |= {name for name in service.get("environment") or {} if name.startswith("SIGNALING_")}
    used |= {name for name in env_example() if name.startswith("SIGNALING_")}
    pod = kubernetes()[("Deployment", "signaling")]["spec"]["template"]["spec"]["containers"][0]
    used |= {name for name in kubernetes()[("ConfigMap", "signaling-config")]["data"]} | {e["name"] for e in pod["env"]}
    assert used and used <= SETTING_VARS, f"not settings: {sorted(used - SETTING_VARS)}"


def test_ports_health_check_user_and_version_agree() -> None:
    _, run = stages()
    port = run.env["SIGNALING_PORT"]
    assert run.one("EXPOSE").text == port == str(Settings.model_fields["port"].default)
    assert run.env["SIGNALING_HOST"] == "0.0.0.0"  # reachable from outside the container
    assert run.one("USER").text == f"{UID}:{UID}"
    assert f"--uid {UID}" in run.all("RUN")[0].text
    assert run.one("ENTRYPOINT").exec_form == ["signaling", "serve"]  # exec form: SIGTERM reaches the server
    health = run.one("HEALTHCHECK").exec_form
    services = compose()["services"]
    nodes = {name: s for name, s in services.items() if s.get("image", "").startswith("signaling:")}
    assert set(nodes) == {"signaling", "signaling-a", "signaling-b"}
    for name, node in nodes.items():
        assert node["image"] == f"signaling:{__version__}", name
        assert node["healthcheck"]["test"] == ["CMD", *health], name
    assert services["signaling"]["ports"] == [f"{port}:{port}"]


def test_the_turn_secret_and_ports_are_wired_the_same_way() -> None:
    services = compose()["services"]
    coturn = services["coturn"]["command"]
    flags = dict(arg.lstrip("-").split("=", 1) for arg in coturn if "=" in arg)
    assert "use-auth-secret" in [a.lstrip("-") for a in coturn]
    node_env = services["signaling"]["environment"]
    # One variable feeds both: the server's TURN credentials are what coturn checks.
    secret_var = re.fullmatch(r"\$\{(\w+)(:[?-].*)?\}", flags["static-auth-secret"])
    assert secret_var and secret_var.group(1) == "SIGNALING_TURN_SECRET"
    assert node_env["SIGNALING_TURN_SECRET"].startswith("${SIGNALING_TURN_SECRET")
    listening = flags["listening-port"]
    for url in node_env["SIGNALING_TURN_URLS"].split(","):
        assert re.fullmatch(rf"turn:\$\{{TURN_HOST:-localhost\}}:{listening}\?transport=(udp|tcp)", url), url
    assert f"{listening}:{listening}/udp" in services["coturn"]["ports"]
    relays = f"{flags['min-port']}-{flags['max-port']}"
    assert f"{relays}:{relays}/udp" in services["coturn"]["ports"]


def test_the_env_example_holds_every_variable_and_no_secret() -> None:
    example = env_example()
    referenced = set(re.findall(r"\$\{(\w+)", COMPOSE.read_text()))
    assert referenced == set(example), (referenced - set(example), set(example) - referenced)
    for key, value in example.items():
        if "SECRET" in key:
            assert value == "" or value.startswith("change-me"), f"{key}: a real-looking secret in .env.example"
    assert ".env\n" in (ROOT / ".gitignore").read_text()


def test_the_cluster_proxy_is_the_address_its_nodes_trust() -> None:
    services = compose()["services"]
    proxy = services["proxy"]["networks"]["signaling"]["ipv4_address"]
    for name in ("signaling-a", "signaling-b"):
        assert services[name]["environment"]["SIGNALING_TRUSTED_PROXIES"] == proxy
        assert f"server {name}:8765" in (NGINX / "cluster.conf").read_text()


def test_the_compose_redis_runs_with_the_settings_the_cluster_asks_for() -> None:
    command = compose()["services"]["redis"]["command"]
    flags = dict(zip(command[1::2], command[2::2], strict=True))
    assert flags["--maxmemory-policy"] == REQUIRED_POLICY
    assert flags["--client-output-buffer-limit"] == RECOMMENDED_PUBSUB.config_value()


def test_the_lock_is_the_closure_of_pyproject() -> None:
    lock = ROOT / "scripts" / "lock_requirements.py"
    done = subprocess.run([sys.executable, str(lock), "--check"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


# ---------------------------------------------------------------------------------------------- Kubernetes


def kubernetes() -> dict[tuple[str, str], dict[str, Any]]:
    """Every object of the example, the Secret's template included, by kind and name."""
    objects = {}
    for path in sorted(KUBERNETES.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            for doc in yaml.safe_load_all(path.read_text()):
                objects[(doc["kind"], doc["metadata"]["name"])] = doc
    return objects


def pod_spec(name: str) -> dict[str, Any]:
    spec: dict[str, Any] = kubernetes()[("Deployment", name)]["spec"]["template"]["spec"]
    return spec


def test_the_kustomization_lists_every_manifest_but_the_secrets_template() -> None:
    """``kubectl apply -k`` applies everything but the Secret, made by hand: a placeholder never replaces it."""
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    files = {p.name for p in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
    assert sorted(kustomization["resources"]) == sorted(files)


@pytest.mark.parametrize("path", sorted(KUBERNETES.glob("*.yaml")), ids=lambda p: p.name)
def test_the_kubernetes_manifests_validate(path: Path) -> None:
    """Strictly (an unknown or misspelt field fails), against the oldest and the newest Kubernetes."""
    for doc in yaml.safe_load_all(path.read_text()):
        if doc["kind"] == "Kustomization":  # kustomize's, not an API object: checked above
            continue
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{path.name}: {doc['kind']}/{doc['metadata']['name']} on Kubernetes {version}: {exc}")


def test_the_pods_probe_drain_and_run_as_the_image_does(monkeypatch: pytest.MonkeyPatch) -> None:
    objects = kubernetes()
    spec = pod_spec("signaling")
    (container,) = spec["containers"]
    _, run = stages()
    assert container["image"] == f"signaling:{__version__}"
    (port,) = container["ports"]
    assert port["containerPort"] == int(run.env["SIGNALING_PORT"])
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port["name"]}
    for probe in ("livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": port["name"]}
    # The server as the pod configures it: the ConfigMap and the Secret are its environment.
    (source,) = container["envFrom"]
    config = objects[("ConfigMap", source["configMapRef"]["name"])]["data"]
    for name, value in config.items():
        monkeypatch.setenv(name, value)
    for item in container["env"]:
        ref = item["valueFrom"]["secretKeyRef"]
        monkeypatch.setenv(item["name"], objects[("Secret", ref["name"])]["stringData"][ref["key"]])
    settings = Settings(**{})
    assert settings.redis_url is not None
    # Kubernetes counts the preStop pause in the grace period, and sends SIGTERM after it.
    sleep, pause = container["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep == "sleep"
    assert spec["terminationGracePeriodSeconds"] >= float(pause) + longest_drain(settings)
    assert spec["securityContext"]["runAsUser"] == UID and spec["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]


def test_compose_gives_a_node_the_time_to_drain() -> None:
    node = compose()["services"]["signaling-a"]
    settings = Settings(**{"redis_url": node["environment"]["SIGNALING_REDIS_URL"]})
    grace = node["stop_grace_period"]
    assert grace.endswith("s") and float(grace[:-1]) >= longest_drain(settings)


def test_the_services_and_the_budget_select_the_pods() -> None:
    objects = kubernetes()
    for name in ("signaling", "signaling-redis"):
        deployment = objects[("Deployment", name)]["spec"]
        labels = deployment["template"]["metadata"]["labels"]
        assert deployment["selector"]["matchLabels"] == labels
        service = objects[("Service", name)]["spec"]
        assert service["selector"] == labels
        ports = {p["name"] for c in deployment["template"]["spec"]["containers"] for p in c["ports"]}
        assert {p["targetPort"] for p in service["ports"]} <= ports
    assert objects[("Deployment", "signaling")]["spec"]["replicas"] == 2
    budget = objects[("PodDisruptionBudget", "signaling")]["spec"]
    assert budget["selector"]["matchLabels"] == objects[("Service", "signaling")]["spec"]["selector"]
    assert objects[("Service", "signaling")]["spec"]["sessionAffinity"] == "None"  # any node resumes any session


def test_the_kubernetes_redis_runs_with_the_settings_the_cluster_asks_for() -> None:
    objects = kubernetes()
    (redis,) = pod_spec("signaling-redis")["containers"]
    flags = dict(zip(redis["args"][::2], redis["args"][1::2], strict=True))
    assert flags["--maxmemory-policy"] == REQUIRED_POLICY
    assert flags["--client-output-buffer-limit"] == RECOMMENDED_PUBSUB.config_value()
    url = objects[("ConfigMap", "signaling-config")]["data"]["SIGNALING_REDIS_URL"]
    (port,) = objects[("Service", "signaling-redis")]["spec"]["ports"]
    assert url == f"redis://signaling-redis:{port['port']}/0"


def test_the_secrets_template_holds_no_secret() -> None:
    (secret,) = [doc for (kind, _), doc in kubernetes().items() if kind == "Secret"]
    for key, value in secret["stringData"].items():
        assert value == "" or value.startswith("change-me"), f"{key}: a real-looking secret in the template"
