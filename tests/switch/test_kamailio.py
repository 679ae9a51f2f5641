"""A real switch in the loop: Kamailio asks tollguard for every INVITE, sipp places the calls.

Installs Debian's kamailio (+ http_client from kamailio-utils-modules) and sipp when they
are missing; fails with a clear message when that is impossible. Loopback only, bounded
call counts (-m) and timeouts.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.limits.conftest import fresh_redis_url
from tollguard.api.auth import hash_key

ROOT = Path(__file__).parents[2]
SWITCHES = ROOT / "docs" / "switches"
RATES = ROOT / "tests" / "limits" / "data" / "rates.csv"
HTTP_CLIENT_SO = Path("/usr/lib/x86_64-linux-gnu/kamailio/modules/http_client.so")
API_KEY = "switch-test-key"
ADMIN_KEY = "admin-test-key"
PACKAGES = ["kamailio", "kamailio-extra-modules", "kamailio-utils-modules", "sip-tester"]


def ensure_switch_tools() -> None:
    if shutil.which("kamailio") and shutil.which("sipp") and HTTP_CLIENT_SO.exists():
        return
    if shutil.which("apt-get") is None:
        pytest.fail("kamailio/sipp missing and no apt-get to install them (Debian 12 expected)")
    cmd = "apt-get update -qq && apt-get install -y -qq " + " ".join(PACKAGES)
    done = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, timeout=900)
    if done.returncode != 0 or not (shutil.which("kamailio") and shutil.which("sipp")):
        pytest.fail(f"could not install {PACKAGES}: {done.stderr[-2000:]}")
    if not HTTP_CLIENT_SO.exists():
        pytest.fail(f"{HTTP_CLIENT_SO} missing after installing kamailio-utils-modules")


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_tollguard(tmp: Path, port: int, state: str) -> subprocess.Popen[bytes]:
    (tmp / "policy.toml").write_text(
        f'[defaults]\ncountry = "NL"\ntimezone = "Europe/Amsterdam"\nrates = "{RATES}"\n\n'
        "[accounts.pbx.limits]\nmax_calls_per_day = 3\nmax_spend_per_day = 500\n"
        'blocked_countries = ["TL"]\n\n'
        "[accounts.trunk.limits]\nmax_calls_per_day = 1000\nmax_spend_per_day = 500\n"
    )
    (tmp / "keys.toml").write_text(
        f'[[keys]]\nname = "kamailio"\nrole = "switch"\ntenant = "*"\n'
        f'sha256 = "{hash_key(API_KEY)}"\n\n'
        f'[[keys]]\nname = "ops"\nrole = "admin"\ntenant = "*"\nsha256 = "{hash_key(ADMIN_KEY)}"\n'
    )
    cmd = [
        sys.executable, "-m", "tollguard.commands.serve", "serve",
        "--policy", str(tmp / "policy.toml"), "--keys", str(tmp / "keys.toml"),
        "--port", str(port),
        *(["--state", fresh_redis_url(), "--lease-calls", "10"] if state == "redis-leases"
          else ["--state", state]),
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode()[-2000:] if proc.stderr else ""
            pytest.fail(f"tollguard serve exited: {err}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    pytest.fail("tollguard serve did not come up in 30 s")


def start_kamailio(tmp: Path, sip_port: int, api_port: int) -> subprocess.Popen[bytes]:
    cfg = (SWITCHES / "kamailio" / "tollguard.cfg").read_text()
    cfg = (
        cfg.replace("__SIP_PORT__", str(sip_port))
        .replace("__API_URL__", f"http://127.0.0.1:{api_port}")
        .replace("__API_KEY__", API_KEY)
    )
    path = tmp / "kamailio.cfg"
    path.write_text(cfg)
    check = subprocess.run(
        ["kamailio", "-c", "-f", str(path)], capture_output=True, text=True, timeout=30
    )
    assert check.returncode == 0, f"kamailio rejects the config:\n{check.stderr[-3000:]}"
    proc = subprocess.Popen(
        ["kamailio", "-DD", "-E", "-f", str(path), "-P", str(tmp / "kamailio.pid"), "-Y", str(tmp)],
        stdout=subprocess.DEVNULL, stderr=open(tmp / "kamailio.log", "wb"),  # noqa: SIM115
    )  # fmt: skip
    time.sleep(1.5)
    if proc.poll() is not None:
        pytest.fail(f"kamailio exited: {(tmp / 'kamailio.log').read_text()[-3000:]}")
    return proc


def sipp(tmp: Path, sip_port: int, code: int, calls: list[tuple[str, str]], name: str) -> int:
    """Place the calls; returns sipp's exit code (0: every call got ``code``)."""
    scenario = (
        (SWITCHES / "sipp" / "uac_expect_code.xml").read_text().replace("__CODE__", str(code))
    )
    bye = (SWITCHES / "sipp" / "bye.xml.part").read_text() if code == 200 else ""
    (tmp / f"{name}.xml").write_text(scenario.replace("__BYE__", bye))
    (tmp / f"{name}.csv").write_text("SEQUENTIAL\n" + "".join(f"{a};{b};\n" for a, b in calls))
    cmd = [
        "sipp", f"127.0.0.1:{sip_port}", "-sf", str(tmp / f"{name}.xml"),
        "-inf", str(tmp / f"{name}.csv"), "-m", str(len(calls)), "-r", "5", "-l", "1",
        "-i", "127.0.0.1", "-p", str(free_port(socket.SOCK_DGRAM)),
        "-nostdin", "-timeout", "40s", "-timeout_error", "-recv_timeout", "10s", "-trace_err",
        "-error_file", str(tmp / f"{name}.err"),
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, timeout=60, cwd=tmp)
    return done.returncode


