"""Starts the real `portcullis` binary for the official-SDK tests.

The gateway runs once per session on 127.0.0.1:0 in a temp dir with the built-in default config
(the deterministic `mock` provider: `mock/<anything>` and `gpt-4o-mini`, no network). Its address
comes from the ready file; every wait polls against a deadline, never a fixed sleep.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

MASTER_KEY = "sk-master-sdk-0123456789"
START_DEADLINE_S = 30.0
STOP_DEADLINE_S = 15.0

# The gateway's log file while it runs and its text once stopped, for the terminal summary to show
# when a test failed (the temp dir is gone by then).
_LOG_KEY = pytest.StashKey[dict]()


@dataclass(frozen=True)
class Gateway:
    url: str  # http://127.0.0.1:PORT
    master_key: str
    log: Path
    pid: int

    @property
    def base_url(self) -> str:
        """The base URL the OpenAI SDK takes."""
        return self.url + "/v1"

    def read_log(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""


def api(gw: Gateway, method: str, path: str, body: dict | None = None, token: str | None = None):
    """A plain HTTP call (urllib): returns (status, parsed JSON body or raw text, headers)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(gw.url + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            status, raw, headers = resp.status, resp.read(), resp.headers
    except urllib.error.HTTPError as e:
        status, raw, headers = e.code, e.read(), e.headers
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = raw.decode(errors="replace")
    return status, parsed, headers


def _binary() -> str:
    path = os.environ.get("PORTCULLIS_BIN", "")
    if not path:
        # Fail, never skip: a run that silently skips every test must not look green.
        pytest.fail("PORTCULLIS_BIN is not set (tests/run.sh sets it to target/debug/portcullis)")
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail(f"PORTCULLIS_BIN={path!r} is not an executable file")
    return path


def _stop(proc: subprocess.Popen) -> str | None:
    """SIGTERM, wait, then SIGKILL. Returns a complaint if the exit was not clean."""
    if proc.poll() is not None:
        return f"the gateway had already exited with status {proc.returncode}"
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=STOP_DEADLINE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return f"the gateway did not exit within {STOP_DEADLINE_S}s of SIGTERM and was killed"
    if code != 0:
        return f"the gateway exited with status {code} after SIGTERM"
    return None


def _wait_ready(proc: subprocess.Popen, ready: Path, log: Path) -> dict:
    """Polls for the ready file (renamed into place once listening) until a deadline."""
    deadline = time.monotonic() + START_DEADLINE_S
    while True:
        try:
            return json.loads(ready.read_text())
        except (OSError, ValueError):
            pass
        if proc.poll() is not None:
            raise RuntimeError(
                f"portcullis exited during start-up (status {proc.returncode}):\n"
                + log.read_text(errors="replace")
            )
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"portcullis did not write {ready} within {START_DEADLINE_S}s:\n"
                + log.read_text(errors="replace")
            )
        time.sleep(0.02)


@pytest.fixture(scope="session")
def gateway(request: pytest.FixtureRequest):
    binary = _binary()
    tmp = Path(tempfile.mkdtemp(prefix="portcullis-sdk-"))
    ready = tmp / "ready.json"
    log = tmp / "gateway.log"
    env = {
        k: v
        for k, v in os.environ.items()
        if not (k.startswith("PORTCULLIS_") or k == "LITELLM_MASTER_KEY")
    }
    env["PORTCULLIS_MASTER_KEY"] = MASTER_KEY
    env["PORTCULLIS_LOG"] = "info,portcullis=debug"
    env["NO_COLOR"] = "1"  # the log goes to a file
    cmd = [
        binary,
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        str(tmp / "data"),
        "--ready-file",
        str(ready),
    ]
    with open(log, "ab") as logfile:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=logfile, stderr=subprocess.STDOUT, env=env
        )
    log_holder = request.config.stash.setdefault(_LOG_KEY, {})
    log_holder["path"] = log

    started = False
    try:
        info = _wait_ready(proc, ready, log)
        started = True
        assert info.get("tls") is False, f"the default config serves plain HTTP: {info}"
        assert info.get("pid") == proc.pid, f"ready file pid {info.get('pid')} != {proc.pid}"
        gw = Gateway(url=f"http://{info['addr']}", master_key=MASTER_KEY, log=log, pid=proc.pid)
        yield gw
    finally:
        complaint = _stop(proc)
        log_holder["text"] = log.read_text(errors="replace")
        shutil.rmtree(tmp, ignore_errors=True)
        if complaint and started:
            pytest.fail(f"{complaint}; gateway log:\n{log_holder['text'][-20000:]}")


@pytest.fixture(scope="session")
def make_key(gateway: Gateway):
    """POST /key/generate as the master key; returns the new virtual key (`sk-...`)."""

    def make(**fields) -> str:
        status, body, _ = api(gateway, "POST", "/key/generate", fields, token=gateway.master_key)
        assert status == 200, f"/key/generate {fields} -> {status}: {body}"
        key = body.get("key") if isinstance(body, dict) else None
        assert isinstance(key, str) and key.startswith("sk-"), f"no key in {body}"
        return key

    return make


# The model most tests use: any `mock/<name>` is served by the default config's mock provider.
MODEL = "mock/sdk-test"


@pytest.fixture(scope="session")
def key(make_key) -> str:
    """A virtual key limited to `mock/*`."""
    return make_key(models=["mock/*"], key_alias="sdk-mock-only")


@pytest.fixture(scope="session")
def mini_key(make_key) -> str:
    """A virtual key limited to `gpt-4o-mini`."""
    return make_key(models=["gpt-4o-mini"], key_alias="sdk-mini-only")


@pytest.fixture(scope="session")
def any_model_key(make_key) -> str:
    """A virtual key with no model restriction."""
    return make_key(key_alias="sdk-any-model")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Shows the gateway's log when anything failed."""
    failed = terminalreporter.stats.get("failed") or terminalreporter.stats.get("error")
    holder = config.stash.get(_LOG_KEY, {})
    if failed and holder:
        text = holder.get("text")
        if text is None:
            try:
                text = holder["path"].read_text(errors="replace")
            except OSError:
                text = "(the gateway's log is gone)"
        terminalreporter.section("portcullis log (last 20000 characters)")
        terminalreporter.write(text[-20000:] + "\n")


def pytest_sessionfinish(session, exitstatus):
    """A run that collected no test must not pass (pytest already exits 5; say why loudly)."""
    if session.testscollected == 0:
        print("\nERROR: the SDK suite collected no tests", flush=True)
        session.exitstatus = pytest.ExitCode.NO_TESTS_COLLECTED
