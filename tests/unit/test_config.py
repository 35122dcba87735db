"""Config pipeline: every error names the file, the service and the key, with a suggestion."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from airadev import config
from airadev.errors import ConfigError
from airadev.model import Condition, ProbeKind, RestartPolicy

GOOD = """
[services.redis]
command = "redis-server --port 6379 --save ''"
port = 6379
health = { tcp = true }

[services.voice-agent]
aliases = ["voice"]
cwd = "voice-agent"
command = "python server.py"
env_files = [".env"]
port = 8000
health = { http = "/health", interval = "5s", start_period = "30s" }
depends_on = { redis = "healthy" }
restart = { policy = "always", max_restarts = 3, backoff = "250ms" }
stop_signal = "INT"
stop_grace = "3s"
watch = ["."]
"""


def load_text(tmp_path: Path, text: str) -> config.Config:
    (tmp_path / "airadev.toml").write_text(text)
    return config.load(tmp_path)


def error_of(tmp_path: Path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, text)
    assert info.value.exit_code == 2
    assert "\n" not in info.value.message, "an error is one line"
    assert info.value.fix, "every error says how to fix it"
    return info.value


def test_good_config_becomes_a_frozen_model(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, GOOD)
    assert cfg.names() == ["redis", "voice-agent"]
    voice = cfg.get("voice")
    assert voice.name == "voice-agent"
    assert voice.command == ("python", "server.py")
    assert voice.cwd == tmp_path / "voice-agent"
    assert voice.env_files == (tmp_path / "voice-agent" / ".env",)
    assert voice.health is not None and voice.health.kind is ProbeKind.HTTP
    assert voice.health.target == "http://127.0.0.1:8000/health"
    assert voice.health.interval == 5.0 and voice.health.start_period == 30.0
    assert voice.depends_on[0].name == "redis" and voice.depends_on[0].condition is Condition.HEALTHY
    assert voice.restart.policy is RestartPolicy.ALWAYS and voice.restart.backoff == 0.25
    assert voice.stop_signal == signal.SIGINT and voice.stop_grace == 3.0
    assert voice.watch == (tmp_path / "voice-agent",)
    redis = cfg.get("redis")
    assert redis.command == ("redis-server", "--port", "6379", "--save", "")
    assert redis.health is not None and redis.health.target == ("127.0.0.1", 6379)
    with pytest.raises(AttributeError):
        voice.port = 1  # type: ignore[misc]


def test_shell_syntax_runs_through_sh(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, '[services.a]\ncommand = "cd x && npm run dev | cat"\n')
    assert cfg.get("a").command == ("/bin/sh", "-c", "cd x && npm run dev | cat")


def test_list_depends_on_means_started(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, '[services.a]\ncommand="a"\n[services.b]\ncommand="b"\ndepends_on=["a"]\n')
    assert cfg.get("b").depends_on[0].condition is Condition.STARTED


def test_a_dependency_may_ask_to_be_restarted_with_it(tmp_path: Path) -> None:
    cfg = load_text(
        tmp_path,
        '[services.a]\ncommand="a"\naliases=["x"]\n[services.b]\ncommand="b"\n'
        'depends_on = { x = { condition = "healthy", restart = true } }\n',
    )
    [dep] = cfg.get("b").depends_on
    assert (dep.name, dep.condition, dep.restart) == ("a", Condition.HEALTHY, True)
    assert (
        load_text(tmp_path, '[services.a]\ncommand="a"\n[services.b]\ncommand="b"\ndepends_on=["a"]\n')
        .get("b")
        .depends_on[0]
        .restart
        is False
    )


def test_dependencies_may_name_aliases(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, '[services.a]\ncommand="a"\naliases=["x"]\n[services.b]\ncommand="b"\ndepends_on=["x"]\n')
    assert cfg.get("b").depends_on[0].name == "a"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[services.a]\ncommand = "a"\nhelth = { tcp = 1 }\n', "services.a.helth: unknown key; did you mean 'health'?"),
        ('[services.a]\ncommand = "a"\n[servces]\n', "servces: unknown key; did you mean 'services'?"),
        ('[services.a]\ncommand = "a"\nport = "80"\n', 'services.a.port: expected an integer, got "80"'),
        ('[services.a]\ncommand = "a"\nport = 70000\n', "services.a.port: 70000 is not a port number"),
        ('[services.a]\ncommand = "a"\nport = true\n', "services.a.port: expected an integer, got True"),
        ('[services.a]\ncommand = ""\n', "services.a.command: is empty"),
        ("[services.a]\ncommand = 5\n", "services.a.command: expected a string or a list"),
        ('[services.a]\ncwd = "x"\n', "[services.a] has no 'command'"),
        ('[services.a]\ncommand = "a"\nstop_grace = "soon"\n', "services.a.stop_grace: expected a duration"),
        ('[services.a]\ncommand = "a"\nstop_signal = "SIGNOPE"\n', "services.a.stop_signal: unknown signal"),
        ('[services.a]\ncommand = "a"\nrestart = "sometimes"\n', "services.a.restart: unknown restart policy"),
        ('[services.a]\ncommand = "a"\nrestart = "on-failur"\n', "did you mean 'on-failure'?"),
        (
            '[services.a]\ncommand = "a"\nrestart = { polcy = "no" }\n',
            "services.a.restart.polcy: unknown key; did you mean 'policy'?",
        ),
        (
            '[services.a]\ncommand = "a"\nrestart = { jitter = 1.5 }\n',
            "services.a.restart.jitter: must be between 0 and 1",
        ),
        (
            '[services.a]\ncommand = "a"\nrestart = { backoff = "10s", backoff_max = "1s" }\n',
            "backoff_max: is smaller than backoff",
        ),
        ('[services.a]\ncommand = "a"\nruntime = "dokcer"\n', 'services.a.runtime: unknown runtime "dokcer"'),
        ('[services.a]\ncommand = "a"\nhealth = { interval = "1s" }\n', "services.a.health: has no probe"),
        (
            '[services.a]\ncommand = "a"\nport = 1\nhealth = { tcp = true, http = "/" }\n',
            "services.a.health: has 2 probes",
        ),
        (
            '[services.a]\ncommand = "a"\nhealth = { http = "/health" }\n',
            "services.a.health.http: is a path but the service has no port",
        ),
        ('[services.a]\ncommand = "a"\nhealth = { http = "health" }\n', "services.a.health.http: expected a path"),
        ('[services.a]\ncommand = "a"\nhealth = { tcp = true }\n', "services.a.health.tcp: needs a port"),
        ('[services.a]\ncommand = "a"\nhealth = { tcp = "host:x" }\n', "services.a.health.tcp: expected host:port"),
        (
            '[services.a]\ncommand = "a"\nhealth = { log = "(" }\n',
            "services.a.health.log: is not a valid regular expression",
        ),
        (
            '[services.a]\ncommand = "a"\nhealth = { log = "x", retries = 0 }\n',
            "services.a.health.retries: must be at least 1",
        ),
        (
            '[services.a]\ncommand = "a"\nhealth = { log = "x", intervall = "1s" }\n',
            "services.a.health.intervall: unknown key; did you mean 'interval'?",
        ),
        (
            '[services.a]\ncommand = "a"\nhealth = { log = "x", timeout = "0s" }\n',
            "services.a.health.timeout: must be more than 0",
        ),
        (
            '[services.a]\ncommand = "a"\ndepends_on = ["reddis"]\n[services.redis]\ncommand = "r"\n',
            "services.a.depends_on: unknown service \"reddis\"; did you mean 'redis'?",
        ),
        (
            '[services.a]\ncommand = "a"\ndepends_on = ["a"]\n',
            "services.a.depends_on: a service cannot depend on itself",
        ),
        (
            '[services.a]\ncommand = "a"\n[services.b]\ncommand = "b"\ndepends_on = { a = "ready" }\n',
            'services.b.depends_on.a: unknown condition "ready"',
        ),
        (
            '[services.a]\ncommand = "a"\n[services.b]\ncommand = "b"\ndepends_on = { a = { conditon = "healthy" } }\n',
            "services.b.depends_on.a.conditon: unknown key; did you mean 'condition'?",
        ),
        (
            '[services.a]\ncommand = "a"\n[services.b]\ncommand = "b"\ndepends_on = { a = { restart = "yes" } }\n',
            "services.b.depends_on.a.restart: expected true or false",
        ),
        (
            '[services.a]\ncommand = "a"\nport = 80\n[services.b]\ncommand = "b"\nport = 80\n',
            "services.b.port: 80 is also the port of services.a",
        ),
        (
            '[services.a]\ncommand = "a"\naliases = ["b"]\n[services.b]\ncommand = "b"\n',
            'services.b: the name "b" is already used by services.a',
        ),
        ('[services.Voice]\ncommand = "a"\n', "services.Voice: the name must be lowercase"),
        ('[services.airadev]\ncommand = "a"\n', "services.airadev: the name is reserved"),
        ('[services.a]\ncommand = "a"\naliases = ["Bad Name"]\n', 'services.a.aliases: "Bad Name" is not a valid name'),
        ('[services.a]\ncommand = "a"\nenv = { X = [1] }\n', "services.a.env.X: expected a string"),
        ('[services.a]\ncommand = "a"\nenv_files = [1]\n', "services.a.env_files: expected a list of strings"),
        ('[services.a]\ncommand = "a"\n[logs]\nmax_size = "1KB"\n', "logs.max_size: expected a size of at least 64KB"),
        ('[services.a]\ncommand = "a"\n[logs]\nkept = 3\n', "logs.kept: unknown key; did you mean 'keep'?"),
        ("[services]\n", "no services are defined"),
        ("[logs]\nkeep = 1\n", "no services are defined"),
        ("[services.a]\ncommand = 'a'\nservices = 1\n[services.a.x\n", "invalid TOML"),
        ('[services.a]\ncommand = "a"\nwatch = 3\n', "services.a.watch: expected true or false or a string or a list"),
        ('[service.a]\ncommand = "a"\n', "service: unknown key; did you mean 'services'?"),
        (
            '[services.a]\ncommand = "a"\nport = 80\nhealth = { htpp = "/health" }\n',
            "services.a.health.htpp: unknown key; did you mean 'http'?",
        ),
        (
            '[services.a]\ncommand = "a"\nhealth = { http = "http://localhost:8000health" }\n',
            "services.a.health.http: expected a path",
        ),
        (
            '[services.a]\ncommand = "a"\nhealth = { http = "http://[::1:80/" }\n',
            "services.a.health.http: expected a path",
        ),
        (
            '[services.a]\ncommand = "python -c \'hello"\n',
            "services.a.command: cannot be split into words: no closing quotation",
        ),
        (
            '[services.a]\ncommand = "a"\nhealth = { exec = "redis-cli \'ping" }\n',
            "services.a.health.exec: cannot be split into words",
        ),
        # runtimes: containers and the local database
        (
            '[services.a]\ncommand = "a"\nruntime = "docker"\n',
            'services.a.runtime: is "docker" but the service has no image',
        ),
        (
            '[services.a]\ncommand = "a"\n[services.a.docker]\nimage = "x y"\n',
            'services.a.docker.image: "x y" is not an image name',
        ),
        (
            '[services.a]\ncommand = "a"\n[services.a.docker]\nimg = "x"\n',
            "services.a.docker.img: unknown key; did you mean 'image'?",
        ),
        (
            '[services.a]\ncommand = "a"\n[services.a.docker]\nimage = "x"\nvolumes = ["data"]\n',
            'services.a.docker.volumes: "data" is not SOURCE:TARGET[:ro]',
        ),
        (
            '[services.a]\ncommand = "a"\n[services.a.docker]\nimage = "x"\nvolumes = ["data:rel"]\n',
            'the target of "data:rel" is not an absolute path',
        ),
        (
            '[services.a]\ncommand = "a"\n[services.a.docker]\nimage = "x"\nport = 6379\n',
            "services.a.port: is missing: docker.port needs a host port",
        ),
        (
            '[services.a]\ncommand = "a"\n[services.a.docker]\nport = 80\n',
            "services.a.docker.image: there is no image to run, and none to build",
        ),
        (
            '[services.a]\ncommand = "a"\n[services.a.docker]\nbuild = ""\n',
            "services.a.docker.build: expected the folder",
        ),
        (
            '[services.a]\ncommand = "a"\n[services.a.docker]\nbuild = 3\n',
            "services.a.docker.build: expected a string or a table",
        ),
        (
            '[services.a]\ncommand = "a"\n[services.a.docker]\nbuild = { contxt = "." }\n',
            "services.a.docker.build.contxt: unknown key; did you mean 'context'?",
        ),
        (
            '[services.a]\ncommand = "a"\n[services.a.docker]\nbuild = { args = { DEBUG = true } }\n',
            "services.a.docker.build.args.DEBUG: expected a string, got True",
        ),
        (
            '[services.a]\ncommand = "a"\nexclude = ["studio"]\n',
            'services.a.exclude: applies only to runtime = "supabase"',
        ),
        (
            '[services.a]\ncommand = "a"\nproject = "ui"\n',
            'services.a.project: applies only to runtime = "postgres" or runtime = "supabase"',
        ),
        (
            '[services.db]\nruntime = "postgres"\nexclude = ["studio"]\n',
            'services.db.exclude: applies only to runtime = "supabase"',
        ),
        (
            '[services.db]\nruntime = "postgres"\nhealth = { tcp = true }\n',
            'services.db.health: does not apply: runtime "postgres" decides its readiness',
        ),
        ('[services.db]\nruntime = "postgres"\ncommand = "postgres"\n', "services.db.command: does not apply"),
        ('[services.db]\nruntime = "postgres"\nmigrations = "nope"\n', "services.db.migrations: folder"),
        ('[services.db]\nruntime = "supabase"\n', "services.db.project:"),
        (
            '[services.db]\nruntime = "postgres"\n[services.db2]\nruntime = "postgres"\nport = 1\n',
            "a stack has one local database",
        ),
        # [stripe] adds the service "stripe": a user's own of that name (or alias) is refused.
        (
            '[services.ui]\ncommand = "x"\nport = 3000\n[services.stripe]\ncommand = "sleep 1"\n[stripe]\n',
            'services.stripe: the name "stripe" is the service [stripe] adds',
        ),
        ('[services.ui]\ncommand = "x"\nport = 3000\n[stripe]\nevents = ["Not An Event"]\n', "stripe.events"),
        ('[services.web]\ncommand = "x"\n[stripe]\n', "[stripe]: no UI service to forward Stripe's events to"),
        ('[services.x]\nruntime = "stripe"\ncommand = "x"\n', '"stripe" is the service [stripe] adds'),
    ],
)
def test_config_errors(tmp_path: Path, text: str, expected: str) -> None:
    err = error_of(tmp_path, text)
    assert expected in err.message
    assert str(tmp_path / "airadev.toml") in err.message, "the error names the file"


def test_cycle_is_named_as_a_cycle(tmp_path: Path) -> None:
    err = error_of(
        tmp_path,
        """