@pytest.mark.parametrize("state", ["memory://", "redis-leases"])
def test_kamailio_asks_tollguard_for_every_invite(tmp_path: Path, state: str) -> None:
    """In memory, and on Redis with quota leases (the trunk's calls after its first are
    answered from a lease; their BYEs reach /end while the records may be on their way)."""
    ensure_switch_tools()
    api_port, sip_port = free_port(), free_port(socket.SOCK_DGRAM)
    api = start_tollguard(tmp_path, api_port, state)
    kam = None
    try:
        kam = start_kamailio(tmp_path, sip_port, api_port)
        # three normal calls pass (the daily cap is 3); each ends with a BYE -> /end
        assert sipp(tmp_path, sip_port, 200, [("pbx", "0201234567")] * 3, "normal") == 0
        # calls past the daily cap are rejected
        assert sipp(tmp_path, sip_port, 403, [("pbx", "0201234568")] * 2, "capped") == 0
        # calls to a blocked country are rejected (checked before the cap)
        assert sipp(tmp_path, sip_port, 403, [("pbx", "00670771234567")] * 2, "blocked") == 0
        # an unknown account is denied too
        assert sipp(tmp_path, sip_port, 403, [("stranger", "0201234567")], "unknown") == 0
        # a busier account: six calls, answered and hung up
        assert sipp(tmp_path, sip_port, 200, [("trunk", "0201234567")] * 6, "trunk") == 0
        # the switch reported the ends: no live calls left, three calls counted today
        counters = httpx.get(
            f"http://127.0.0.1:{api_port}/v1/accounts/pbx/counters",
            headers={"Authorization": f"Bearer {API_KEY}"}, timeout=5,
        )  # fmt: skip
        assert counters.status_code == 403  # a switch key may not read counters
        counters = httpx.get(
            f"http://127.0.0.1:{api_port}/v1/accounts/pbx/counters",
            headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=5,
        )  # fmt: skip
        assert (counters.json()["calls_day"], counters.json()["concurrent"]) == (3, 0)
        trunk = httpx.get(
            f"http://127.0.0.1:{api_port}/v1/accounts/trunk/counters",
            headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=5,
        ).json()  # fmt: skip
        assert (trunk["calls_day"], trunk["concurrent"]) == (6, 0)
        if state == "redis-leases":
            lines = httpx.get(f"http://127.0.0.1:{api_port}/metrics", timeout=5).text
            (leased,) = [x for x in lines.splitlines() if x.startswith("tollguard_lease_decisions")]
            # the first call takes the exact path, and so do those made before the server
            # has subscribed to lease invalidations (it starts with the first request)
            assert 1 <= float(leased.split()[-1]) <= 5
        # tollguard gone: the switch answers 503 (fail-closed)
        api.terminate()
        api.wait(timeout=10)
        assert sipp(tmp_path, sip_port, 503, [("pbx", "0201234567")], "down") == 0
    finally:
        if kam is not None:
            kam.terminate()
            try:
                kam.wait(timeout=10)
            except subprocess.TimeoutExpired:
                kam.kill()
        if api.poll() is None:
            api.terminate()
            api.wait(timeout=10)
