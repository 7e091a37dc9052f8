"""test_06_concurrency.py - many environments at once."""
import time

from conftest import http_get, run_threads

N_ENVS = 20
READY_DEADLINE_S = 150


def test_06_01_twenty_environments_created_at_once_all_get_ready(tiny):
    names = ["c%02d" % i for i in range(N_ENVS)]
    t0 = time.monotonic()
    results = run_threads(lambda n: tiny.eph("up", "tiny", "--name", n, "--wait", "-o", "json",
                                             timeout=READY_DEADLINE_S), names)
    took = time.monotonic() - t0
    failed = [str(r) for r in results if r.rc != 0]
    assert failed == [], "\n\n".join(failed)
    assert took < READY_DEADLINE_S

    envs = {e["name"]: e for e in tiny.envs()}
    assert sorted(envs) == names
    assert {e["phase"] for e in envs.values()} == {"ready"}
    ports = [e["services"][0]["port"] for e in envs.values()]
    assert len(set(ports)) == N_ENVS, ports
    for port in ports:
        assert http_get(port, "/").status_code == 200
    procs = tiny.processes()
    assert len({p.pgid for p in procs}) == N_ENVS, procs
    assert {p.pgid for p in procs} == {e["services"][0]["pid"] for e in envs.values()}
    ids = {n: tiny.env_id(n) for n in names}

    results = run_threads(lambda n: tiny.eph("rm", n, "--wait", timeout=READY_DEADLINE_S), names)
    failed = [str(r) for r in results if r.rc != 0]
    assert failed == [], "\n\n".join(failed)
    assert tiny.envs() == []
    assert tiny.processes() == []
    assert all(tiny.env_dir(n) is None for n in names), ids