[services.ui]
command = "u"
depends_on = ["voice"]
[services.voice]
command = "v"
depends_on = ["kb"]
[services.kb]
command = "k"
depends_on = { ui = "healthy" }
""",
    )
    assert "dependency cycle: ui → voice → kb → ui" in err.message


def test_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "airadev.toml").write_bytes(b'[services.a]\ncommand = "\xff"\n')
    with pytest.raises(ConfigError, match="not UTF-8"):
        config.load(tmp_path)


def test_find_root_walks_upwards(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRADEV_WORKSPACE", raising=False)
    (tmp_path / "airadev.toml").write_text('[services.a]\ncommand="a"\n')
    deep = tmp_path / "voice-agent" / "src"
    deep.mkdir(parents=True)
    assert config.find_root(deep) == tmp_path


def test_find_root_explicit_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "airadev.toml").write_text('[services.a]\ncommand="a"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert config.find_root(elsewhere, explicit=tmp_path) == tmp_path
    monkeypatch.setenv("AIRADEV_WORKSPACE", str(tmp_path))
    assert config.find_root(elsewhere) == tmp_path
    monkeypatch.setenv("AIRADEV_WORKSPACE", str(elsewhere))
    with pytest.raises(ConfigError, match="AIRADEV_WORKSPACE points at .* which has no airadev.toml"):
        config.find_root(tmp_path)


def test_find_root_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRADEV_WORKSPACE", raising=False)
    with pytest.raises(ConfigError, match="no airadev.toml in") as info:
        config.find_root(tmp_path)
    assert "airadev init" in info.value.fix


@pytest.mark.parametrize(
    ("text", "seconds"), [("500ms", 0.5), ("2s", 2.0), ("1.5m", 90.0), ("1h", 3600.0), (3, 3.0), ("7", 7.0)]
)
def test_durations(text: str | int, seconds: float) -> None:
    assert config.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "s", "2 days", "-1s", True])
def test_bad_durations(text: str) -> None:
    assert config.parse_duration(text) is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "size"), [("20MB", 20 * 1024**2), ("512k", 512 * 1024), ("1GiB", 1024**3), (4096, 4096)]
)
def test_sizes(text: str | int, size: int) -> None:
    assert config.parse_size(text) == size


def test_init_template_is_valid(tmp_path: Path) -> None:
    from airadev.operations.init import config_text

    cfg = load_text(tmp_path, config_text(tmp_path))
    assert cfg.names() == ["redis", "voice-agent", "kb-updater", "aira-ui"]
    assert cfg.get("voice").name == "voice-agent" and cfg.get("kb").name == "kb-updater"
    assert cfg.get("ui").load_env_files is False
    assert cfg.get("voice").watch and cfg.get("kb").watch and not cfg.get("ui").watch
    assert cfg.get("redis").docker is not None and cfg.get("ui").docker is None
    # Each AiRa service says which of AiRa's env templates doctor checks it against.
    assert [cfg.get(n).template for n in ("redis", "voice", "kb", "ui")] == ["", "voice-agent", "kb-updater", "aira-ui"]


def test_init_builds_each_python_service_from_its_own_dockerfile_or_the_guide_s(tmp_path: Path) -> None:
    from airadev.operations.init import init

    for folder in ("voice-agent", "kb-updater"):
        (tmp_path / folder).mkdir()
    (tmp_path / "voice-agent" / "Dockerfile").write_text("FROM python:3.11-slim\n")  # as the guide's repos have
    result = init(tmp_path)
    guide = Path(__file__).resolve().parents[2] / "compose" / "Dockerfile.python"
    assert result.dockerfile == tmp_path / "Dockerfile.python"
    assert result.dockerfile.read_bytes() == guide.read_bytes()
    cfg = config.load(tmp_path)
    voice, kb = cfg.get("voice").docker, cfg.get("kb").docker
    assert voice is not None and voice.build is not None and kb is not None and kb.build is not None
    assert (voice.image, voice.build.context, voice.build.dockerfile) == (
        "aira/voice-agent:dev",
        tmp_path / "voice-agent",
        None,  # its own Dockerfile
    )
    assert voice.volumes == ()  # where its code lives in the image is its Dockerfile's business
    assert (kb.build.context, kb.build.dockerfile) == (tmp_path / "kb-updater", tmp_path / "Dockerfile.python")
    assert kb.volumes == (f"{tmp_path / 'kb-updater'}:/app:ro",)
    assert kb.command == ("uvicorn", "updater:app", "--host", "0.0.0.0", "--port", "8080")
    # A Dockerfile.python already there (perhaps edited) is kept; without any service that needs
    # it, none is written.
    result.dockerfile.write_text("# mine\n")
    assert init(tmp_path, force=True).dockerfile is None and result.dockerfile.read_text() == "# mine\n"
    result.dockerfile.unlink()
    (tmp_path / "kb-updater" / "Dockerfile").write_text("FROM python:3.11-slim\n")
    assert init(tmp_path, force=True).dockerfile is None and not result.dockerfile.exists()


def test_supabase_exclude_names_and_its_config_toml(tmp_path: Path) -> None:
    (tmp_path / "ui" / "supabase").mkdir(parents=True)
    settings = tmp_path / "ui" / "supabase" / "config.toml"
    settings.write_text('project_id = "aira"\n[api]\nport = 55321\n[db]\nport = 55322\n')
    text = '[services.db]\nruntime = "supabase"\nproject = "ui"\nexclude = ["studi"]\n'
    assert "\"studi\" is not a Supabase container; did you mean 'studio'?" in error_of(tmp_path, text).message
    db = load_text(tmp_path, text.replace("studi", "studio")).get("db")
    assert (db.port, db.database.db_port, db.database.project_id, db.database.exclude) == (
        55321,
        55322,
        "aira",
        ("studio",),
    )
    settings.write_text('[db]\nport = "x"\n')
    assert "[db] port: expected a port number" in error_of(tmp_path, text.replace("studi", "studio")).message
    settings.write_text("db = 5\n")
    assert "[db] port: expected a port number" in error_of(tmp_path, text.replace("studi", "studio")).message


def test_a_build_is_read_relative_to_the_service_and_names_its_image(tmp_path: Path) -> None:
    root = tmp_path / "My AiRa"
    root.mkdir()
    loaded = load_text(
        root,
        """
[services.voice-agent]
cwd = "voice-agent"
command = "python server.py"
[services.voice-agent.docker]
build = { context = ".", dockerfile = "../compose/Dockerfile.python", target = "dev", args = { BASE = "python:3.11-slim", N = 3 } }

[services.kb]
cwd = "kb"
command = "uvicorn updater:app"
[services.kb.docker]
image = "aira/kb:dev"
build = "."
""",
    )
    voice, kb = (s.docker for s in loaded.services)
    assert voice is not None and voice.build is not None and kb is not None and kb.build is not None
    assert voice.image == "airadev/my-aira-voice-agent:dev"  # named as Compose names it: folder and service
    assert voice.build.context == root / "voice-agent"
    assert voice.build.dockerfile == root / "compose" / "Dockerfile.python"  # relative to the context
    assert voice.build.target == "dev" and voice.build.args == (("BASE", "python:3.11-slim"), ("N", "3"))
    assert kb.image == "aira/kb:dev" and kb.build.context == root / "kb" and kb.build.dockerfile is None


def test_postgres_database_user_and_password(tmp_path: Path) -> None:
    cfg = load_text(
        tmp_path, '[services.db]\nruntime = "postgres"\ndatabase = "app"\nuser = "app-user"\npassword = "pw"\n'
    )
    spec = cfg.get("db").database
    assert spec is not None and (spec.database, spec.user, spec.password) == ("app", "app-user", "pw")
    # The database defaults to the user's name, as the postgres image does.
    spec = load_text(tmp_path, '[services.db]\nruntime = "postgres"\nuser = "app"\n').get("db").database
    assert spec is not None and spec.database == "app" and spec.password == "postgres"
    err = error_of(tmp_path, '[services.db]\nruntime = "postgres"\ndatabase = "my db"\n')
    assert 'services.db.database: "my db" is not a PostgreSQL name' in str(err)
    (tmp_path / "supabase").mkdir()
    (tmp_path / "supabase" / "config.toml").write_text("")
    err = error_of(tmp_path, '[services.db]\nruntime = "supabase"\nuser = "app"\n')
    assert 'applies only to runtime = "postgres"' in str(err)


def test_template_names_one_of_airas(tmp_path: Path) -> None:
    err = error_of(tmp_path, '[services.voice]\ncommand = "x"\ntemplate = "voice"\n')
    assert 'services.voice.template: "voice" is not one of AiRa\'s env templates' in str(err)
    assert "voice-agent" in err.fix
